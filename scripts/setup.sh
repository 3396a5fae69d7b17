#!/usr/bin/env bash
# Set up hwkit on a fresh Debian/Ubuntu machine: bubblewrap for the sandbox, a virtual environment in
# .venv, torch pinned to the CPU build FIRST (an unpinned torch pulls GBs of CUDA), then hwkit itself.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null
  else
    echo "note: bubblewrap is not installed; grading needs it (sudo apt-get install bubblewrap). Self-check works without it." >&2
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test]"
echo "hwkit is installed in .venv ($(.venv/bin/hwkit --version))"

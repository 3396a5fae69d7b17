#!/usr/bin/env bash
# Set up hwkit on a fresh Debian/Ubuntu machine: bubblewrap for the sandbox, a virtual environment in
# .venv, torch pinned to the CPU build FIRST (an unpinned torch pulls GBs of CUDA), then hwkit itself.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages: bubblewrap (the sandbox); chromium and chromium-driver (the review page's browser test,
# driven by Selenium; a browser download of its own cannot work here).
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null
  else
    echo "note: not installed:$missing (sudo apt-get install$missing). Grading needs bubblewrap; the browser" \
         "test of hwkit review needs chromium and chromium-driver. Self-check works without them." >&2
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -e ".[test,cluster]"   # + starlette, uvicorn, rapidfuzz; selenium for tests;
                                                          # Dask distributed for hwkit grade --cluster
echo "hwkit is installed in .venv ($(.venv/bin/hwkit --version))"

"""A student installs hwkit, the engine alone (no problem bank: no solutions/, no templates/), and self-checks
their notebook from a folder of their own. The install must be enough, and nothing of the bank may be
imported by `hwkit check`; an instructor's bank is never part of what a student (or a kernel) can import."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat

from tests.support import make_course, release_notebook, solution_notebook

REPO = Path(__file__).resolve().parent.parent

CHECK = """
import json, sys
from hwkit.cli import main
try:
    main(["check", sys.argv[1], "--json"])
except SystemExit as exit:
    code = exit.code
import hwkit
bank = sorted(m for m in sys.modules if m.split(".")[0] in ("solutions", "templates")
              or m.startswith("hwkit_bank_") or m in ("hwkit.generate", "hwkit.grading"))
print(json.dumps({"exit": code, "hwkit": hwkit.__file__, "bank_modules": bank}))
"""


def _engine_install(target: Path) -> Path:
    """The hwkit distribution built as a wheel and installed alone into `target`."""
    wheels = target.parent / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(REPO)], check=True, capture_output=True)
    wheel = next(wheels.glob("hwkit-*.whl"))
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {"hwkit", "hwkit_kernel"} <= top and not top & {"solutions", "templates"}, top
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    return target


def _self_check(site: Path, folder: Path, nb) -> dict:
    nbformat.write(nb, str(folder / "homework.ipynb"))
    env = {k: v for k, v in os.environ.items() if k not in ("HWKIT_BANK", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", CHECK, "homework.ipynb"], cwd=folder, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(site)}, timeout=600)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-2000:]
    summary = json.loads(lines[-1])
    summary["results"] = json.loads("\n".join(lines[:-1]))["results"]
    return summary


def test_self_check_needs_only_the_engine(tmp_path):
    root = make_course(tmp_path / "instructor", ["receptive-field", "lstm"])
    site = _engine_install(tmp_path / "site")
    folder = tmp_path / "student"
    shutil.copytree(root / "release" / "t" / "s001", folder)

    done = _self_check(site, folder, solution_notebook(root, "s001"))
    assert done["hwkit"].startswith(str(site)) and done["bank_modules"] == []
    assert done["exit"] == 0 and {r["status"] for r in done["results"]} <= {"pass", "answered (checked at grading)"}, \
        done["results"]

    done = _self_check(site, folder, release_notebook(root, "s001"))
    assert done["exit"] == 1 and {r["status"] for r in done["results"]} == {"not answered"}


IN_NOTEBOOK = """
import sys
import hwkit.student as hw
hw.check(path=sys.argv[1])
bank = sorted(m for m in sys.modules if m.split(".")[0] in ("solutions", "templates") or m in ("hwkit.generate", "hwkit.grading"))
print("bank modules:", bank)
"""


def test_the_notebooks_own_self_check_needs_only_the_engine(tmp_path):
    """`hw.check()` from the engine alone: outside Jupyter it prints the table as text."""
    root = make_course(tmp_path / "instructor", ["receptive-field"])
    site = _engine_install(tmp_path / "site")
    folder = tmp_path / "student"
    shutil.copytree(root / "release" / "t" / "s001", folder)
    env = {k: v for k, v in os.environ.items() if k not in ("HWKIT_BANK", "PYTHONPATH", "HWKIT_OUTPUT_LIMIT")}
    done = subprocess.run([sys.executable, "-c", IN_NOTEBOOK, "t.ipynb"], cwd=folder, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(site)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "last saved version of t.ipynb" in done.stdout and "0 of 5 public checks pass" in done.stdout
    assert done.stdout.count("not answered") == 6 and "bank modules: []" in done.stdout

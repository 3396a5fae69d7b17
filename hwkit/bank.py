"""The problem bank: every folder under templates/ with a problem.py is one problem.

The bank is the instructor's folder (templates/ and solutions/ side by side), never an installed package:
a student's install of hwkit and a sandboxed kernel cannot import it. It is the folder named by the
HWKIT_BANK environment variable, else the one bundled with a source checkout of hwkit."""
from __future__ import annotations

import importlib.util
import os
import sys
from functools import lru_cache
from pathlib import Path

from hwkit.errors import HwkitError, did_you_mean
from hwkit.records import Problem

BANK_ENV = "HWKIT_BANK"


@lru_cache(maxsize=1)
def bank_root() -> Path:
    """The folder that holds templates/ and solutions/, put on sys.path so problems import their solutions."""
    configured = os.environ.get(BANK_ENV)
    root = Path(configured).resolve() if configured else Path(__file__).resolve().parent.parent
    if not (root / "templates").is_dir() or not (root / "solutions").is_dir():
        where = f"{BANK_ENV}={configured}" if configured else f"{root} (beside the hwkit package)"
        raise HwkitError(f"no problem bank at {where}: set {BANK_ENV} to a folder holding templates/ and "
                         "solutions/ (the bank of a source checkout of hwkit)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    return root


def use_bank(root: Path) -> None:
    """Load problems from `root` in this process from now on (a cluster worker that was sent the bank). Refused
    once another folder's problems are loaded here: their modules are imported and cannot be unloaded."""
    root = Path(root).resolve()
    if load_bank.cache_info().currsize and bank_root() != root:
        raise HwkitError(f"this process already loaded the problem bank at {bank_root()}; a process grades "
                         "with one bank: start a new one to use another")
    os.environ[BANK_ENV] = str(root)
    bank_root.cache_clear()
    bank_root()


def templates_dir() -> Path:
    return bank_root() / "templates"


def _load_module(path: Path):
    name = f"hwkit_bank_{path.parent.name}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def load_bank() -> dict[str, Problem]:
    problems = {}
    for folder in sorted(p for p in templates_dir().iterdir() if (p / "problem.py").is_file()):
        try:
            problem = _load_module(folder / "problem.py").PROBLEM
        except Exception as exc:
            raise HwkitError(f"{folder / 'problem.py'}: the problem could not be loaded ({type(exc).__name__}: {exc})") from exc
        if problem.id in problems:
            raise HwkitError(f"{folder / 'problem.py'}: problem id {problem.id!r} is used twice in the bank")
        problems[problem.id] = problem
    return problems


def known_problem_ids() -> set[str]:
    return set(load_bank())


def get_problem(problem_id: str) -> Problem:
    bank = load_bank()
    if problem_id not in bank:
        raise HwkitError(f"unknown problem id {problem_id!r}{did_you_mean(problem_id, bank)}; `hwkit problems` lists the bank")
    return bank[problem_id]

"""The problem bank: every folder under templates/ with a problem.py is one problem."""
from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from hwkit.course import HwkitError
from hwkit.problem import Problem

def templates_dir() -> Path:
    import templates  # the top-level package that holds the bank (installed beside hwkit)
    return Path(templates.__file__).resolve().parent


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
    return load_bank()[problem_id]

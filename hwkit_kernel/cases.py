"""Helpers for problem kernels (templates/<problem>/kernel.py): run one test case per input, so that a case
that raises costs that case only."""
from __future__ import annotations

from typing import Callable, Iterable


def error(exc: BaseException) -> dict:
    """The record of a case that raised: its exception type and the start of its message."""
    return {"__error__": f"{type(exc).__name__}: {str(exc)[:200]}"}


def each(cases: Iterable, run: Callable) -> list:
    """[run(case) for case in cases], with a case that raises an Exception recorded as error(exc)."""
    out = []
    for case in cases:
        try:
            out.append(run(case))
        except Exception as exc:  # the student's code failed on this case; the others still count
            out.append(error(exc))
    return out


def call(function: Callable, cases: Iterable) -> list:
    """The student's function called once per case (a list of positional arguments)."""
    return each(cases, lambda args: function(*args))

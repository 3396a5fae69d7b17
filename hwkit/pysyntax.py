"""Python's own parser, one call at a time.

CPython 3.11 before 3.11.9 keeps the depth counter of `ast.parse`'s tree builder per interpreter, not per
call (python/cpython#106905): when a garbage-collector finalizer lets another lane's thread parse in the
middle of a parse, one of them raises `SystemError: AST constructor recursion depth mismatch`, and a correct
student's formula or cell is marked a grader error. Every parse in the grader goes through this lock; a parse
that still loses the race to code that does not take it (a library parsing in another thread) is tried again.
"""
from __future__ import annotations

import ast
import threading

_PARSING = threading.Lock()


TRIES = 3


def parse(source: str, mode: str = "exec") -> ast.AST:
    """`ast.parse`, safe to call from several threads at once; raises what `ast.parse` raises."""
    with _PARSING:
        for _ in range(TRIES - 1):
            try:
                return ast.parse(source, mode=mode)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc):
                    raise
        return ast.parse(source, mode=mode)

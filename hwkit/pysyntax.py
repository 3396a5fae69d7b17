"""Python's own parser, one call at a time.

CPython 3.11 before 3.11.9 keeps the depth counter of `ast.parse`'s tree builder per interpreter, not per
call (python/cpython#106905): when a garbage-collector finalizer lets another lane's thread parse in the
middle of a parse, one of them raises `SystemError: AST constructor recursion depth mismatch`, and a correct
student's formula or cell is marked a grader error. Every parse in the grader goes through this lock.
"""
from __future__ import annotations

import ast
import threading

_PARSING = threading.Lock()


def parse(source: str, mode: str = "exec") -> ast.AST:
    """`ast.parse`, safe to call from several threads at once; raises what `ast.parse` raises."""
    with _PARSING:
        return ast.parse(source, mode=mode)

"""Lanes are threads of one worker: two of them parse a student's formula or cell at the same moment whenever a
garbage-collector finalizer lets the other run. On CPython 3.11 before 3.11.9 that used to raise
`SystemError: AST constructor recursion depth mismatch` in one of them, and a correct student's part became
a grader error. Here four lanes read the same student cells while finalizers hand the interpreter back and
forth. (Formulas go through the same lock, `hwkit.pysyntax.parse`; they are too small to lose the race
reliably in a test.)"""
from __future__ import annotations

import threading
import time

import nbformat

from hwkit.notebooks import self_check_cells

LANES = 4
ROUNDS = 40


class _Yielder:
    """Cyclic garbage whose finalizer lets another thread run and leaves more such garbage behind, so a
    collection that starts in the middle of a parse switches threads."""

    running = True

    def __init__(self):
        self.me = self

    def __del__(self):
        if _Yielder.running:
            _Yielder()
            time.sleep(0.0001)


def _race(work) -> list[BaseException]:
    errors: list[BaseException] = []

    def lane(lane_no: int, depth: int = 0):
        if depth < 10 * lane_no:            # lanes parse from different stack depths, as real lanes do
            return lane(lane_no, depth + 1)
        _Yielder()
        for round_no in range(ROUNDS):
            try:
                work(lane_no, round_no)
            except BaseException as exc:    # noqa: BLE001 - any failure is the finding
                errors.append(exc)

    _Yielder.running = True
    try:
        threads = [threading.Thread(target=lane, args=(n,)) for n in range(LANES)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        _Yielder.running = False
    return errors


def test_lanes_read_student_cells_at_once_without_grader_errors():
    body = "\n".join(f"def f{i}(a, b):\n    return [x * 2 for x in range(a) if x % 3 == (b + {i})]"
                     for i in range(100))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(body), nbformat.v4.new_code_cell(
        "import hwkit.student as hw\nhw.check()")])

    def work(lane_no, round_no):
        assert self_check_cells(nb) == {1}

    assert _race(work) == []

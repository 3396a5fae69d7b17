"""Helpers that let tests tell the user's story: make a course, take a student's notebook, write answers
into it the way a student would, grade it with the real autograder, read the results."""
from __future__ import annotations

import csv
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from hwkit.course import load_course
from hwkit.generate import generate, write_generated
from hwkit.grading.one import grade_submission
from hwkit.grading.submissions import Submission
from hwkit.probes import as_reply
from hwkit.scaffold import init_course

ASSIGNMENT = "t"
HWKIT = str(Path(sys.executable).with_name("hwkit"))


def make_course(tmp_path: Path, problems: list[str], students: list[str] = ("s001",), lang: str = "en",
                assignment: str = ASSIGNMENT, generate_now: bool = True, selfcheck: str = "exact",
                secret: str | None = None) -> Path:
    """A course of `students` with one assignment of `problems`; `secret` fixes its variants (default: a fresh
    random secret, as `hwkit init` makes)."""
    root = init_course(Path(tmp_path) / "course", lang=lang)
    if secret is not None:
        config = root / "hwkit.toml"
        config.write_text(re.sub(r'(?m)^secret = ".*"$', f'secret = "{secret}"', config.read_text(encoding="utf-8"),
                                 count=1), encoding="utf-8")
    (root / "roster.csv").write_text("student_id,name\n" + "".join(f"{s},Student {s}\n" for s in students), encoding="utf-8")
    entries = "".join(f'[[problems]]\nid = "{p}"\n\n' for p in problems)
    (root / "assignments" / f"{assignment}.toml").write_text(f'title = "Test"\nselfcheck = "{selfcheck}"\n\n{entries}',
                                                            encoding="utf-8")
    if generate_now:
        course = load_course(root)
        spec = course.assignment(assignment)
        write_generated(course, spec, generate(course, spec, lang, course.students()))
    return root


def solution_notebook(root: Path, sid: str, assignment: str = ASSIGNMENT) -> nbformat.NotebookNode:
    return nbformat.read(str(root / "source" / assignment / sid / f"{assignment}-solution.ipynb"), as_version=4)


def release_notebook(root: Path, sid: str, assignment: str = ASSIGNMENT) -> nbformat.NotebookNode:
    return nbformat.read(str(root / "release" / assignment / sid / f"{assignment}.ipynb"), as_version=4)


def append_cell(nb: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """A cell the student adds at the end: it overrides a variable or a function defined earlier."""
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def set_answer_cell(nb: nbformat.NotebookNode, part: str, source: str) -> nbformat.NotebookNode:
    """Replace the source of the answer cell tagged with `part`, as a student fills it in."""
    for cell in nb.cells:
        if part in cell.get("metadata", {}).get("hwkit", {}).get("parts", []):
            cell.source = source
            return nb
    raise KeyError(part)


def submit(root: Path, sid: str, nb: nbformat.NotebookNode, assignment: str = ASSIGNMENT) -> Path:
    folder = root / "submitted" / assignment / sid
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(nb, str(path))
    return path


def grade_one(root: Path, sid: str, nb: nbformat.NotebookNode, assignment: str = ASSIGNMENT, sandbox: bool = False):
    """Grade one notebook with the real autograder (in-process, one kernel); returns {part_id: PartResult}."""
    path = submit(root, sid, nb, assignment)
    course = load_course(root)
    spec = course.assignment(assignment)
    student = next(s for s in course.roster if s.student_id == sid)
    result, _ = grade_submission(course, spec, student, Submission(sid, path), sandbox=sandbox)
    return {p.part: p for p in result.parts}


def grade_result(root: Path, sid: str, nb: nbformat.NotebookNode, assignment: str = ASSIGNMENT, sandbox: bool = False):
    path = submit(root, sid, nb, assignment)
    course = load_course(root)
    student = next(s for s in course.roster if s.student_id == sid)
    return grade_submission(course, course.assignment(assignment), student, Submission(sid, path), sandbox=sandbox)[0]


def hwkit(*args, check: bool = True, timeout: int = 900, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([HWKIT, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "COLUMNS": "200"})
    if check and proc.returncode != 0:
        raise AssertionError(f"hwkit {' '.join(map(str, args))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_grades(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def assert_part_consistent(part, seed: int, mistakes: bool = True) -> None:
    """For a probe drawn from `seed`, the reference reply earns full marks under the part's own check, and
    (with mistakes) no known mistake's value is taken for the reference."""
    probe = part.probe(random.Random(seed))
    want = part.reference(probe)
    assert part.check.grade(as_reply(want), want).fraction == 1.0, (seed, part.id)
    if mistakes:
        for mistake in part.mistakes(probe):
            assert not part.check.matches(as_reply(mistake.value), want), (seed, part.id, mistake.note)


def assert_reference_full_and_starter_zero(root: Path, sid: str, part_ids) -> None:
    """The generated solution earns every point; the untouched starter earns none, each part saying why."""
    results = grade_one(root, sid, solution_notebook(root, sid))
    assert set(results) == set(part_ids)
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)
    results = grade_one(root, sid, release_notebook(root, sid))
    for pid, r in results.items():
        assert r.score == 0 and r.note in ("NOT_ANSWERED", "RAISED"), (pid, r.note)


def assert_wrong_with_notes(results, expected: dict[str, str]) -> None:
    """Each listed part lost points and carries the expected answer note."""
    for pid, note in expected.items():
        assert results[pid].score < results[pid].max_points and results[pid].note == note, (pid, results[pid].note)


def run_probe(probe, namespace: dict):
    """The reply a kernel whose notebook globals are `namespace` gives to `probe`: hwkit_kernel's runtime
    answers here, in-process, and the answer is read back through the wire format as grading reads it."""
    from hwkit.probes import new_nonce, read_reply, request
    from hwkit_kernel.runtime import Runtime

    nonce = new_nonce()
    content, buffers = Runtime(None, namespace).answer(*request(probe, nonce))
    return read_reply(content, buffers, nonce)


def grade_probe(part, probe, namespace: dict):
    """Grade `part` for a student whose notebook globals are `namespace`, without a kernel. With one torch
    thread, as a grading lane has (hwkit.grading.batch): the judge's CPU budget counts this thread's time,
    which a second OpenMP thread spinning on a loaded machine would inflate (a correct ResNet once failed so)."""
    import torch

    from hwkit.checks import grade_reply

    torch.set_num_threads(1)

    return grade_reply(part, run_probe(probe, namespace), probe)


def dask_scheduler_argv(info: Path) -> list[str]:
    """`dask scheduler` on 127.0.0.1 at a port the system gives it, writing its address to `info` once it listens.
    A port picked beforehand and handed over can be taken meanwhile (by a worker starting beside it)."""
    return [str(Path(sys.executable).parent / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
            "--scheduler-file", str(info), "--no-dashboard"]


def dask_scheduler_address(info: Path, proc: subprocess.Popen, log: Path, timeout: float = 120) -> str:
    """The address the scheduler started with `dask_scheduler_argv(info)` listens on; its log if it never does."""
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return json.loads(info.read_text())["address"]
        except (OSError, ValueError, KeyError):     # not written yet, or half written
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise RuntimeError(f"the Dask scheduler did not start (exit {proc.poll()}); its log ends:\n{tail}")

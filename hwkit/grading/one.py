"""Grading one submission: find its notebook's variant, run it in a fresh sandboxed kernel, probe it with
fresh hidden inputs, check the replies here (outside the sandbox), and make its result.

`grade_submission` is the sequence of steps; each step is a function below it, in order."""
from __future__ import annotations

import hashlib
import random
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hwkit import integrity, late
from hwkit.checks import grade_reply
from hwkit.course import Assignment, Course, Student
from hwkit.execute import Execution, apply_run_report, executed_text, kernel_for, run_notebook
from hwkit.generate import ProblemVariant, StudentVariant, build_variant, released_languages
from hwkit.gradebook import PartResult, SubmissionResult
from hwkit.grading.submissions import Submission, file_hash
from hwkit.integrity import (FORBIDDEN, REQUIRED_MISSING, answer_record, forbidden_shortcut, given_cells,
                             missing_requirement)
from hwkit.notebooks import AnswerCells, answer_fingerprint, answer_text, notebook_lang, read_notebook
from hwkit.records import Outcome, Part, Probe, Status
from hwkit.sandbox import scratch_dir
from hwkit.wording import in_language


@dataclass(frozen=True)
class PlannedProbe:
    """One part of the variant and the probe drawn for it in this grading run."""
    variant: ProblemVariant
    part: Part
    probe: Probe

    @property
    def key(self) -> str:
        return f"{self.variant.problem.id}/{self.part.id}"


def grade_submission(course: Course, assignment: Assignment, student: Student, sub: Submission, *,
                     slot: int = 0, sandbox: bool = True, warm: bool = False,
                     run_secret: bytes | None = None) -> tuple[SubmissionResult, str | None]:
    """Grade one student. Returns the result and the executed notebook (JSON text) if it ran. `run_secret`:
    the batch's, for its hidden inputs (draw_probes)."""
    variant = build_variant(course, assignment, student)
    result = new_result(assignment, student, sub)
    if sub.path is None:
        return not_graded(result, variant, sub.missing or Status.NO_SUBMISSION, sub.problem), None
    nb, problem = read_notebook(sub.path)
    result.lang = notebook_lang(nb) or released_lang(course, assignment, student)
    if nb is None:
        return not_graded(result, variant, Status.INVALID, problem), None
    plan = draw_probes(variant, run_secret)
    execution = run_in_kernel(course, assignment, nb, plan, slot=slot, sandbox=sandbox, warm=warm)
    started = time.perf_counter()
    score_parts(result, plan, execution, nb, given_cells(course, assignment))
    checks = time.perf_counter() - started
    check_variant(course, assignment, student, nb, plan, execution, result)
    result.timings = {**{k: round(v, 3) for k, v in execution.timings.items()},
                      "checks": round(checks, 3), "variant": round(time.perf_counter() - started - checks, 3)}
    return result, executed_text(execution.notebook)


def new_result(assignment: Assignment, student: Student, sub: Submission) -> SubmissionResult:
    """The result's identification: who, which file, when it came in and how late."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = SubmissionResult(assignment.assignment_id, student.student_id, "", "", file_hash(sub.path), graded_at=now)
    came = late.lateness(assignment, student, sub.path)
    result.submitted_at, result.late_days, result.penalty = came.submitted_at, came.days, came.penalty
    if sub.path is not None:
        result.notebook, result.chosen_by, result.notebooks = sub.path.name[:200], sub.chosen_by, sub.notebooks
    return result


_NOT_GRADED = {   # status -> (part note, what the student reads before the reason)
    Status.NO_SUBMISSION: ("NO_SUBMISSION", "No notebook was graded: ", "未评分："),
    Status.AMBIGUOUS: ("NO_SUBMISSION", "No notebook was graded: ", "未评分："),
    Status.INVALID: ("INVALID_NOTEBOOK", "The notebook could not be read: ", "无法读取笔记本："),
}


def not_graded(result: SubmissionResult, variant: StudentVariant, status: Status, why: str) -> SubmissionResult:
    """No notebook could be run: every part scores zero and says why."""
    note, en, zh = _NOT_GRADED[status]
    result.status, result.reason = status, why
    result.parts = zero_parts(variant, note, en + why, zh + in_language(why, "zh"))
    return result


def zero_parts(variant: StudentVariant, note: str, en: str, zh: str, needs_review: bool = False) -> list[PartResult]:
    return [PartResult(pv.problem.id, part.id, part.title, 0.0, part.points, note, {"en": en, "zh": zh},
                       needs_review=needs_review)
            for pv in variant.problems for part in pv.parts]


def released_lang(course: Course, assignment: Assignment, student: Student) -> str:
    """The language this student's notebook was released in ("" if unknown)."""
    found = released_languages(course, assignment.assignment_id, [student])
    return found.pop() if len(found) == 1 else ""


def new_run_secret() -> bytes:
    """A grading run's secret for its hidden inputs (draw_probes): drawn when a batch starts, kept in memory only."""
    return secrets.token_bytes(32)


def draw_probes(variant: StudentVariant, run_secret: bytes | None = None) -> list[PlannedProbe]:
    """Fresh hidden inputs for every grading run, from generators of their own (never process-wide state).

    A batch passes its run's secret, drawn when the run starts and kept nowhere: each part's generator then
    depends on the secret, the problem and the part alone, so the students of one run are asked the same
    hidden questions wherever their variants agree, and a reference (a whole network's run) serves all of
    them (hwkit.behaviour's caches); the next run asks new ones. Without it every call draws afresh."""
    def generator(problem_id: str, part_id: str) -> random.Random:
        if run_secret is None:
            return random.Random(secrets.randbits(128))
        return random.Random(hashlib.sha256(b"\0".join([run_secret, problem_id.encode(), part_id.encode()])).digest())

    return [PlannedProbe(pv, part, part.probe(generator(pv.problem.id, part.id)))
            for pv in variant.problems for part in pv.parts]


def run_in_kernel(course: Course, assignment: Assignment, nb, plan: list[PlannedProbe], *, slot: int,
                  sandbox: bool, warm: bool) -> Execution:
    """Run the notebook's cells and then the probes in a fresh kernel, with the assignment's data files."""
    data_dir = course.root / "source" / assignment.assignment_id / "data"
    workdir = scratch_dir()
    try:
        with kernel_for(sandbox, workdir, course.limits, slot, data_dir if data_dir.is_dir() else None, warm) as kernel:
            execution = run_notebook(nb, kernel, course.limits, {p.key: p.probe for p in plan})
        report = getattr(kernel, "report", None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    apply_run_report(execution, report)
    return execution


def score_parts(result: SubmissionResult, plan: list[PlannedProbe], execution: Execution, nb,
                given: set[str] | None = None) -> None:
    """Compare each reply with its reference, here in the grader, and record the part. `given`: the release's
    statement and given cells (integrity.given_cells), which a forbidden shortcut is not looked for in."""
    result.status, result.reason = execution.status, execution.reason
    result.peak_memory_mb, result.cpu_seconds = execution.peak_memory_mb, execution.cpu_seconds
    answers = AnswerCells(nb)     # each part's answer cells, read once
    for planned in plan:
        part, reply = planned.part, execution.replies[planned.key]
        outcome = grade_reply(part, reply, planned.probe)
        outcome = _by_the_means_asked(part, outcome, answers, given)
        result.parts.append(PartResult(planned.variant.problem.id, part.id, part.title,
                                       round(outcome.fraction * part.points, 4), part.points, outcome.note,
                                       outcome.feedback, outcome.needs_review,
                                       answer_text(answers, part.id, reply.value if reply.ok else None),
                                       answer_fingerprint(answers, part.id), compared=answer_record(part, reply)))


def _by_the_means_asked(part: Part, outcome: Outcome, answers: AnswerCells, given: set[str] | None) -> Outcome:
    """Right by behaviour, but by a means the statement forbids, or without the method it asks for: 0 for now,
    and a person decides."""
    if outcome.fraction <= 0:
        return outcome
    shortcut = forbidden_shortcut(part, answers, given)
    if shortcut is not None:
        return Outcome(0.0, FORBIDDEN, shortcut, needs_review=True)
    missing = missing_requirement(part, answers, given)
    if missing is not None:
        return Outcome(0.0, REQUIRED_MISSING, missing, needs_review=True)
    return outcome


def check_variant(course: Course, assignment: Assignment, student: Student, nb, plan: list[PlannedProbe],
                  execution: Execution, result: SubmissionResult) -> None:
    """Is this notebook the student's own variant (metadata, parameter cells, wrong answers that are another
    student's references; hwkit/integrity.py)? A mismatch keeps the scores and asks for review; the reason
    is bounded, and the check never fails the grading."""
    wrong = [(p.variant.problem.id, p.part, execution.replies.get(p.key))
             for p, scored in zip(plan, result.parts) if scored.score < scored.max_points]
    result.status, result.reason = integrity.review(course, assignment, student.student_id, nb, wrong,
                                                    result.status, result.reason)


def grader_error(course: Course, assignment: Assignment, student: Student, path: Path | None,
                 reason: str) -> SubmissionResult:
    """The grader failed on this submission: recorded with the reason, and graded again by the next run
    (its hash is marked, so it never counts as unchanged). Until then its zeros await a person, like a part the
    grader failed on: a zero the student may not deserve is never exported unnoticed."""
    result = SubmissionResult(assignment.assignment_id, student.student_id, Status.GRADER_ERROR, reason[:300],
                              "retry:" + file_hash(path))
    result.parts = zero_parts(build_variant(course, assignment, student), "GRADER_ERROR",
                              "The grader failed on this submission; it will be graded again.", "评分程序出错，将重新评分。",
                              needs_review=True)
    return result

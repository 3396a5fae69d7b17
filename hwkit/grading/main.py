"""`hwkit grade`: what is left to grade, the batch with its progress bar, each result written as it comes."""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from hwkit import late
from hwkit.course import Course, load_course
from hwkit.errors import HwkitError
from hwkit.fsutil import atomic_write_text
from hwkit.gradebook import Gradebook, SubmissionResult
from hwkit.grading.batch import LocalRunner
from hwkit.grading.one import grader_error
from hwkit.grading.submissions import Submission, changed_since_grading, find_submissions
from hwkit.records import Status
from hwkit.report import mismatch_count, review_count, write_feedback, write_reports

FINISHED = (Status.OK, Status.CELL_ERRORS)     # what the progress bar does not count as "not ok"


def main(*, course_dir: Path, assignment_id: str, submissions_dir: Path | None = None, jobs: int | None = None,
         force: bool = False, students: list[str] | None = None, sandbox: bool = True, console=None,
         warm: bool = False, runner=None) -> str:
    """`runner`: where the submissions are graded (default: `LocalRunner`, this machine; `hwkit grade --cluster`
    passes hwkit.cluster's). Either way this process alone writes the gradebook and the files."""
    course = load_course(course_dir)
    if not (course.root / "source" / assignment_id / "answers.json").is_file():
        raise HwkitError(f"{course.root / 'source' / assignment_id}: not generated yet; run `hwkit generate {assignment_id}` first")
    folder = submissions_dir or course.root / "submitted" / assignment_id
    if not folder.is_dir():
        raise HwkitError(f"{folder}: no such submissions folder; put submissions in <folder>/<student_id>/*.ipynb")
    runner = runner or LocalRunner(jobs, sandbox, warm)
    runner.check()
    with grading_lock(course, assignment_id):
        return _grade_all(course, assignment_id, folder, force, students, runner, console)


@contextmanager
def grading_lock(course: Course, assignment_id: str):
    """One `hwkit grade` per course and assignment at a time: a second one refuses, naming the first's pid.
    An advisory lock on a file, so a grader that was killed holds nothing."""
    folder = course.root / "graded" / assignment_id
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".grading.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise HwkitError(f"{assignment_id} is already being graded in this course (pid {holder}); wait for it "
                             "to finish, or stop it, then run again (finished submissions are kept)") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)


def _grade_all(course: Course, assignment_id: str, folder: Path, force, students, runner, console) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    subs, unknown = find_submissions(folder, course, assignment_id, students)
    if console is not None:
        for sid in unknown:
            console.print(f"[yellow]skipped[/yellow] {folder / sid}: not on the roster")
    book = Gradebook(course.root)
    todo = [s for s in subs if force or changed_since_grading(book, assignment_id, s)
            or not (course.root / "graded" / assignment_id / s.student_id / "feedback.html").is_file()]
    by_id = {s.student_id: s for s in todo}
    relate = lateness_changed(course, book, assignment_id, [s for s in subs if s.student_id not in by_id])
    taken = book.seconds_taken(assignment_id)     # longest first (by their last grading; never graded: first)
    todo.sort(key=lambda sub: -taken.get(sub.student_id, float("inf")))
    failures, graded, start, how = 0, 0, time.perf_counter(), ""
    if todo:   # (with nothing to grade the assignment is not loaded: that imports the bank, hence torch)
        progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, disable=console is None)
        with progress, runner.batch(course, assignment_id, todo) as batch, reports_if_stopped(course, book, assignment_id):
            how = f" ({batch.summary})"
            course.assignment(assignment_id)  # validated while the workers start (loading the bank imports torch)
            task = progress.add_task("grade", total=len(todo), info="")
            for msg in batch.messages():
                kind = msg[0]
                if kind == "leak":
                    raise HwkitError(f"grading stopped: a sandbox did not tear down cleanly ({msg[2]}); results so far "
                                     "are saved. Run `hwkit sandbox doctor` before grading again")
                if kind == "done":
                    result, executed = SubmissionResult.from_json(msg[1]), msg[2]
                else:                       # "failed" or "lost": recorded as a grader error, retried next run
                    sub = by_id[msg[1]]
                    result = grader_error(course, course.assignment(assignment_id), course.students([sub.student_id])[0],
                                          sub.path, msg[2])
                    executed = None
                keep(course, book, result, executed)
                graded += 1
                failures += result.status not in FINISHED
                rate = graded / max(1e-9, time.perf_counter() - start) * 60
                progress.update(task, advance=1, info=f"{failures} not ok, {rate:.0f}/min")
                if graded == len(todo):
                    break
    results = book.results(assignment_id)
    paths = write_reports(course, assignment_id, results)
    book.close()
    late_by_file = _late_by_file_time(results, subs)
    skipped, left = len(subs) - len(todo), len(todo) - graded
    flagged = sum(r.status == Status.VARIANT_MISMATCH for r in results)
    waiting = review_count(results)[0]
    return (f"Graded {graded} submission(s) of {assignment_id} in {time.perf_counter() - start:.1f}s"
            + (f", {skipped} unchanged skipped" if skipped else "")
            + (f", {relate} late penalty(ies) updated for a changed deadline, penalty or extension" if relate else "")
            + (f", {left} not reached (the grading workers stopped; run again to grade them)" if left else "")
            + f"{how}."
            + (f" {mismatch_count(results)} to review (another student's variant; see the summary)." if flagged else "")
            + (f" {waiting} part(s) await review: `hwkit review {assignment_id}`." if waiting else "")
            + (f" {late_by_file} late by the file's modification time alone (no `hwkit collect` record): a copy made "
               "without `cp -a` carries the copy's time; check them before exporting." if late_by_file else "")
            + f" Grades: {paths['grades']}  "
            f"Summary: {paths['summary']}  Feedback: {course.root / 'graded' / assignment_id}/<student>/feedback.html")


def _late_by_file_time(results, subs: list[Submission]) -> int:
    """Late submissions whose time is only their file's (no collect record): what a plain copy makes of them."""
    paths = {s.student_id: s.path for s in subs}
    return sum(r.late_days > 0 and r.student_id in paths and late.submission_time(paths[r.student_id], None).by_file
               for r in results)


@contextmanager
def reports_if_stopped(course: Course, book: Gradebook, assignment_id: str):
    """A batch that stops (HwkitError: a sandbox leak, a cluster gone; or Ctrl-C) keeps what it graded, and the
    reports (grades.csv, the summary) show it."""
    try:
        yield
    except (HwkitError, KeyboardInterrupt):
        write_reports(course, assignment_id, book.results(assignment_id))
        raise


def lateness_changed(course: Course, book: Gradebook, assignment_id: str, graded: list[Submission]) -> int:
    """Submissions graded before the deadline, the penalty or a student's extension changed: their lateness and
    totals are brought up to date without grading them again (the feedback page too). How many changed."""
    deadline = course.deadline(assignment_id)
    stored = {r.student_id: r for r in book.results(assignment_id, [s.student_id for s in graded], final=False)}
    students = {s.student_id: s for s in course.roster}
    changed = 0
    for sub in graded:
        result = stored.get(sub.student_id)
        if result is None or sub.path is None or sub.student_id not in students:
            continue
        came = late.lateness(deadline, students[sub.student_id], sub.path)
        if (came.days, came.penalty) == (result.late_days, result.penalty):
            continue
        result = replace(result, late_days=came.days, penalty=came.penalty)
        book.set_lateness(result)
        write_feedback(course, book.final(result))
        changed += 1
    return changed


def keep(course: Course, book: Gradebook, result: SubmissionResult, executed: str | None) -> None:
    """Write one result's files and its gradebook row. A result that cannot be kept (whatever a submission put
    in it) is kept as a grader error with the reason, retried by the next run: it never stops the batch."""
    try:
        write_outputs(course, book.final(result), executed)    # the page shows what people decided
        book.record(result)
    except Exception as exc:  # noqa: BLE001 (one submission's files or row must not cost the others theirs)
        failed = grader_error(course, course.assignment(result.assignment), course.students([result.student_id])[0], None,
                              f"its results could not be written ({type(exc).__name__}: {str(exc)[:200]})")
        write_outputs(course, book.final(failed), None)
        book.record(failed)


def write_outputs(course: Course, result: SubmissionResult, executed: str | None) -> None:
    folder = course.root / "graded" / result.assignment / result.student_id
    folder.mkdir(parents=True, exist_ok=True)
    if executed is not None:
        atomic_write_text(folder / f"{result.assignment}.ipynb", executed)
    write_feedback(course, result, executed)

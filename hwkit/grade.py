"""Batch grading: find each student's notebook, run it in a fresh sandboxed kernel, probe it with fresh
hidden inputs, check the replies here (outside the sandbox), and record the result.

Parameters are re-derived from the roster and the course secret, never read from the notebook."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import multiprocessing
import nbformat

from hwkit import late
from hwkit.checks import grade_reply
from hwkit.course import Assignment, Course, HwkitError, Student, load_course
from hwkit.execute import CELL_ERRORS, INVALID, OK, apply_run_report, kernel_for, run_notebook
from hwkit.generate import build_variant, released_languages
from hwkit.gradebook import VARIANT_MISMATCH, Gradebook, PartResult, SubmissionResult
from hwkit.integrity import FORBIDDEN, answer_record, forbidden_shortcut
from hwkit.problem import Outcome
from hwkit.notebooks import MAX_NOTEBOOK_BYTES, answer_fingerprint, answer_text, notebook_lang, read_notebook
from hwkit.wording import in_language

NO_SUBMISSION, AMBIGUOUS, GRADER_ERROR = "no submission", "ambiguous submission", "grader error"


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path | None
    problem: str = ""        # why no notebook could be chosen, if path is None
    chosen_by: str = ""      # with several notebooks in the folder, why this one: "metadata" or "name"
    notebooks: int = 1       # how many notebooks the folder holds


def _hwkit_meta(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return {}
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("hwkit", {})
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}


def choose_notebook(folder: Path, assignment_id: str, student_id: str) -> Submission:
    """One notebook per folder is expected; with several, the one whose hwkit metadata names this
    assignment, else the one named ASSIGNMENT.ipynb."""
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.is_symlink()
                       and not p.name.startswith("."))
    if not notebooks:
        return Submission(student_id, None, "the folder holds no .ipynb notebook")
    if len(notebooks) == 1:
        return Submission(student_id, notebooks[0])
    tagged = [p for p in notebooks if _hwkit_meta(p).get("assignment") == assignment_id]
    if len(tagged) == 1:
        return Submission(student_id, tagged[0], chosen_by="metadata", notebooks=len(notebooks))
    named = [p for p in notebooks if p.name == f"{assignment_id}.ipynb"]
    if len(named) == 1:
        return Submission(student_id, named[0], chosen_by="name", notebooks=len(notebooks))
    return Submission(student_id, None, f"several notebooks ({', '.join(p.name for p in notebooks[:5])}) "
                                        "and none is identifiable as this assignment's")


def find_submissions(folder: Path, course: Course, assignment_id: str, only: list[str] | None):
    roster = {s.student_id for s in course.students(only)}
    present = {p.name: p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()} if folder.is_dir() else {}
    unknown = sorted(set(present) - {s.student_id for s in course.roster})
    subs = [choose_notebook(present[sid], assignment_id, sid) if sid in present
            else Submission(sid, None, "no folder for this student in the submissions")
            for sid in sorted(roster)]
    return subs, unknown


def released_lang(course: Course, assignment: Assignment, student: Student) -> str:
    """The language this student's notebook was released in ("" if unknown)."""
    found = released_languages(course, assignment.assignment_id, [student])
    return found.pop() if len(found) == 1 else ""


def file_hash(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""


def _zero_parts(variant, note: str, en: str, zh: str) -> list[PartResult]:
    return [PartResult(pv.problem.id, part.id, part.title, 0.0, part.points, note, {"en": en, "zh": zh})
            for pv in variant.problems for part in pv.parts]


def grade_submission(course: Course, assignment: Assignment, student: Student, sub: Submission, *,
                     slot: int = 0, sandbox: bool = True, warm: bool = False) -> tuple[SubmissionResult, str | None]:
    """Grade one student. Returns the result and the executed notebook (JSON text) if it ran."""
    variant = build_variant(course, assignment, student)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = SubmissionResult(assignment.assignment_id, student.student_id, "", "", file_hash(sub.path), graded_at=now)
    submitted = late.submission_time(sub.path, assignment.due)
    result.submitted_at = submitted.at.isoformat(timespec="seconds") if submitted.at else ""
    result.late_days = late.days_late(assignment, student, submitted) if sub.path else 0
    result.penalty = late.penalty(assignment, result.late_days)
    if sub.path is None:
        missing = sub.problem.startswith("no folder") or sub.problem.startswith("the folder holds no")
        result.status, result.reason = (NO_SUBMISSION if missing else AMBIGUOUS), sub.problem
        result.parts = _zero_parts(variant, "NO_SUBMISSION", "No notebook was graded: " + sub.problem,
                                   "未评分：" + in_language(sub.problem, "zh"))
        return result, None
    result.notebook, result.chosen_by, result.notebooks = sub.path.name[:200], sub.chosen_by, sub.notebooks
    nb, problem = read_notebook(sub.path)
    result.lang = notebook_lang(nb) or released_lang(course, assignment, student)
    if nb is None:
        result.status, result.reason = INVALID, problem
        result.parts = _zero_parts(variant, "INVALID_NOTEBOOK", "The notebook could not be read: " + problem,
                                   "无法读取笔记本：" + in_language(problem, "zh"))
        return result, None
    rng = random.Random(secrets.randbits(128))  # fresh hidden inputs for every grading run
    probes, plan = {}, []
    for pv in variant.problems:
        for part in pv.parts:
            probe = part.probe(rng)
            probes[f"{pv.problem.id}/{part.id}"] = probe
            plan.append((pv, part, probe))
    data_dir = course.root / "source" / assignment.assignment_id / "data"
    workdir = Path(tempfile.mkdtemp(prefix="hwk-"))
    try:
        with kernel_for(sandbox, workdir, course.limits, slot, data_dir if data_dir.is_dir() else None, warm) as kernel:
            execution = run_notebook(nb, kernel, course.limits, probes)
        report = getattr(kernel, "report", None)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    apply_run_report(execution, report)
    status, reason = execution.status, execution.reason
    result.peak_memory_mb, result.cpu_seconds = execution.peak_memory_mb, execution.cpu_seconds
    result.status, result.reason = status, reason
    t = time.perf_counter()
    for pv, part, probe in plan:
        reply = execution.replies[f"{pv.problem.id}/{part.id}"]
        outcome = grade_reply(part, reply, probe)
        shortcut = forbidden_shortcut(part, nb) if outcome.fraction > 0 else None
        if shortcut is not None:     # right by behaviour, but by a means the statement forbids: a person decides
            outcome = Outcome(0.0, FORBIDDEN, shortcut, needs_review=True)
        result.parts.append(PartResult(pv.problem.id, part.id, part.title, round(outcome.fraction * part.points, 4),
                                       part.points, outcome.note, outcome.feedback, outcome.needs_review,
                                       answer_text(nb, part.id, reply.value if reply.ok else None),
                                       answer_fingerprint(nb, part.id),
                                       compared=answer_record(part, reply)))
    checks = time.perf_counter() - t
    _check_variant(course, assignment, student, nb, plan, execution.replies, result)
    result.timings = {**{k: round(v, 3) for k, v in execution.timings.items()},
                      "checks": round(checks, 3), "variant": round(time.perf_counter() - t - checks, 3)}
    return result, nbformat.writes(execution.notebook)


def _check_variant(course: Course, assignment: Assignment, student: Student, nb, plan, replies,
                   result: SubmissionResult) -> None:
    """Is this notebook the student's own variant (metadata, parameter cells, wrong answers that are another
    student's references; hwkit/integrity.py)? A mismatch keeps the scores and asks for review; the reason
    is bounded, and the check never fails the grading."""
    from hwkit import integrity

    wrong = [(pv.problem.id, part, replies.get(f"{pv.problem.id}/{part.id}"))
             for (pv, part, _), scored in zip(plan, result.parts) if scored.score < scored.max_points]
    result.status, result.reason = integrity.review(course, assignment, student.student_id, nb, wrong,
                                                    result.status, result.reason)


# ---- the batch ---------------------------------------------------------------------------------------
#
# Lanes: a lane grades one submission at a time in its own sandbox slot (its own uid). Lanes are threads of
# a few worker processes, so a worker's lanes share one zygote, and while one lane waits on its kernel,
# starts the next one or checks replies, another lane's kernel has the core: kernel start, probes and checks
# of one submission overlap the execution of others. A lane's grader side (nbclient, replies, checks) needs
# about a sixth of a core, so one worker holds up to LANES_PER_WORKER lanes: every worker process costs a
# torch import, and its zygote another, once per batch.
LANES_PER_WORKER = 4

@dataclass(frozen=True)
class BatchPlan:
    lanes: int             # kernels in flight
    workers: int           # processes holding the lanes
    torch_threads: int     # intra-op threads per kernel


def plan_batch(jobs: int | None, todo: int, configured_threads: int = 0, cores: int | None = None) -> BatchPlan:
    """Kernels in flight default to one more than the cores (the extra lane fills the gaps of the others);
    threads per kernel default to the cores left to each kernel, at least one."""
    cores = cores or os.cpu_count() or 1
    lanes = max(1, min(jobs or cores + 1, max(todo, 1)))
    threads = configured_threads or max(1, cores // lanes)
    return BatchPlan(lanes, -(-lanes // LANES_PER_WORKER), threads)


def _grade_task(course: Course, assignment: Assignment, student: Student, sub: Submission, slot: int,
                sandbox: bool, warm: bool) -> tuple[dict, str | None]:
    from hwkit.sandbox import SandboxLeak

    try:
        result, executed = grade_submission(course, assignment, student, sub, slot=slot, sandbox=sandbox, warm=warm)
    except SandboxLeak:
        raise  # fail closed: the batch stops rather than grade on a machine with a broken jail
    except Exception as exc:  # a grader fault must not lose the batch: record it, retry it on the next run
        result, executed = _grader_error(course, assignment, student, sub.path, f"{type(exc).__name__}: {exc}"), None
    return result.to_json(), executed


def _grader_error(course: Course, assignment: Assignment, student: Student, path: Path | None,
                  reason: str) -> SubmissionResult:
    result = SubmissionResult(assignment.assignment_id, student.student_id, GRADER_ERROR, reason[:300],
                              "retry:" + file_hash(path))
    result.parts = _zero_parts(build_variant(course, assignment, student), "GRADER_ERROR",
                               "The grader failed on this submission; it will be graded again.", "评分程序出错，将重新评分。")
    return result


def _worker_main(course_root: str, assignment_id: str, slots: list[int], torch_threads: int, sandbox: bool,
                 warm: bool, tasks, results) -> None:
    """A worker process: one thread per lane, each taking tasks until it meets a None."""
    import ctypes
    import signal
    import threading

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)     # PR_SET_PDEATHSIG: never outlive the grader
    if os.getppid() == 1:
        return
    if sandbox and warm:
        from hwkit.warm import process_zygote

        process_zygote(wait=False)   # its imports overlap this worker's; the first kernel waits for them
    import torch

    torch.set_num_threads(1)  # references are tiny; the cores belong to the kernels
    course = load_course(Path(course_root))
    if torch_threads != course.limits.torch_threads:
        from dataclasses import replace

        course = replace(course, limits=replace(course.limits, torch_threads=torch_threads))
    assignment = course.assignment(assignment_id)
    students = {s.student_id: s for s in course.roster}
    from hwkit.sandbox import SandboxLeak

    def lane(slot: int) -> None:
        while (sub := tasks.get()) is not None:
            results.put(("start", sub.student_id, os.getpid()))
            try:
                results.put(("done", *_grade_task(course, assignment, students[sub.student_id], sub, slot,
                                                  sandbox, warm)))
            except SandboxLeak as exc:
                results.put(("leak", sub.student_id, str(exc)))
                return
            except BaseException as exc:  # noqa: BLE001 (even this is reported, never a silent loss)
                results.put(("failed", sub.student_id, f"{type(exc).__name__}: {exc}"))

    threads = [threading.Thread(target=lane, args=(slot,), name=f"hwkit-lane-{slot}") for slot in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


class _Batch:
    """The worker processes of one `hwkit grade` run and the queues between them and the grader."""

    def __init__(self, course: Course, assignment_id: str, todo: list[Submission], plan: BatchPlan,
                 sandbox: bool, warm: bool):
        ctx = multiprocessing.get_context("spawn")
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        for sub in todo:
            self.tasks.put(sub)
        for _ in range(plan.lanes):
            self.tasks.put(None)
        slots = [list(range(plan.lanes))[w::plan.workers] for w in range(plan.workers)]
        self.procs = [ctx.Process(target=_worker_main, name=f"hwkit-grader-{w}",
                                  args=(str(course.root), assignment_id, slots[w], plan.torch_threads, sandbox,
                                        warm, self.tasks, self.results))
                      for w in range(plan.workers)]
        self.in_flight: dict[str, int] = {}      # student id -> worker pid

    def __enter__(self) -> "_Batch":
        for proc in self.procs:
            proc.start()
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.tasks.cancel_join_thread()
        self.results.cancel_join_thread()

    def messages(self):
        """Yield the workers' messages; when every worker has exited, yield ("lost", sid) for each
        submission that was being graded by a worker that died, then stop."""
        from queue import Empty

        while True:
            try:
                msg = self.results.get(timeout=0.5)
            except Empty:
                if any(p.is_alive() for p in self.procs):
                    continue
                try:                         # a worker's last message may still be in the pipe
                    msg = self.results.get(timeout=0.5)
                except Empty:
                    for sid in list(self.in_flight):
                        yield ("lost", sid, "the grading worker exited while grading this submission")
                    return
            if msg[0] == "start":
                self.in_flight[msg[1]] = msg[2]
                continue
            if msg[0] == "done":
                self.in_flight.pop(msg[1]["student_id"], None)
            else:
                self.in_flight.pop(msg[1], None)
            yield msg


def _keep(course: Course, book: Gradebook, result: SubmissionResult, executed: str | None) -> None:
    """Write one result's files and its gradebook row. A result that cannot be kept (whatever a submission put
    in it) is kept as a grader error with the reason, retried by the next run: it never stops the batch."""
    try:
        write_outputs(course, book.final(result), executed)    # the page shows what people decided
        book.record(result)
    except Exception as exc:  # noqa: BLE001 (one submission's files or row must not cost the others theirs)
        student = next(s for s in course.roster if s.student_id == result.student_id)
        failed = _grader_error(course, course.assignment(result.assignment), student, None,
                               f"its results could not be written ({type(exc).__name__}: {str(exc)[:200]})")
        write_outputs(course, book.final(failed), None)
        book.record(failed)


def write_outputs(course: Course, result: SubmissionResult, executed: str | None) -> None:
    from hwkit.report import write_feedback

    folder = course.root / "graded" / result.assignment / result.student_id
    folder.mkdir(parents=True, exist_ok=True)
    if executed is not None:
        _atomic_write(folder / f"{result.assignment}.ipynb", executed)
    write_feedback(course, result, executed)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", errors="replace")   # a backstop: kernel text is made valid where read
    os.replace(tmp, path)


def main(*, course_dir: Path, assignment_id: str, submissions_dir: Path | None = None, jobs: int | None = None,
         force: bool = False, students: list[str] | None = None, sandbox: bool = True, console=None,
         warm: bool = False) -> str:
    course = load_course(course_dir)
    if not (course.root / "source" / assignment_id / "answers.json").is_file():
        raise HwkitError(f"{course.root / 'source' / assignment_id}: not generated yet; run `hwkit generate {assignment_id}` first")
    folder = submissions_dir or course.root / "submitted" / assignment_id
    if not folder.is_dir():
        raise HwkitError(f"{folder}: no such submissions folder; put submissions in <folder>/<student_id>/*.ipynb")
    if sandbox:
        from hwkit.sandbox import sandbox_available

        ok, why = sandbox_available()
        if not ok:
            raise HwkitError(f"the sandbox cannot run here: {why}. Run `hwkit sandbox doctor`; or pass --no-sandbox "
                             "to run student code unsandboxed (only for code you trust)")
    with grading_lock(course, assignment_id):
        return _grade_all(course, assignment_id, folder, jobs, force, students, sandbox, console, warm)


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


def _grade_all(course: Course, assignment_id: str, folder: Path, jobs, force, students, sandbox, console,
               warm) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hwkit.report import mismatch_count, review_count, write_reports

    subs, unknown = find_submissions(folder, course, assignment_id, students)
    if console is not None:
        for sid in unknown:
            console.print(f"[yellow]skipped[/yellow] {folder / sid}: not on the roster")
    book = Gradebook(course.root)
    todo = [s for s in subs if force or book.graded_hash(assignment_id, s.student_id) != file_hash(s.path)
            or not (course.root / "graded" / assignment_id / s.student_id / "feedback.html").is_file()]
    plan = plan_batch(jobs, len(todo), course.limits.torch_threads)
    failures, graded, start = 0, 0, time.perf_counter()
    by_id = {s.student_id: s for s in todo}
    if not todo:
        course.assignment(assignment_id)  # validates the assignment file
    else:
        progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, disable=console is None)
        with progress, _Batch(course, assignment_id, todo, plan, sandbox, warm and sandbox) as batch:
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
                    student = next(s for s in course.roster if s.student_id == sub.student_id)
                    result = _grader_error(course, course.assignment(assignment_id), student, sub.path, msg[2])
                    executed = None
                _keep(course, book, result, executed)
                graded += 1
                failures += result.status not in (OK, CELL_ERRORS)
                rate = graded / max(1e-9, time.perf_counter() - start) * 60
                progress.update(task, advance=1, info=f"{failures} not ok, {rate:.0f}/min")
                if graded == len(todo):
                    break
    results = book.results(assignment_id)
    paths = write_reports(course, assignment_id, results)
    book.close()
    skipped, left = len(subs) - len(todo), len(todo) - graded
    flagged = sum(r.status == VARIANT_MISMATCH for r in results)
    waiting = review_count(results)[0]
    return (f"Graded {graded} submission(s) of {assignment_id} in {time.perf_counter() - start:.1f}s"
            + (f", {skipped} unchanged skipped" if skipped else "")
            + (f", {left} not reached (the grading workers stopped; run again to grade them)" if left else "")
            + f" ({plan.lanes} at once, {plan.torch_threads} torch thread(s) each)."
            + (f" {mismatch_count(results)} to review (another student's variant; see the summary)." if flagged else "")
            + (f" {waiting} part(s) await review: `hwkit review {assignment_id}`." if waiting else "")
            + f" Grades: {paths['grades']}  "
            f"Summary: {paths['summary']}  Feedback: {course.root / 'graded' / assignment_id}/<student>/feedback.html")

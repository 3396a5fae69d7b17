"""Batch grading: find each student's notebook, run it in a fresh sandboxed kernel, probe it with fresh
hidden inputs, check the replies here (outside the sandbox), and record the result.

Parameters are re-derived from the roster and the course secret, never read from the notebook."""
from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import multiprocessing
import nbformat

from hwkit.checks import grade_reply
from hwkit.course import Assignment, Course, HwkitError, SandboxLimits, Student, load_course
from hwkit.execute import CELL_ERRORS, INVALID, OK, apply_run_report, run_notebook
from hwkit.generate import build_variant
from hwkit.gradebook import Gradebook, PartResult, SubmissionResult

MAX_NOTEBOOK_BYTES = 20 * 2**20
NO_SUBMISSION, AMBIGUOUS, GRADER_ERROR = "no submission", "ambiguous submission", "grader error"


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path | None
    problem: str = ""        # why no notebook could be chosen, if path is None


def _hwkit_meta(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return {}
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("hwkit", {})
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError, AttributeError):
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
        return Submission(student_id, tagged[0])
    named = [p for p in notebooks if p.name == f"{assignment_id}.ipynb"]
    if len(named) == 1:
        return Submission(student_id, named[0])
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


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    try:
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            return None, f"the file is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit"
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text"
    except OSError as exc:
        return None, f"the file could not be read ({exc.strerror})"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return None, f"the file is not valid notebook JSON ({str(exc)[:100]})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        return None, "the file is JSON but not a Jupyter notebook"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises many types on malformed notebooks
        return None, f"the notebook could not be read as nbformat 4 ({type(exc).__name__}: {str(exc)[:100]})"
    if not isinstance(nb.get("cells"), list):
        return None, "the notebook has no cell list"
    return nb, ""


def file_hash(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""


def _zero_parts(variant, note: str, en: str, zh: str) -> list[PartResult]:
    return [PartResult(pv.problem.id, part.id, part.title, 0.0, part.points, note, {"en": en, "zh": zh})
            for pv in variant.problems for part in pv.parts]


def kernel_for(sandbox: bool, workdir: Path, limits: SandboxLimits, slot: int, data_dir: Path | None,
               warm: bool = False):
    """The kernel a notebook runs in: a warm or cold jail, or (self-check without bwrap, --no-sandbox) a local one."""
    from hwkit import sandbox as sb

    if sandbox and warm:
        from hwkit.warm import WarmJail

        return WarmJail(workdir, limits, slot=slot, data_dir=data_dir)   # forked from this process's zygote
    cls = sb.Jail if sandbox else sb.LocalKernel
    return cls(workdir, limits, slot=slot, data_dir=data_dir)


def grade_submission(course: Course, assignment: Assignment, student: Student, sub: Submission, *,
                     slot: int = 0, sandbox: bool = True, warm: bool = False) -> tuple[SubmissionResult, str | None]:
    """Grade one student. Returns the result and the executed notebook (JSON text) if it ran."""
    variant = build_variant(course, assignment, student)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result = SubmissionResult(assignment.assignment_id, student.student_id, "", "", file_hash(sub.path), graded_at=now)
    if sub.path is None:
        missing = sub.problem.startswith("no folder") or sub.problem.startswith("the folder holds no")
        result.status, result.reason = (NO_SUBMISSION if missing else AMBIGUOUS), sub.problem
        result.parts = _zero_parts(variant, "NO_SUBMISSION", "No notebook was graded: " + sub.problem,
                                   "未评分:" + sub.problem)
        return result, None
    nb, problem = read_notebook(sub.path)
    if nb is None:
        result.status, result.reason = INVALID, problem
        result.parts = _zero_parts(variant, "INVALID_NOTEBOOK", "The notebook could not be read: " + problem,
                                   "无法读取笔记本:" + problem)
        return result, None
    meta_student = nb.metadata.get("hwkit", {}).get("student") if isinstance(nb.metadata.get("hwkit"), dict) else None
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
    if meta_student and meta_student != student.student_id:
        reason = (reason + "; " if reason else "") + f"the notebook was generated for {meta_student}, graded as {student.student_id}"
    result.status, result.reason = status, reason
    t = time.perf_counter()
    for pv, part, probe in plan:
        outcome = grade_reply(part, execution.replies[f"{pv.problem.id}/{part.id}"], probe)
        result.parts.append(PartResult(pv.problem.id, part.id, part.title, round(outcome.fraction * part.points, 4),
                                       part.points, outcome.note, outcome.feedback, outcome.needs_review))
    result.timings = {**{k: round(v, 3) for k, v in execution.timings.items()},
                      "checks": round(time.perf_counter() - t, 3)}
    return result, nbformat.writes(execution.notebook)


# ---- the batch -------------------------------------------------------------------------------------

_SLOT = 0


def _init_worker(slots, warm: bool = False) -> None:
    global _SLOT
    _SLOT = slots.get()
    import torch

    torch.set_num_threads(1)  # references are tiny; the cores belong to the kernels
    if warm:
        from hwkit.warm import process_zygote

        process_zygote()      # this worker's zygote: torch imported once, a kernel forked per submission


def _grade_in_worker(course_root: str, assignment_id: str, student_id: str, path: str | None, problem: str,
                     sandbox: bool, warm: bool = False) -> tuple[dict, str | None]:
    course = load_course(Path(course_root))
    assignment = course.assignment(assignment_id)
    student = next(s for s in course.roster if s.student_id == student_id)
    sub = Submission(student_id, Path(path) if path else None, problem)
    from hwkit.sandbox import SandboxLeak

    try:
        result, executed = grade_submission(course, assignment, student, sub, slot=_SLOT, sandbox=sandbox, warm=warm)
    except SandboxLeak:
        raise  # fail closed: the batch stops rather than grade on a machine with a broken jail
    except Exception as exc:  # a grader fault must not lose the batch: record it, retry it on the next run
        reason = f"{type(exc).__name__}: {exc}"[:300]
        result = SubmissionResult(assignment_id, student_id, GRADER_ERROR, reason, "retry:" + file_hash(sub.path))
        result.parts = _zero_parts(build_variant(course, assignment, student), "GRADER_ERROR",
                                   "The grader failed on this submission; it will be graded again.", "评分程序出错,将重新评分。")
        executed = None
    return result.to_json(), executed


def write_outputs(course: Course, result: SubmissionResult, executed: str | None) -> None:
    from hwkit.report import feedback_html

    folder = course.root / "graded" / result.assignment / result.student_id
    folder.mkdir(parents=True, exist_ok=True)
    if executed is not None:
        _atomic_write(folder / f"{result.assignment}.ipynb", executed)
    _atomic_write(folder / "feedback.html", feedback_html(result, course.lang))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(*, course_dir: Path, assignment_id: str, submissions_dir: Path | None = None, jobs: int | None = None,
         force: bool = False, students: list[str] | None = None, sandbox: bool = True, console=None,
         warm: bool = False) -> str:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hwkit.report import write_reports
    from hwkit.sandbox import SandboxLeak

    course = load_course(course_dir)
    course.assignment(assignment_id)  # validates the assignment file before any work
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
    subs, unknown = find_submissions(folder, course, assignment_id, students)
    if console is not None:
        for sid in unknown:
            console.print(f"[yellow]skipped[/yellow] {folder / sid}: not on the roster")
    book = Gradebook(course.root)
    todo = [s for s in subs if force or book.graded_hash(assignment_id, s.student_id) != file_hash(s.path)
            or not (course.root / "graded" / assignment_id / s.student_id / "feedback.html").is_file()]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    failures, start = 0, time.perf_counter()
    if todo:
        ctx = multiprocessing.get_context("spawn")
        slots = ctx.Queue()
        for i in range(jobs):
            slots.put(i)
        progress = Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=console, disable=console is None)
        with progress, ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker, initargs=(slots, warm and sandbox)) as pool:
            task = progress.add_task("grade", total=len(todo), info="")
            futures = [pool.submit(_grade_in_worker, str(course.root), assignment_id, s.student_id,
                                   str(s.path) if s.path else None, s.problem, sandbox, warm) for s in todo]
            for done, future in enumerate(as_completed(futures), start=1):
                try:
                    data, executed = future.result()
                except SandboxLeak as exc:
                    pool.shutdown(cancel_futures=True)
                    raise HwkitError(f"grading stopped: a sandbox did not tear down cleanly ({exc}); results so far "
                                     "are saved. Run `hwkit sandbox doctor` before grading again") from exc
                result = SubmissionResult.from_json(data)
                write_outputs(course, result, executed)
                book.record(result)
                failures += result.status not in (OK, CELL_ERRORS)
                rate = done / max(1e-9, time.perf_counter() - start) * 60
                progress.update(task, advance=1, info=f"{failures} not ok, {rate:.0f}/min")
    paths = write_reports(course, assignment_id, book.results(assignment_id))
    book.close()
    skipped = len(subs) - len(todo)
    return (f"Graded {len(todo)} submission(s) of {assignment_id} in {time.perf_counter() - start:.1f}s"
            + (f", {skipped} unchanged skipped" if skipped else "") + f". Grades: {paths['grades']}  "
            f"Summary: {paths['summary']}  Feedback: {course.root / 'graded' / assignment_id}/<student>/feedback.html")

"""Grading many submissions at once on this machine: lanes in worker processes.

A lane grades one submission at a time in its own sandbox slot (its own uid). Lanes are threads of a few
worker processes, so a worker's lanes share one zygote, and while one lane waits on its kernel, starts the
next one or checks replies, another lane's kernel has the core: kernel start, probes and checks of one
submission overlap the execution of others. A lane's grader side (nbclient, replies, checks) needs about a
sixth of a core, so one worker holds up to LANES_PER_WORKER lanes: every worker process costs a torch import,
and its zygote another, once per batch.

Workers talk to the grader through one queue of messages, each a tuple whose first item says what it is:
("start", student_id, worker_pid), ("done", result_json, executed_notebook_or_None),
("failed", student_id, reason), ("leak", student_id, reason); `Batch.messages` adds ("lost", student_id,
reason) for what a dead worker held.

`LocalRunner` is how `hwkit grade` uses this module; a cluster runner (hwkit.cluster.client) has the same two
methods and its batch yields the same messages, so the command's progress and writing are one loop."""
from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, replace
from pathlib import Path
from queue import Empty

from hwkit.course import Assignment, Course, Student, load_course
from hwkit.errors import HwkitError
from hwkit.grading.one import grade_submission, grader_error, new_run_secret
from hwkit.grading.submissions import Submission
from hwkit.sandbox import SandboxLeak

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


def grade_task(course: Course, assignment: Assignment, student: Student, sub: Submission, slot: int,
               sandbox: bool, warm: bool, run_secret: bytes | None = None) -> tuple[dict, str | None]:
    """One submission as a lane grades it: a grader fault becomes a recorded grader error (retried by the next
    run); only a sandbox that did not tear down cleanly escapes, to stop the batch."""
    try:
        result, executed = grade_submission(course, assignment, student, sub, slot=slot, sandbox=sandbox, warm=warm,
                                            run_secret=run_secret)
    except SandboxLeak:
        raise  # fail closed: the batch stops rather than grade on a machine with a broken jail
    except Exception as exc:  # a grader fault must not lose the batch: record it, retry it on the next run
        result, executed = grader_error(course, assignment, student, sub.path, f"{type(exc).__name__}: {exc}"), None
    return result.to_json(), executed


def load_for_grading(course_root: Path, assignment_id: str,
                     torch_threads: int) -> tuple[Course, Assignment, dict[str, Student]]:
    """What a grading worker process (here, or on a Dask worker) holds for its lanes: the course with the
    batch's threads per kernel, the assignment, the roster by id; torch set up for the references."""
    import torch

    from hwkit.behaviour import keep_freed_memory

    torch.set_num_threads(1)  # references are tiny; the cores belong to the kernels
    keep_freed_memory()       # a reference's tensors are allocated again for the next one
    course = load_course(course_root)
    if torch_threads != course.limits.torch_threads:
        course = replace(course, limits=replace(course.limits, torch_threads=torch_threads))
    return course, course.assignment(assignment_id), {s.student_id: s for s in course.roster}


def worker_main(course_root: str, assignment_id: str, slots: list[int], torch_threads: int, sandbox: bool,
                warm: bool, run_secret: bytes, tasks, results) -> None:
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
    course, assignment, students = load_for_grading(Path(course_root), assignment_id, torch_threads)

    def lane(slot: int) -> None:
        while (sub := tasks.get()) is not None:
            results.put(("start", sub.student_id, os.getpid()))
            try:
                results.put(("done", *grade_task(course, assignment, students[sub.student_id], sub, slot,
                                                 sandbox, warm, run_secret)))
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


class LocalRunner:
    """Grading on this machine: `check` before anything is locked, then one `batch` of what is left to grade."""

    def __init__(self, jobs: int | None, sandbox: bool, warm: bool):
        self.jobs, self.sandbox, self.warm = jobs, sandbox, warm and sandbox

    def check(self) -> None:
        if self.sandbox:
            from hwkit.sandbox import sandbox_available

            ok, why = sandbox_available()
            if not ok:
                raise HwkitError(f"the sandbox cannot run here: {why}. Run `hwkit sandbox doctor`; or pass --no-sandbox "
                                 "to run student code unsandboxed (only for code you trust)")

    def batch(self, course: Course, assignment_id: str, todo: list[Submission]) -> "Batch":
        plan = plan_batch(self.jobs, len(todo), course.limits.torch_threads)
        return Batch(course, assignment_id, todo, plan, self.sandbox, self.warm)


class Batch:
    """The worker processes of one `hwkit grade` run and the queues between them and the grader."""

    def __init__(self, course: Course, assignment_id: str, todo: list[Submission], plan: BatchPlan,
                 sandbox: bool, warm: bool):
        self.summary = f"{plan.lanes} at once, {plan.torch_threads} torch thread(s) each"
        ctx = multiprocessing.get_context("spawn")
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        for sub in todo:
            self.tasks.put(sub)
        for _ in range(plan.lanes):
            self.tasks.put(None)
        slots = [list(range(plan.lanes))[w::plan.workers] for w in range(plan.workers)]
        run_secret = new_run_secret()
        self.procs = [ctx.Process(target=worker_main, name=f"hwkit-grader-{w}",
                                  args=(str(course.root), assignment_id, slots[w], plan.torch_threads, sandbox,
                                        warm, run_secret, self.tasks, self.results))
                      for w in range(plan.workers)]
        self.in_flight: dict[str, int] = {}      # student id -> worker pid

    def __enter__(self) -> "Batch":
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
        """Yield the workers' messages; when every worker has exited, yield ("lost", sid, reason) for each
        submission that was being graded by a worker that died, then stop."""
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

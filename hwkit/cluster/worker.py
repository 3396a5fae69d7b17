"""What runs on a Dask worker: the course it was sent, its lanes, and grading one submission per task.

A worker process is an hwkit grading worker (hwkit.grading.batch) that takes its submissions from Dask:
- `CoursePlugin` (a Dask WorkerPlugin, one per course and assignment) arrives once per worker with the course
  payload (hwkit.cluster.payload), unpacks it into a private folder and, for warm kernels, launches this
  process's zygote at once. The course and the bank are loaded by the first task, off the event loop.
- `Lanes`, one per process whatever the courses: at most `lanes` submissions graded at once, lane i preferring
  sandbox slot i (hwkit.sandbox.host locks a slot per uid machine-wide, so two worker processes on one machine
  never share a uid: the second takes the next free slot).
- `grade_on_worker` is the task: it takes a lane, then leaves Dask's thread pool (`secede`), so that a worker
  started with one thread still grades `lanes` submissions at once, and the scheduler, which counts a seceded
  task as long-running, sends the next one. It runs `hwkit.grading.batch.grade_task` (the same function a local
  lane runs) and returns bytes: a JSON message the grader reads with json.loads. Dask ships bytes as they are
  (its "dask" serialisation of bytes), never pickled; nothing a student wrote is more than a string in it.

Messages, as the local batch's: ["done", result, executed notebook or null], ["failed", id, reason] (the lane
itself failed), ["leak", id, reason] (a sandbox did not tear down: this worker refuses work from then on), and
["refused", id, reason]: this worker cannot grade (other software, no sandbox, another bank loaded, a leak);
the grader stops the batch rather than record a refusal as a result."""
from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from distributed import WorkerPlugin, get_worker, secede

from hwkit.cluster.identity import differences, software
from hwkit.cluster.payload import (BANK, COURSE, CoursePayload, SubmissionFiles, reap_stale_payloads,
                                   write_release_lang)
from hwkit.grading.batch import grade_task, load_for_grading, plan_batch

PLUGIN_PREFIX = "hwkit-course-"


class Lanes:
    """Lane slots of this worker process: at most `count` submissions at once, each with its own slot number."""

    def __init__(self, count: int):
        self.count = count
        self._free = list(range(count))
        self._lock = threading.Lock()
        self._open = threading.Semaphore(count)

    @contextmanager
    def lane(self):
        self._open.acquire()
        with self._lock:
            slot = self._free.pop(0)
        try:
            yield slot
        finally:
            with self._lock:
                self._free.append(slot)
                self._free.sort()
            self._open.release()


class WorkerProcess:
    """What belongs to the worker process rather than to one course: its lanes, the bank it loaded (a process
    imports one bank's modules and cannot unload them), and a sandbox leak, after which it grades nothing."""

    def __init__(self):
        self.lock = threading.Lock()
        self.lanes: Lanes | None = None
        self.bank = ""           # the digest of the bank loaded in this process, "" if none
        self.broken = ""         # why this worker grades nothing more (a sandbox leak: fail closed)

    def lanes_for(self, count: int) -> Lanes:
        with self.lock:
            if self.lanes is None or self.lanes.count != count:
                self.lanes = Lanes(count)
            return self.lanes

    def load_bank(self, payload: CoursePayload) -> None:
        """The payload's bank, written once into a folder of this process (problems read their kernel.py from it
        while grading) and loaded; the same bank again is the one already loaded."""
        from hwkit.bank import load_bank, use_bank

        with self.lock:
            if self.bank == payload.bank_digest:
                return
            if self.bank:
                raise RuntimeError(f"this worker process already loaded another problem bank ({self.bank[:12]}); "
                                   "restart it to grade with this one")
            folder = payload.unpack(BANK)
            atexit.register(shutil.rmtree, folder.parent, True)
            use_bank(folder)
            load_bank()
            self.bank = payload.bank_digest


PROCESS = WorkerProcess()


class CoursePlugin(WorkerPlugin):
    """One course and assignment on this worker: the payload unpacked, the settings of the batch."""

    idempotent = False

    def __init__(self, payload: CoursePayload, settings: dict):
        self.payload = payload
        # lanes (None: the worker's threads + 1), torch_threads (0: auto), sandbox, warm, software,
        # run_secret (the batch's hidden inputs, hwkit.grading.one.draw_probes)
        self.settings = settings

    @staticmethod
    def name_for(course_key: str, assignment_id: str) -> str:
        return f"{PLUGIN_PREFIX}{assignment_id}-{course_key[:16]}"

    def setup(self, worker) -> None:
        self.address = worker.address
        reap_stale_payloads()
        self.folder = self.payload.unpack(COURSE)
        plan = plan_batch(self.settings["lanes"], 1 << 30, self.settings["torch_threads"], cores=worker.state.nthreads)
        self.lanes = PROCESS.lanes_for(plan.lanes)
        self.torch_threads = plan.torch_threads
        self._lock = threading.Lock()
        self._loaded = None
        self._refusal: str | None = None
        if self.settings["sandbox"] and self.settings["warm"]:
            from hwkit.warm import process_zygote

            process_zygote(wait=False)         # its imports overlap the first task's loading of the course

    def teardown(self, worker) -> None:
        if getattr(self, "folder", None) is not None:
            shutil.rmtree(self.folder.parent, ignore_errors=True)

    def refusal(self) -> str:
        """Why this worker cannot grade this batch ("" if it can); checked once, by the first task."""
        with self._lock:
            if self._refusal is None:
                self._refusal = self._check()
            return f"refuses work: {PROCESS.broken}" if PROCESS.broken else self._refusal

    def _check(self) -> str:
        differ = differences(self.settings["software"], software())
        if differ:
            return "runs other software than the grader: " + "; ".join(differ)
        if self.settings["sandbox"]:
            from hwkit.sandbox import sandbox_available

            ok, why = sandbox_available()
            if not ok:
                return f"cannot run the sandbox: {why}"
        try:
            self._loaded = self._load()
        except Exception as exc:  # noqa: BLE001 (said in words to the grader, which stops the batch)
            return f"could not load the course it was sent ({type(exc).__name__}: {exc})"
        return ""

    def _load(self):
        PROCESS.load_bank(self.payload)
        self.payload.files = {}   # all on disk now (the scheduler keeps its own copy for workers that join later)
        return load_for_grading(self.folder, self.payload.assignment_id, self.torch_threads)

    def grade(self, files: SubmissionFiles, slot: int) -> bytes:
        from hwkit.sandbox import SandboxLeak

        course, assignment, students = self._loaded
        sid = files.student_id
        student = students.get(sid)
        if student is None:
            return message("refused", sid, f"worker {self.address}: {sid} is not on the roster it was sent")
        write_release_lang(course.root, assignment.assignment_id, sid, files.released_lang)
        folder = Path(tempfile.mkdtemp(prefix="hwkit-sub-"))
        try:
            sub = files.lay_out(folder)
            result, executed = grade_task(course, assignment, student, sub, slot, self.settings["sandbox"],
                                          self.settings["warm"], self.settings["run_secret"])
        except SandboxLeak as exc:
            PROCESS.broken = f"a sandbox did not tear down cleanly ({exc})"
            return message("leak", sid, f"worker {self.address}: {exc}")
        except BaseException as exc:  # noqa: BLE001 (reported, never a silent loss)
            return message("failed", sid, f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return message("done", result, executed)


def message(*items) -> bytes:
    return json.dumps(list(items), ensure_ascii=False).encode("utf-8", errors="replace")


def grade_on_worker(plugin_name: str, payload_digest: str, files: SubmissionFiles) -> bytes:
    """The task: one submission graded in one of this worker's lanes; the reply as JSON bytes."""
    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    sid = files.student_id
    if not isinstance(plugin, CoursePlugin) or plugin.payload.digest != payload_digest:
        return message("refused", sid, f"worker {worker.address} does not hold this batch's course (another "
                                       "grader replaced it, or the worker joined while it was being sent)")
    refusal = plugin.refusal()
    if refusal:
        return message("refused", sid, f"worker {worker.address} {refusal}")
    with plugin.lanes.lane() as slot:
        secede()        # out of Dask's thread pool: the next task may take another lane
        return plugin.grade(files, slot)


# ---- facts for the grader and `hwkit cluster doctor` (client.run, off the event loop) -------------------------

def _facts(worker, sandbox: bool) -> dict:
    facts = {"address": worker.address, "name": str(worker.name), "pid": os.getpid(), "host": os.uname().nodename,
             "nthreads": worker.state.nthreads, "cores": os.cpu_count() or 1, "software": software(),
             "bank": PROCESS.bank, "broken": PROCESS.broken}
    if sandbox:
        from hwkit.sandbox import sandbox_available

        facts["sandbox"] = list(sandbox_available())
    return facts


async def worker_facts(sandbox: bool = True, dask_worker=None) -> bytes:
    """This worker as the grader needs to know it, as JSON bytes."""
    facts = await asyncio.to_thread(_facts, dask_worker, sandbox)
    return json.dumps(facts).encode()


def _doctor(worker) -> dict:
    from hwkit.sandbox import doctor

    facts = _facts(worker, sandbox=False)
    facts["checks"] = [list(check) for check in doctor()]
    return facts


async def worker_doctor(dask_worker=None) -> bytes:
    """`hwkit sandbox doctor` on this worker (it starts a test kernel in a jail), with its facts; JSON bytes."""
    facts = await asyncio.to_thread(_doctor, dask_worker)
    return json.dumps(facts).encode()

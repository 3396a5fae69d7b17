"""The grader's side of `hwkit grade --cluster`: connect to a Dask scheduler, check its workers, send the course
once and the submissions one by one, and turn what comes back into the local batch's messages.

`ClusterRunner` has the two methods of hwkit.grading.batch.LocalRunner, and `ClusterBatch.messages` yields the
same messages as the local `Batch`, so `hwkit grade`'s loop (progress, one gradebook transaction per result,
the feedback files) is the same code for both.

Faults, as the grader sees them:
- a worker dies mid-task: the scheduler runs its tasks elsewhere (Dask's `allowed-failures`, 3 by default);
  a task whose workers died more often than that comes back as KilledWorker, recorded as a grader error
  ("lost"), retried by the next run. Each student's result is kept once: a second reply for a student already
  kept is dropped.
- the scheduler goes away: Dask cancels every future; the batch stops with HwkitError (what is kept stays kept,
  the reports are written), and a rerun grades only what is left. A finished task whose result can no longer be
  fetched stops the batch the same way: it is left for the rerun, not recorded as a grader error.
- no worker for `NO_WORKERS_TIMEOUT` seconds: the same stop, saying so.
- a worker that cannot grade (other software, no sandbox, a sandbox leak): the batch stops, naming it."""
from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed import Client, as_completed
from distributed.security import Security

from hwkit.cluster.identity import differences, software
from hwkit.cluster.payload import CoursePayload, SubmissionFiles
from hwkit.cluster.worker import CoursePlugin, grade_on_worker, worker_facts
from hwkit.course import Course
from hwkit.errors import HwkitError
from hwkit.gradebook import SubmissionResult
from hwkit.grading.batch import grade_task, plan_batch
from hwkit.grading.one import new_run_secret, released_lang
from hwkit.grading.submissions import Submission
from hwkit.notebooks import MAX_NOTEBOOK_BYTES

CONNECT_TIMEOUT = 20          # seconds to reach the scheduler
NO_WORKERS_TIMEOUT = 120      # seconds without any worker before the batch stops
IN_FLIGHT_PER_LANE = 2        # submissions sent ahead per lane: the scheduler holds their bytes, not all of them
POLL = 0.1


@dataclass(frozen=True)
class ClusterTarget:
    """A scheduler's address and, for tls://, the certificates (distributed.security.Security)."""
    address: str
    tls_ca_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def security(self) -> Security | None:
        tls = [self.tls_ca_file, self.tls_cert, self.tls_key]
        if self.address.startswith("tls://"):
            if not all(tls):
                raise HwkitError(f"{self.address}: a tls:// scheduler needs --tls-ca-file, --tls-cert and --tls-key "
                                 "(the CA that signed the cluster's certificates, this grader's certificate and key)")
            for path in tls:
                if not Path(path).is_file():
                    raise HwkitError(f"{path}: no such certificate or key file")
            return Security(tls_ca_file=str(self.tls_ca_file), tls_client_cert=str(self.tls_cert),
                            tls_client_key=str(self.tls_key), require_encryption=True)
        if any(tls):
            raise HwkitError(f"{self.address}: certificates were given for a scheduler without TLS; use tls://HOST:PORT")
        if not self.address.startswith("tcp://"):
            raise HwkitError(f"{self.address}: a Dask scheduler address is tcp://HOST:PORT or tls://HOST:PORT")
        return None


@contextmanager
def quiet_dask():
    """Dask logs reconnection attempts and worker deaths with tracebacks; the command line says one line. (Dask
    configures levels of its own for some of its loggers, such as distributed.client: each is set here.)"""
    loggers = [logging.getLogger(name) for name in ["distributed", *logging.root.manager.loggerDict]
               if name == "distributed" or name.startswith("distributed.")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def connect(target: ClusterTarget) -> Client:
    """A client that reads what comes back with Dask's "dask" and "msgpack" serialisations only: our results are
    bytes, and nothing a worker sends as data is unpickled here."""
    security = target.security()
    try:
        return Client(target.address, security=security, timeout=CONNECT_TIMEOUT, set_as_default=False,
                      deserializers=["dask", "msgpack"], name="hwkit")
    except Exception as exc:  # noqa: BLE001 (OSError, TimeoutError, TLS errors: all said in one line)
        raise HwkitError(f"cannot reach the Dask scheduler at {target.address} ({type(exc).__name__}: "
                         f"{str(exc)[:200]}); start one (`dask scheduler`), or check the address and the "
                         "--tls-* options") from None


def workers_facts(client: Client, sandbox: bool) -> list[dict]:
    """Every worker's facts (hwkit.cluster.worker.worker_facts), each parsed from its JSON bytes."""
    replies = client.run(worker_facts, sandbox, on_error="return")
    facts = []
    for address, raw in sorted(replies.items()):
        try:
            facts.append(json.loads(raw))
        except (TypeError, ValueError):
            facts.append({"address": address, "error": f"{type(raw).__name__}: {str(raw)[:200]}"})
    return facts


def refusals(facts: list[dict], mine: dict, sandbox: bool) -> list[str]:
    """Why workers cannot grade for this grader, one sentence per worker; [] when all can."""
    said = []
    for f in facts:
        who = f"worker {f.get('address')}"
        if "error" in f:
            said.append(f"{who} could not run hwkit ({f['error']}): install hwkit[cluster] there, as here")
            continue
        problems = differences(mine, f.get("software", {}))
        if sandbox and f.get("sandbox") and not f["sandbox"][0]:
            problems.append(f"cannot run the sandbox ({f['sandbox'][1]})")
        if f.get("broken"):
            problems.append(f"refuses work: {f['broken']}")
        if problems:
            said.append(f"{who}: " + "; ".join(problems))
    return said


class ClusterRunner:
    """`hwkit grade --cluster`: the submissions are graded by a Dask cluster's workers, `jobs` lanes each."""

    def __init__(self, target: ClusterTarget, *, jobs: int | None, sandbox: bool, warm: bool):
        self.target, self.jobs, self.sandbox, self.warm = target, jobs, sandbox, warm and sandbox

    def check(self) -> None:
        self.target.security()      # the address and the certificates, before anything is locked

    def batch(self, course: Course, assignment_id: str, todo: list[Submission]) -> "ClusterBatch":
        return ClusterBatch(self, course, assignment_id, todo)


class ClusterBatch:
    """One batch on a cluster: the plugin that carries the course, a window of tasks in flight, the replies."""

    def __init__(self, runner: ClusterRunner, course: Course, assignment_id: str, todo: list[Submission]):
        self.runner, self.course, self.assignment_id, self.todo = runner, course, assignment_id, todo
        self.client: Client | None = None
        self.summary = f"on the Dask cluster at {runner.target.address}"
        self._quiet = quiet_dask()

    # -- start and stop --------------------------------------------------------------------------------------
    def __enter__(self) -> "ClusterBatch":
        self._quiet.__enter__()
        try:
            self.client = connect(self.runner.target)
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        client, runner = self.client, self.runner
        try:
            client.wait_for_workers(1, timeout=NO_WORKERS_TIMEOUT)
        except TimeoutError:
            raise HwkitError(f"no Dask worker joined the scheduler at {runner.target.address} in "
                             f"{NO_WORKERS_TIMEOUT} s; start workers (`dask worker {runner.target.address}`)") from None
        mine = software()
        facts = workers_facts(client, runner.sandbox)
        said = refusals(facts, mine, runner.sandbox)
        if said:
            raise HwkitError("the cluster cannot grade: " + " | ".join(said)
                             + f". Run `hwkit cluster doctor {runner.target.address}`")
        payload = CoursePayload.build(self.course, self.assignment_id)
        other_bank = [f["address"] for f in facts if f.get("bank") and f["bank"] != payload.bank_digest]
        if other_bank:      # a process imports one bank and cannot unload it: those workers start afresh
            try:
                client.restart_workers(other_bank, timeout=120)
            except Exception as exc:  # noqa: BLE001 (a worker without a nanny cannot be restarted from here)
                raise HwkitError(f"workers {', '.join(other_bank)} hold another problem bank and could not be "
                                 f"restarted ({type(exc).__name__}: {str(exc)[:200]}); restart them by hand") from None
        course_key = hashlib.sha256(self.course.secret + str(self.course.root).encode()).hexdigest()
        self.plugin_name = CoursePlugin.name_for(course_key, self.assignment_id)
        self.payload_digest = payload.digest
        settings = {"lanes": runner.jobs, "torch_threads": self.course.limits.torch_threads, "sandbox": runner.sandbox,
                    "warm": runner.warm, "software": mine, "run_secret": new_run_secret()}
        replies = client.register_plugin(CoursePlugin(payload, settings), name=self.plugin_name)
        failed = [f"{addr}: {str(r.get('exception', r))[:200]}" for addr, r in (replies or {}).items()
                  if isinstance(r, dict) and r.get("status") != "OK"]
        if failed:
            raise HwkitError("the course could not be set up on the workers: " + " | ".join(failed))
        self.lanes = self._lanes(facts)
        lanes = {self._lanes([f]) for f in facts}
        self.summary = (f"on {len(facts)} Dask worker(s) at {runner.target.address}, "
                        f"{'/'.join(map(str, sorted(lanes)))} lane(s) each; course sent: "
                        f"{payload.size / 2**20:.1f} MB per worker")

    def __exit__(self, *exc) -> None:
        client, self.client = self.client, None
        try:
            if client is not None:
                try:
                    if client.status == "running" and getattr(self, "plugin_name", None):
                        client.cancel(list(getattr(self, "pending", {})), force=True)
                        client.unregister_worker_plugin(self.plugin_name)
                except Exception:  # noqa: BLE001 (a gone scheduler: nothing left to tidy there)
                    pass
                client.close(timeout=5)
        finally:
            self._quiet.__exit__(None, None, None)

    # -- the batch -------------------------------------------------------------------------------------------
    def messages(self):
        """Yield the local batch's messages as results come back, each student once."""
        assignment = self.course.assignment(self.assignment_id)
        students = {s.student_id: s for s in self.course.roster}
        remote = []
        for sub in self.todo:
            if _needs_a_kernel(sub):
                remote.append(sub)
            else:   # nothing of the student's runs: no notebook, or one over the size limit (never sent)
                result, executed = grade_task(self.course, assignment, students[sub.student_id], sub, 0,
                                              self.runner.sandbox, self.runner.warm)
                yield ("done", result, executed)
        self.pending: dict = {}                 # future -> student id
        kept: set[str] = set()
        waiting = iter(remote)
        ac = as_completed([], loop=self.client.loop, with_results=False)
        self._fill(ac, waiting, assignment, students)
        lonely_since, last_check = None, time.monotonic()
        while self.pending:
            if not ac.has_ready():
                time.sleep(POLL)
                if time.monotonic() - last_check > 5:
                    last_check = time.monotonic()
                    lonely_since = self._check_alive(lonely_since)
                continue
            for future in ac.next_batch(block=False):
                sid = self.pending.pop(future, None)
                if sid is None or sid in kept:
                    continue
                msg = self._reply(future, sid)
                future.release()
                kept.add(sid)
                yield msg
            self._fill(ac, waiting, assignment, students)

    def _lanes(self, workers) -> int:
        """The lanes of these workers (dicts with their "nthreads"): how many submissions they grade at once, by
        the rule each worker applies (hwkit.cluster.worker.CoursePlugin.setup)."""
        return sum(plan_batch(self.runner.jobs, 1 << 30, cores=w.get("nthreads", 1)).lanes for w in workers) or 1

    def _fill(self, ac, waiting, assignment, students) -> None:
        """Send submissions until IN_FLIGHT_PER_LANE per lane are out: the scheduler holds those notebooks'
        bytes, not the whole batch's, and a worker that joins finds work."""
        while len(self.pending) < IN_FLIGHT_PER_LANE * self.lanes:
            if self.client.status != "running":     # a reconnecting client would only buffer the task
                self._stopped("the connection to it was lost")
            sub = next(waiting, None)
            if sub is None:
                return
            files = SubmissionFiles.read(sub, released_lang(self.course, assignment, students[sub.student_id]))
            future = self.client.submit(grade_on_worker, self.plugin_name, self.payload_digest, files, pure=False,
                                        key=f"hwkit-grade-{self.assignment_id}-{sub.student_id}-{uuid.uuid4().hex[:8]}")
            self.pending[future] = sub.student_id
            ac.add(future)

    def _check_alive(self, lonely_since: float | None) -> float | None:
        workers = self._scheduler_info().get("workers", {})
        self.lanes = self._lanes(workers.values())
        if workers:
            return None
        lonely_since = lonely_since or time.monotonic()
        if time.monotonic() - lonely_since > NO_WORKERS_TIMEOUT:
            self._stopped(f"no worker was left for {NO_WORKERS_TIMEOUT} s")
        return lonely_since

    def _scheduler_info(self) -> dict:
        """The scheduler's fresh account of itself; the batch stops when it cannot be reached."""
        if self.client.status != "running":
            self._stopped("the connection to it was lost")
        try:
            return self.client.scheduler_info()
        except (OSError, TimeoutError, CancelledError):
            self._stopped("the connection to it was lost")

    def _stopped(self, why: str):
        raise HwkitError(f"grading stopped: the Dask scheduler at {self.runner.target.address}: {why}. The "
                         f"submissions graded so far are saved; start the cluster again and run the same command "
                         "to grade the rest")

    def _reply(self, future, sid: str) -> tuple:
        """What one finished future says, as a message of the local batch."""
        if future.status == "cancelled":     # hwkit cancels nothing while the batch runs: the scheduler is gone
            self._stopped("the connection to it was lost")
        exception, raw = None, None
        try:
            if future.status == "error":
                exception = future.exception(timeout=5)
            else:
                raw = future.result(timeout=60)
        except Exception as exc:  # noqa: BLE001 (said below, unless the scheduler is what was lost)
            if isinstance(exc, CancelledError):
                self._stopped("the connection to it was lost")
            self._scheduler_info()
            exception = exc
        msg = reply_message(sid, self.assignment_id, exception, raw)
        if msg[0] == "refused":
            raise HwkitError(f"grading stopped: {msg[2]}. The submissions graded so far are saved; run "
                             f"`hwkit cluster doctor {self.runner.target.address}`")
        return msg


def reply_message(sid: str, assignment_id: str, exception: BaseException | None, raw) -> tuple:
    """A task's outcome as a message of the local batch: its reply (JSON bytes from the worker), or the exception
    Dask reports for it. A reply is read with json.loads and must be this student's well-formed result."""
    if exception is not None:
        if type(exception).__name__ == "KilledWorker":
            return ("lost", sid, "the cluster's workers died while grading this submission, too often to try again")
        return ("failed", sid, f"the cluster could not run the grading task ({type(exception).__name__}: "
                               f"{str(exception)[:200]})")
    try:
        if not isinstance(raw, bytes):
            raise ValueError(f"a {type(raw).__name__}, not bytes")
        message = json.loads(raw)
        if not isinstance(message, list) or not message:
            raise ValueError("not a message")
    except (ValueError, RecursionError) as exc:
        return ("failed", sid, f"the worker's reply could not be read ({str(exc)[:100]})")
    kind, rest = message[0], message[1:]
    if kind == "done" and len(rest) == 2:
        return _done(sid, assignment_id, *rest)
    if kind in ("failed", "leak", "refused") and len(rest) == 2 and rest[0] == sid:
        return (kind, sid, str(rest[1]))
    return ("failed", sid, "the worker's reply could not be read (an unknown message)")


def _done(sid: str, assignment_id: str, result, executed) -> tuple:
    """A result is the student's own and well formed before it is kept."""
    try:
        if not isinstance(result, dict) or not (executed is None or isinstance(executed, str)):
            raise ValueError("not a result")
        checked = SubmissionResult.from_json(result)
        if checked.student_id != sid or checked.assignment != assignment_id:
            raise ValueError("another submission's result")
    except (TypeError, ValueError) as exc:
        return ("failed", sid, f"the worker's reply could not be read ({str(exc)[:100]})")
    return ("done", result, executed)


def _needs_a_kernel(sub: Submission) -> bool:
    try:
        return sub.path is not None and sub.path.stat().st_size <= MAX_NOTEBOOK_BYTES
    except OSError:
        return False

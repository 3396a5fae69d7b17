"""What travels between the grader and a Dask cluster's workers, without a cluster: the course (once per worker),
each submission (its bytes, name, time and collect's record), and the replies, which the grader keeps only as
the right student's well-formed result. And hwkit never imports Dask unless it is asked to use a cluster."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

from hwkit.course import load_course
from hwkit.grading.submissions import Submission
from tests.support import make_course, solution_notebook, submit

pytest.importorskip("distributed", reason="hwkit[cluster] is not installed")

from hwkit.cluster.client import refusals, reply_message  # noqa: E402
from hwkit.cluster.identity import software  # noqa: E402
from hwkit.cluster.payload import CoursePayload, SubmissionFiles, bank_digest  # noqa: E402
from hwkit.cluster.worker import Lanes, message  # noqa: E402


def test_hwkit_without_a_cluster_never_imports_dask():
    code = ("import sys\nfrom click.testing import CliRunner\nimport hwkit.cli, hwkit.grading.main\n"
            "out = CliRunner().invoke(hwkit.cli.main, ['grade', '--help']).output\n"
            "assert '--cluster' in out and '--tls-ca-file' in out, out\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('distributed', 'dask')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = make_course(tmp_path_factory.mktemp("wire"), ["conv-cost"], ["s1", "s2"])
    return load_course(root)


def test_the_course_payload_carries_what_grading_reads_and_no_answers(course):
    payload = CoursePayload.build(course, "t")
    names = set(payload.files)
    assert {"course/hwkit.toml", "course/roster.csv", "course/assignments/t.toml",
            "course/source/t/release-cells.json"} <= names
    assert any(n.startswith("bank/templates/conv_cost/") for n in names)
    assert any(n.startswith("bank/solutions/") for n in names)
    assert not [n for n in names if "answers.json" in n or n.startswith("course/release/") or "solution.ipynb" in n
                or "__pycache__" in n or n.endswith(".pyc") or "gradebook" in n]
    assert CoursePayload.build(course, "t").digest == payload.digest           # the same course, the same key
    assert payload.bank_digest == bank_digest()
    folder = payload.unpack("course")
    try:
        assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700             # no slot uid reads the secret
        assert load_course(folder).secret == course.secret
        assert not (folder.parent / "bank").exists()                           # the bank is unpacked once per process
    finally:
        import shutil

        shutil.rmtree(folder.parent)
    (course.root / "roster.csv").write_text("student_id,name\ns1,One\ns2,Two\ns3,Three\n")
    try:
        assert CoursePayload.build(course, "t").digest != payload.digest       # another roster, other variants
    finally:
        (course.root / "roster.csv").write_text("student_id,name\ns1,Student s1\ns2,Student s2\n")


def test_a_payload_path_cannot_leave_its_folder(course):
    for bad in ("course/../../etc/passwd", "course/data/../../../x", "course/a\0b"):
        with pytest.raises(ValueError):
            CoursePayload("t", {bad: b"x"}).unpack("course")


def test_two_workers_on_one_host_reaping_at_once_do_not_fail_each_other(monkeypatch, tmp_path):
    """Seen in CI: two workers started together; one removed a dead worker's folder while the other was
    looking at it, and the second worker's start failed on the folder that had just gone."""
    from hwkit.cluster import payload as payload_module

    monkeypatch.setattr(payload_module.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = 2 ** 22 + 17                                         # above pid_max: no such process
    stale = tmp_path / f"{payload_module.PREFIX}course-{dead}-abc"
    stale.mkdir()
    vanished = tmp_path / f"{payload_module.PREFIX}course-{dead}-gone"
    real_glob = type(tmp_path).glob
    monkeypatch.setattr(type(tmp_path), "glob", lambda self, pattern: [vanished, *real_glob(self, pattern)])
    payload_module.reap_stale_payloads()
    assert not stale.exists()


def test_a_submission_arrives_as_the_grader_found_it(course, tmp_path):
    path = submit(course.root, "s1", solution_notebook(course.root, "s1"))
    (path.parent / ".collected.json").write_text(json.dumps({"submitted_at": "2026-05-01T10:00:00+08:00"}))
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    files = SubmissionFiles.read(Submission("s1", path, chosen_by="name", notebooks=2), "zh")
    laid = files.lay_out(tmp_path)
    assert laid.path.name == path.name and laid.path.read_bytes() == path.read_bytes()
    assert laid.path.stat().st_mtime_ns == 1_700_000_000_123_456_789
    assert (tmp_path / ".collected.json").read_bytes() == (path.parent / ".collected.json").read_bytes()
    assert (laid.chosen_by, laid.notebooks, laid.student_id) == ("name", 2, "s1")
    for name in ("../t.ipynb", "a/t.ipynb", "", ".."):
        files.name = name
        with pytest.raises(ValueError):
            files.lay_out(tmp_path)


def _result(sid: str, assignment: str = "t") -> dict:
    return {"assignment": assignment, "student_id": sid, "status": "ok", "reason": "", "nb_hash": "h",
            "parts": [{"problem": "p", "part": "a", "title": {"en": "A"}, "score": 1.0, "max_points": 1.0,
                       "note": "CORRECT", "feedback": {}}]}


def test_a_reply_is_kept_only_as_this_students_well_formed_result():
    from distributed import KilledWorker

    done = reply_message("s1", "t", None, message("done", _result("s1"), "{}"))
    assert done[0] == "done" and done[1]["student_id"] == "s1" and done[2] == "{}"
    lost = reply_message("s1", "t", KilledWorker("k", None, 3), None)
    assert lost == ("lost", "s1", "the cluster's workers died while grading this submission, too often to try again")
    cases = {
        "another student's": message("done", _result("s2"), None),
        "another assignment's": message("done", _result("s1", "u"), None),
        "an unknown field": message("done", {**_result("s1"), "surprise": 1}, None),
        "an executed notebook that is not text": message("done", _result("s1"), 7),
        "not JSON": b"\x80\x04pickle?",
        "not bytes (as if unpickled)": {"student_id": "s1"},
        "an unknown message": message("hello", "s1", "x"),
        "a failure said of another student": message("failed", "s2", "x"),
    }
    for what, raw in cases.items():
        kind, sid, reason = reply_message("s1", "t", None, raw)
        assert (kind, sid) == ("failed", "s1") and reason.startswith("the worker's reply could not be read"), what
    assert reply_message("s1", "t", None, message("leak", "s1", "w: boom")) == ("leak", "s1", "w: boom")
    assert reply_message("s1", "t", None, message("refused", "s1", "w: no sandbox"))[0] == "refused"
    failed = reply_message("s1", "t", RuntimeError("no such plugin"), None)
    assert failed[0] == "failed" and "RuntimeError: no such plugin" in failed[2]


class _Future:
    def __init__(self, status: str, error: BaseException):
        self.status, self.error = status, error

    def result(self, timeout=None):
        raise self.error

    def exception(self, timeout=None):
        return self.error


class _Client:
    def __init__(self, status: str, reachable: bool):
        self.status, self.reachable = status, reachable

    def scheduler_info(self, **kwargs):
        if not self.reachable:
            raise OSError("Timed out trying to connect to tcp://127.0.0.1:8786")
        return {"workers": {}}


def test_a_result_lost_with_the_scheduler_stops_the_batch_and_is_not_recorded_as_a_grader_error():
    """Seen in a loaded run: a task had finished, then the scheduler was killed before its result was fetched;
    the student was recorded as "the cluster could not run the grading task" instead of being left for the rerun."""
    from distributed.client import FutureCancelledError

    from hwkit.cluster.client import ClusterBatch, ClusterRunner, ClusterTarget
    from hwkit.errors import HwkitError

    batch = ClusterBatch(ClusterRunner(ClusterTarget("tcp://127.0.0.1:8786"), jobs=1, sandbox=True, warm=True),
                         None, "t", [])
    gone = [(_Client("running", True), _Future("finished", FutureCancelledError("k", "scheduler-connection-lost"))),
            (_Client("connecting", False), _Future("finished", OSError("connection closed"))),
            (_Client("running", False), _Future("finished", OSError("connection closed"))),
            (_Client("running", True), _Future("cancelled", FutureCancelledError("k", None)))]
    for client, future in gone:
        batch.client = client
        with pytest.raises(HwkitError, match="grading stopped: .* the connection to it was lost"):
            batch._reply(future, "s1")
    batch.client, batch.lanes, batch.pending = _Client("closed", False), 1, {}
    with pytest.raises(HwkitError, match="the connection to it was lost"):     # nothing more is sent
        batch._fill(None, iter([Submission("s1", None)]), None, {})
    batch.client = _Client("running", True)         # the scheduler is there: the task itself failed
    kind, sid, reason = batch._reply(_Future("error", RuntimeError("no such plugin")), "s1")
    assert (kind, sid) == ("failed", "s1") and "RuntimeError: no such plugin" in reason


def test_workers_that_cannot_grade_are_named_with_the_reason():
    mine = software()
    good = {"address": "tcp://a:1", "software": mine, "sandbox": [True, "ok"], "bank": "", "broken": ""}
    torch = {**good, "address": "tcp://b:1", "software": {**mine, "torch": "9.9"}}
    edited = {**good, "address": "tcp://e:1", "software": {**mine, "engine": "0" * 64}}
    jail = {**good, "address": "tcp://c:1", "sandbox": [False, "'bwrap' not found"]}
    said = refusals([good, torch, edited, jail, {"address": "tcp://d:1", "error": "ImportError"}], mine, sandbox=True)
    assert len(said) == 4
    assert said[0] == f"worker tcp://b:1: torch 9.9 (the grader has {mine['torch']})"
    assert said[1].startswith(f"worker tcp://e:1: hwkit {mine['hwkit']} from other code (engine 000000000000")
    assert said[2] == "worker tcp://c:1: cannot run the sandbox ('bwrap' not found)"
    assert said[3].startswith("worker tcp://d:1 could not run hwkit (ImportError)")
    assert refusals([jail], mine, sandbox=False) == []            # --no-sandbox: the operator said so


def test_lanes_bound_a_worker_and_never_share_a_slot():
    lanes, lock = Lanes(3), threading.Lock()
    held: set[int] = set()
    most = [0]

    def grade():
        with lanes.lane() as slot:
            with lock:
                assert slot not in held
                held.add(slot)
                most[0] = max(most[0], len(held))
            time.sleep(0.05)
            with lock:
                held.discard(slot)

    threads = [threading.Thread(target=grade) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 3 and held == set()

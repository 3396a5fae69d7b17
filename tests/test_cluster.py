"""An instructor grades on a Dask cluster (`hwkit grade --cluster`): a real scheduler and real worker processes
on 127.0.0.1, started with Dask's own commands. A worker is killed in the middle of grading, the scheduler is
killed, a worker runs other code: every submission is recorded exactly once, with the results local grading
gives, and every stop is one line that says what to do."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hwkit.gradebook import Gradebook
from hwkit.sandbox import sandbox_available
from tests.support import (HWKIT, append_cell, dask_scheduler_address, dask_scheduler_argv, hwkit, make_course,
                           release_notebook, solution_notebook, submit)

pytest.importorskip("distributed", reason="hwkit[cluster] is not installed")
pytestmark = [pytest.mark.sandbox, pytest.mark.slow,
              pytest.mark.skipif(not sandbox_available()[0], reason="needs the bubblewrap sandbox")]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROBLEMS = ["receptive-field", "conv-cost", "depthwise-separable"]      # hw1-conv
STUDENTS = [f"s{i:02d}" for i in range(9)]
DUE = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _env(pythonpath: Path = ROOT, **extra) -> dict:
    """The workers import the hwkit these tests import (this checkout), whatever is installed."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1", "COLUMNS": "200", **extra}


class Cluster:
    """`dask scheduler` and `dask worker --nthreads 1` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, tmp: Path, tls: list[str] | None = None, scheduler_env: dict | None = None):
        self.tmp, self.tls = tmp, tls or []
        self.workers: list[subprocess.Popen] = []
        info = tmp / "scheduler.json"
        self.scheduler = self._start([*dask_scheduler_argv(info), *self.tls], "scheduler", _env(**(scheduler_env or {})))
        try:
            self.address = dask_scheduler_address(info, self.scheduler, self._log("scheduler"))
        except BaseException:
            self.close()
            raise

    def _log(self, name: str) -> Path:
        return self.tmp / f"{name}-{len(self.workers)}.log"

    def _start(self, argv, name, env) -> subprocess.Popen:
        log = open(self._log(name), "w")
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def logs(self) -> str:
        """The end of every process's log: what a failed start-up shows."""
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                         for log in sorted(self.tmp.glob("*.log")))

    def add_worker(self, env: dict | None = None) -> subprocess.Popen:
        proc = self._start([str(BIN / "dask"), "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                            *self.tls], "worker", env or _env())
        self.workers.append(proc)
        return proc

    def client(self, security=None):
        from distributed import Client

        return Client(self.address, timeout=60, security=security, set_as_default=False)

    def wait_for_workers(self, n: int, security=None) -> None:
        try:
            with self.client(security) as client:
                client.wait_for_workers(n, timeout=120)
        except Exception as e:
            raise RuntimeError(f"{n} Dask worker(s) did not join: {e!r}\n{self.logs()}") from e

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            self.kill(proc)


@contextmanager
def cluster(tmp: Path, workers: int = 2, **kw):
    c = Cluster(tmp, **kw)
    try:
        for _ in range(workers):
            c.add_worker()
        c.wait_for_workers(workers)
        yield c
    finally:
        c.close()


# ---- the class: the notebooks a batch meets ------------------------------------------------------------------

def _strip_lang(nb):
    nb.metadata.get("hwkit", {}).pop("lang", None)
    return nb


@pytest.fixture(scope="module")
def course_template(tmp_path_factory) -> Path:
    """Nine students of hw1-conv (52 points, zh), with a deadline: most submitted late (their files' times), one
    on time, one whose LMS record says when; correct, starter, slow, without its language, unreadable, missing."""
    root = make_course(tmp_path_factory.mktemp("cluster"), PROBLEMS, STUDENTS, lang="zh")
    spec = root / "assignments" / "t.toml"
    spec.write_text(f'due = "{DUE.isoformat()}"\nlate_penalty_per_day = 0.1\nlate_penalty_max = 0.5\n'
                    + spec.read_text(), encoding="utf-8")
    for sid in STUDENTS[:4]:
        submit(root, sid, solution_notebook(root, sid))
    submit(root, "s04", release_notebook(root, "s04"))                                   # the starter: zero
    submit(root, "s05", append_cell(solution_notebook(root, "s05"), "import time\ntime.sleep(8)"))  # slow
    submit(root, "s06", _strip_lang(solution_notebook(root, "s06")))                     # lost its language
    folder = root / "submitted" / "t" / "s07"
    folder.mkdir(parents=True)
    (folder / "t.ipynb").write_bytes(b"{ not json")                                      # unreadable
    # s08: no folder at all (graded here, never sent)
    on_time = (DUE - timedelta(hours=3)).timestamp()
    os.utime(root / "submitted" / "t" / "s01" / "t.ipynb", (on_time, on_time))
    (root / "submitted" / "t" / "s02" / ".collected.json").write_text(json.dumps(
        {"submitted_at": (DUE + timedelta(hours=30)).isoformat()}))                      # 2 started days late
    return root


def _copy(template: Path, tmp: Path) -> Path:
    root = tmp / "course"
    shutil.copytree(template, root, symlinks=True)     # copy2: the notebooks keep their times
    return root


def _record_log(root: Path) -> None:
    """Every record of a result (INSERT OR REPLACE into submissions) leaves a row here: exactly once is countable."""
    Gradebook(root).close()
    db = sqlite3.connect(root / "gradebook.sqlite")
    db.executescript("CREATE TABLE record_log (student_id TEXT);"
                     "CREATE TRIGGER log_record AFTER INSERT ON submissions "
                     "BEGIN INSERT INTO record_log VALUES (NEW.student_id); END;")
    db.close()


def _records(root: Path) -> dict[str, int]:
    db = sqlite3.connect(root / "gradebook.sqlite")
    rows = db.execute("SELECT student_id, COUNT(*) FROM record_log GROUP BY student_id").fetchall()
    db.close()
    return dict(rows)


def _results(root: Path) -> dict[str, tuple]:
    """What grading decided per student: status, lateness, language, file, hash, and every part's score and note."""
    book = Gradebook(root)
    try:
        return {r.student_id: (r.status, r.late_days, r.penalty, r.lang, r.notebook, r.nb_hash, r.submitted_at,
                               tuple((p.problem, p.part, p.score, p.max_points, p.note) for p in r.parts))
                for r in book.results("t")}
    finally:
        book.close()


@pytest.fixture(scope="module")
def local_results(course_template, tmp_path_factory) -> dict:
    root = _copy(course_template, tmp_path_factory.mktemp("local"))
    hwkit("grade", "t", "--course", root, "--jobs", "2")
    return _results(root)


def _grades_csv(root: Path) -> list[dict]:
    with open(root / "graded" / "t" / "grades.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _wait_for(predicate, timeout: float, what: str, grade: subprocess.Popen | None = None):
    """`predicate`'s first true value; fails at once, with the command's output, if `grade` ends before it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if grade is not None and grade.poll() is not None:
            out, err = grade.communicate()
            raise AssertionError(f"hwkit grade ended (exit {grade.returncode}) before {what}:\n{out[-2000:]}\n{err[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"waited {timeout} s for {what}")


def _recorded(root: Path) -> int:
    try:
        return sum(_records(root).values())
    except sqlite3.OperationalError:
        return 0


# ---- the stories --------------------------------------------------------------------------------------------

def test_local_grading_sees_what_the_class_holds(local_results):
    """The baseline the cluster is compared with is itself right: the class is what the fixture says."""
    r = local_results
    assert set(r) == set(STUDENTS)
    full = {sid for sid, v in r.items() if all(p[2] == p[3] for p in v[7])}
    assert full == {"s00", "s01", "s02", "s03", "s05", "s06"}
    assert r["s04"][0] == "ok" and all(p[2] == 0 for p in r["s04"][7])
    assert r["s07"][0] == "invalid notebook" and r["s08"][0] == "no submission"
    assert (r["s00"][1], r["s00"][2]) == (r["s03"][1], 0.5) and r["s01"][1:3] == (0, 0.0)
    assert r["s02"][1:3] == (2, 0.2)
    assert r["s06"][3] == "zh"                   # from the release notebook: the submitted one lost it


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(course_template, local_results, tmp_path):
    root = _copy(course_template, tmp_path)
    _record_log(root)
    with cluster(tmp_path) as c:
        grade = subprocess.Popen([HWKIT, "grade", "t", "--course", str(root), "--cluster", c.address],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        with c.client() as client:
            # a worker in the middle of a submission, after the first results are kept
            def busy_worker():
                if _recorded(root) < 1:
                    return None
                processing = client.processing()
                busy = [a for a, keys in processing.items() if any(str(k).startswith("hwkit-grade-") for k in keys)]
                return busy[0] if len(processing) == 2 and busy else None

            victim = _wait_for(busy_worker, 300, "a worker grading a submission", grade)
            pid = client.run(os.getpid, workers=[victim])[victim]
        c.kill(next(p for p in c.workers if os.getpgid(pid) == p.pid))   # its nanny, zygote and jails with it
        out, err = grade.communicate(timeout=600)
    assert grade.returncode == 0, (out, err)
    assert f"Graded {len(STUDENTS)} submission(s)" in out
    assert _records(root) == {sid: 1 for sid in STUDENTS}, "each submission recorded exactly once"
    assert _results(root) == local_results, "the cluster grades as this machine does"
    assert {r["student_id"] for r in _grades_csv(root)} == set(STUDENTS)


def test_workers_that_die_too_often_and_a_scheduler_that_goes_away(course_template, local_results, tmp_path):
    """With Dask's allowed-failures at 0, a killed worker's submissions come back as KilledWorker: each is
    recorded as a grader error, and the next run grades exactly those. Then the scheduler is killed mid-batch:
    the command stops with one line, what it graded is kept, and a rerun grades only the rest."""
    root = _copy(course_template, tmp_path)
    _record_log(root)
    with cluster(tmp_path, scheduler_env={"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}) as c:
        grade = subprocess.Popen([HWKIT, "grade", "t", "--course", str(root), "--cluster", c.address],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        with c.client() as client:
            def busy_worker():
                busy = [a for a, keys in client.processing().items() if any(str(k).startswith("hwkit-grade-") for k in keys)]
                return busy[0] if busy and _recorded(root) >= 1 else None

            victim = _wait_for(busy_worker, 300, "a worker grading a submission", grade)
            pid = client.run(os.getpid, workers=[victim])[victim]
        c.kill(next(p for p in c.workers if os.getpgid(pid) == p.pid))
        out, err = grade.communicate(timeout=600)
        assert grade.returncode == 0, (out, err)
        lost = {sid for sid, v in _results(root).items() if v[0] == "grader error"}
        assert lost, "the killed worker held no submission"
        book = Gradebook(root)
        reasons = {r.reason for r in book.results("t") if r.student_id in lost}
        book.close()
        assert reasons == {"the cluster's workers died while grading this submission, too often to try again"}
        assert _records(root) == {sid: 1 for sid in STUDENTS}

        out = hwkit("grade", "t", "--course", root, "--cluster", c.address).stdout
        assert f"Graded {len(lost)} submission(s)" in out and f"{len(STUDENTS) - len(lost)} unchanged skipped" in out
        assert _results(root) == local_results

        fresh = _copy(course_template, tmp_path / "again")
        _record_log(fresh)
        grade = subprocess.Popen([HWKIT, "grade", "t", "--course", str(fresh), "--cluster", c.address],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        _wait_for(lambda: _recorded(fresh) >= 2, 300, "a result from a worker", grade)   # s08's is kept here, at once
        c.kill(c.scheduler)
        out, err = grade.communicate(timeout=300)
    assert grade.returncode == 2, (out, err)
    assert err.strip().count("\n") == 0 and re.match(r"error: grading stopped: the Dask scheduler at tcp://127\.0\.0\.1:"
                                                      r"\d+: the connection to it was lost\. The submissions graded so "
                                                      r"far are saved", err.strip()), err
    kept = _recorded(fresh)
    assert 2 <= kept < len(STUDENTS)
    assert len(_grades_csv(fresh)) == kept                  # the reports show what was kept
    out = hwkit("grade", "t", "--course", fresh).stdout     # finished here, on this machine
    assert f"Graded {len(STUDENTS) - kept} submission(s)" in out and f"{kept} unchanged skipped" in out
    assert _records(fresh) == {sid: 1 for sid in STUDENTS}
    assert _results(fresh) == local_results


def test_doctor_names_a_worker_running_other_code_and_grading_refuses_it(course_template, tmp_path):
    other = tmp_path / "other-hwkit"
    for package in ("hwkit", "hwkit_kernel"):
        shutil.copytree(ROOT / package, other / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(other / "hwkit" / "course.py", "a") as f:
        f.write("\n# an edit on one worker only\n")
    root = _copy(course_template, tmp_path)
    with cluster(tmp_path, workers=1) as c:
        c.add_worker(_env(other))
        c.wait_for_workers(2)
        doctor = hwkit("cluster", "doctor", c.address, check=False)
        assert doctor.returncode == 1, doctor.stdout + doctor.stderr
        report = doctor.stdout
        assert report.count("ok  test kernel answers 1+1 inside the jail") == 2     # both can jail
        assert report.count("ok  same software as this machine") == 1
        assert re.search(r"NO  other software than this machine: hwkit \S+ from other code", report)
        assert "The cluster is NOT ready" in report
        proc = hwkit("grade", "t", "--course", root, "--cluster", c.address, check=False)
    assert proc.returncode == 2
    assert re.match(r"error: the cluster cannot grade: worker tcp://127\.0\.0\.1:\d+: hwkit \S+ from other code",
                    proc.stderr.strip()) and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not (root / "gradebook.sqlite").exists() or not Gradebook(root).results("t")


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, and one certificate it signed that the scheduler, the worker and the grader all present."""
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=hwkit test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
            "node.pem", "-days", "2")
    return {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make test certificates")
def test_grading_over_tls(course_template, local_results, tmp_path):
    from distributed.security import Security

    pem = _certificates(tmp_path)
    tls = ["--tls-ca-file", str(pem["ca"]), "--tls-cert", str(pem["cert"]), "--tls-key", str(pem["key"])]
    root = _copy(course_template, tmp_path)
    c = Cluster(tmp_path, tls=tls)
    try:
        c.add_worker()
        c.wait_for_workers(1, security=Security(tls_ca_file=str(pem["ca"]), tls_client_cert=str(pem["cert"]),
                                                tls_client_key=str(pem["key"]), require_encryption=True))
        refused = hwkit("cluster", "doctor", c.address, check=False)
        assert refused.returncode == 2 and "needs --tls-ca-file, --tls-cert and --tls-key" in refused.stderr
        out = hwkit("grade", "t", "--course", root, "--cluster", c.address, *tls, "--students", "s00,s02").stdout
    finally:
        c.close()
    assert "Graded 2 submission(s)" in out
    got = _results(root)
    assert set(got) == {"s00", "s02"} and all(got[sid] == local_results[sid] for sid in got)

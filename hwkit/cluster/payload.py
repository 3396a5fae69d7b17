"""What a cluster worker needs of the course and the bank to grade one assignment, packed by the grader and
unpacked on the worker into a private folder: no shared filesystem.

Sent once per worker (hwkit.cluster.worker's plugin), keyed by a digest of its content:
- the course files grading reads: hwkit.toml (the secret and the sandbox limits), roster.csv (every student's
  variant, for the variant check and extensions), assignments/ASSIGNMENT.toml, and source/ASSIGNMENT/'s
  release-cells.json (the variant check) and data/ (the files each kernel gets);
- the bank: templates/ and solutions/ as the grader loads them (hwkit.bank), caches left out.
Not sent: answers.json, the solutions and release notebooks, other assignments, submissions, the gradebook.

Sent with each submission (`SubmissionFiles`): the notebook's bytes, name and modification time, collect's
record beside it (hwkit.late: when it came in), and the language its release notebook was written in, which
grading reads only when the notebook's own metadata lost it. The worker lays these out as the grader would
find them, so one submission is graded by the same code, reading the same bytes, as on one machine
(`tests/test_cluster.py` compares every field of the results)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hwkit.bank import bank_root
from hwkit.course import CONFIG_NAME, ROSTER_NAME, Course
from hwkit.generate import CELLS_INDEX
from hwkit.grading.submissions import Submission
from hwkit.late import RECORD

COURSE, BANK = "course", "bank"
PREFIX = "hwkit-payload-"            # <tmp>/hwkit-payload-<part>-<pid>-<random>: what a worker process unpacked
MAX_RECORD_BYTES = 64 * 1024       # collect's record is a few lines; anything larger is not one


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _tree(folder: Path, under: str) -> dict[str, bytes]:
    """Every regular file below folder (no links followed, no caches), by its path under `under`."""
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(p == "__pycache__" or p.startswith(".") for p in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_file() and not path.is_symlink():
            files[f"{under}/{rel.as_posix()}"] = path.read_bytes()
    return files


def bank_files() -> dict[str, bytes]:
    root = bank_root()
    return {**_tree(root / "templates", f"{BANK}/templates"), **_tree(root / "solutions", f"{BANK}/solutions")}


def bank_digest() -> str:
    """The bank this grader loads, as a digest of its files (what `hwkit cluster doctor` compares)."""
    return _digest({k[len(BANK) + 1:]: v for k, v in bank_files().items()})


@dataclass
class CoursePayload:
    assignment_id: str
    files: dict[str, bytes]               # "course/..." and "bank/..." -> bytes
    digest: str = ""
    bank_digest: str = ""

    @classmethod
    def build(cls, course: Course, assignment_id: str) -> "CoursePayload":
        root, source = course.root, course.root / "source" / assignment_id
        files = {f"{COURSE}/{name}": (root / name).read_bytes() for name in (CONFIG_NAME, ROSTER_NAME)}
        files[f"{COURSE}/assignments/{assignment_id}.toml"] = (course.assignments_dir / f"{assignment_id}.toml").read_bytes()
        if (source / CELLS_INDEX).is_file():
            files[f"{COURSE}/source/{assignment_id}/{CELLS_INDEX}"] = (source / CELLS_INDEX).read_bytes()
        if (source / "data").is_dir():
            files.update(_tree(source / "data", f"{COURSE}/source/{assignment_id}/data"))
        bank = bank_files()
        files.update(bank)
        return cls(assignment_id, files, _digest(files), _digest({k[len(BANK) + 1:]: v for k, v in bank.items()}))

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.files.values())

    def unpack(self, part: str) -> Path:
        """Write the files of one part (COURSE or BANK) into a new private folder (mode 0700: no slot uid can
        read it); returns the part's folder in it."""
        top = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{part}-{os.getpid()}-"))
        try:
            for rel, data in self.files.items():
                if not rel.startswith(part + "/"):
                    continue
                path = top / _safe_relative(rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        except BaseException:
            shutil.rmtree(top, ignore_errors=True)
            raise
        return top / part


def reap_stale_payloads() -> None:
    """Remove what worker processes that are gone (killed: no clean-up ran) unpacked here."""
    for entry in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        parts = entry.name[len(PREFIX):].split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        try:
            if entry.is_symlink() or entry.stat().st_uid != os.geteuid():
                continue
        except OSError:          # gone since the listing: another worker on this host reaped it first
            continue
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def _safe_relative(rel: str) -> Path:
    """A relative path below the folder (no absolute paths, no '..'), whoever built the payload."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or not pure.parts or any(p in ("", ".", "..") or "\0" in p for p in pure.parts):
        raise ValueError(f"not a path inside the payload: {rel!r}")
    return Path(*pure.parts)


# ---- one submission ------------------------------------------------------------------------------------------

@dataclass
class SubmissionFiles:
    """One submission as it travels to a worker: plain data, nothing the worker has to trust beyond bytes."""
    student_id: str
    name: str = ""               # the notebook's file name in the student's folder
    notebook: bytes = b""
    mtime_ns: int = 0
    record: bytes | None = None  # collect's record beside the notebook (hwkit.late.RECORD)
    chosen_by: str = ""
    notebooks: int = 1
    released_lang: str = ""      # the language of the student's release notebook ("" unknown)

    @classmethod
    def read(cls, sub: Submission, released_lang: str) -> "SubmissionFiles":
        path = sub.path
        assert path is not None
        st = path.stat()
        record = None
        try:
            rec = path.parent / RECORD
            if rec.is_file() and not rec.is_symlink() and rec.stat().st_size <= MAX_RECORD_BYTES:
                record = rec.read_bytes()
        except OSError:
            record = None
        return cls(sub.student_id, path.name, path.read_bytes(), st.st_mtime_ns, record, sub.chosen_by, sub.notebooks,
                   released_lang)

    def lay_out(self, folder: Path) -> Submission:
        """Write the notebook (same bytes, name and modification time) and collect's record into `folder`."""
        name = self.name
        if not name or "/" in name or "\0" in name or name in (".", "..") or len(name.encode()) > 255:
            raise ValueError(f"not a notebook file name: {name!r}")
        path = folder / name
        path.write_bytes(self.notebook)
        os.utime(path, ns=(self.mtime_ns, self.mtime_ns))
        if self.record is not None:
            (folder / RECORD).write_bytes(self.record)
        return Submission(self.student_id, path, chosen_by=self.chosen_by, notebooks=self.notebooks)


def write_release_lang(course_root: Path, assignment_id: str, student_id: str, lang: str) -> None:
    """What grading reads of a student's release notebook (its language, when the submitted notebook lost it),
    at the path it reads it from."""
    if not lang:
        return
    folder = course_root / "release" / assignment_id / _safe_relative(student_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{assignment_id}.ipynb"
    if not path.exists():
        tmp = folder / f".{assignment_id}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps({"metadata": {"hwkit": {"lang": lang}}}), encoding="utf-8")
        os.replace(tmp, path)


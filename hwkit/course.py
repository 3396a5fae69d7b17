"""The course directory: hwkit.toml, roster.csv and assignments/*.toml, read and validated.

Every reader raises HwkitError with one line that names the file and the fix; the CLI prints it
and exits non-zero, so bad input never becomes a traceback."""
from __future__ import annotations

import csv
import math
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from hwkit.errors import HwkitError, did_you_mean

LANGS = ("zh", "en")
CONFIG_NAME = "hwkit.toml"
ROSTER_NAME = "roster.csv"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one student's kernel; every field can be set in [sandbox] of hwkit.toml."""
    memory_mb: int = 3072          # address space / memory cgroup; torch needs > 1.5 GiB of address space
    cpu_seconds: int = 120         # RLIMIT_CPU for the whole kernel
    processes: int = 64            # pids (threads included) for the kernel's uid
    open_files: int = 256
    file_size_mb: int = 64         # largest single file the kernel may write
    disk_mb: int = 256             # total size of the writable working directory (a tmpfs)
    tmp_mb: int = 64               # private /tmp and /dev/shm
    cell_timeout: int = 60         # seconds of wall time per cell
    notebook_timeout: int = 300    # seconds of wall time for the whole notebook, probes included
    output_bytes: int = 1_000_000  # captured output kept per cell
    notebook_output_bytes: int = 8_000_000  # captured output kept for the whole notebook
    torch_threads: int = 0         # intra-op threads per kernel; 0: the cores shared out among the kernels that
                                   # run at once (one each when grading a batch: the better split for throughput)

    @classmethod
    def from_mapping(cls, data: dict, source: str) -> "SandboxLimits":
        known = {f.name: f for f in fields(cls)}
        values = {}
        for key, value in data.items():
            if key not in known:
                raise HwkitError(f"{source}: unknown sandbox setting '{key}'; known: {', '.join(known)}")
            least = 0 if key == "torch_threads" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                kind = "a whole number, 0 or more" if least == 0 else "a positive integer"
                raise HwkitError(f"{source}: sandbox setting '{key}' must be {kind}, got {value!r}")
            values[key] = value
        return cls(**values)

    def kernel_threads(self) -> int:
        """torch_threads, with 0 (auto) meaning every core: a kernel that runs alone."""
        return self.torch_threads or os.cpu_count() or 1


@dataclass(frozen=True)
class Student:
    student_id: str
    name: str = ""
    # Further roster columns, kept as written: the LMS's ids (canvas_id, sis_id, moodle_participant, email), ...
    columns: tuple[tuple[str, str], ...] = ()

    def column(self, name: str) -> str:
        return dict(self.columns).get(name, "")


@dataclass(frozen=True)
class AssignmentProblem:
    problem_id: str
    points: float | None = None   # None: the problem's own default points


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    title: str
    problems: tuple[AssignmentProblem, ...]
    selfcheck: str = "exact"      # "exact": confirm answers offline; "format": only presence and form
    quiz_draw: int = 0            # >0: each student gets this many of the listed problems, drawn per student
    canvas_assignment_id: str = ""   # the assignment's id in Canvas (its gradebook column is "Title (id)")
    title_zh: str = ""               # the title a Chinese notebook shows (default: title)
    due: datetime | None = None      # with its UTC offset; None: no deadline
    late_penalty_per_day: float = 0.0   # fraction of the score per started day late
    late_penalty_max: float = 1.0       # the most a late submission loses


@dataclass(frozen=True)
class Deadline:
    """An assignment's deadline settings alone (hwkit.late reads them; no problem bank needed)."""
    due: datetime | None = None
    late_penalty_per_day: float = 0.0
    late_penalty_max: float = 1.0


@dataclass
class Course:
    root: Path
    name: str
    secret: bytes
    lang: str
    limits: SandboxLimits
    roster: list[Student] = field(default_factory=list)

    @property
    def assignments_dir(self) -> Path:
        return self.root / "assignments"

    def assignment(self, assignment_id: str) -> Assignment:
        return load_assignment(self._assignment_path(assignment_id))

    def deadline(self, assignment_id: str) -> Deadline:
        """The assignment's deadline settings, read without loading the problem bank (which imports torch)."""
        path = self._assignment_path(assignment_id)
        return _deadline(_read_toml(path), path)

    def _assignment_path(self, assignment_id: str) -> Path:
        path = self.assignments_dir / f"{assignment_id}.toml"
        if not path.is_file():
            have = sorted(p.stem for p in self.assignments_dir.glob("*.toml")) if self.assignments_dir.is_dir() else []
            raise HwkitError(f"{path}: no such assignment{did_you_mean(assignment_id, have)}; "
                             f"available: {', '.join(have) or 'none'}")
        return path

    def students(self, only: list[str] | None = None) -> list[Student]:
        if not only:
            return list(self.roster)
        known = {s.student_id: s for s in self.roster}
        missing = [s for s in only if s not in known]
        if missing:
            raise HwkitError(f"{self.root / ROSTER_NAME}: not on the roster: {', '.join(missing)}; add them or fix --students")
        return [known[s] for s in only]


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HwkitError(f"{path}: not found; run `hwkit init DIR` to create a course, or pass --course DIR") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HwkitError(f"{path}: not valid TOML ({exc}); fix the file or recreate it with `hwkit init`") from None


def load_course(root: Path) -> Course:
    root = Path(root)
    path = root / CONFIG_NAME
    data = _read_toml(path)
    course = data.get("course")
    if not isinstance(course, dict):
        raise HwkitError(f"{path}: missing [course] table with name, secret and lang; recreate with `hwkit init`")
    secret = course.get("secret")
    if not isinstance(secret, str) or len(secret) < 16:
        raise HwkitError(f"{path}: [course] secret must be a string of at least 16 characters; `hwkit init` makes one")
    lang = course.get("lang", "zh")
    if lang not in LANGS:
        raise HwkitError(f"{path}: [course] lang must be one of {', '.join(LANGS)}, got {lang!r}")
    sandbox = data.get("sandbox", {})
    if not isinstance(sandbox, dict):
        raise HwkitError(f"{path}: [sandbox] must be a table of limits")
    limits = SandboxLimits.from_mapping(sandbox, str(path))
    return Course(root=root, name=str(course.get("name", root.name)), secret=secret.encode(),
                  lang=lang, limits=limits, roster=load_roster(root / ROSTER_NAME))


def load_roster(path: Path) -> list[Student]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise HwkitError(f"{path}: not found; create it with a header line 'student_id,name'") from None
    except UnicodeDecodeError:
        raise HwkitError(f"{path}: not UTF-8 text; save the roster as UTF-8 CSV") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not rows[0] or rows[0][0].strip() != "student_id":
        raise HwkitError(f"{path}: the first line must be a header starting with 'student_id' (e.g. 'student_id,name')")
    header = [h.strip() for h in rows[0]]
    name_col = header.index("name") if "name" in header else None
    students, seen = [], set()
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        sid = row[0].strip() if row else ""
        if not sid:
            raise HwkitError(f"{path}:{line_no}: empty student_id; give every row an id")
        if not _ID_RE.match(sid):
            raise HwkitError(f"{path}:{line_no}: student_id {sid!r} may use only letters, digits, '_', '.', '-' (max 64)")
        if sid in seen:
            raise HwkitError(f"{path}:{line_no}: duplicate student_id {sid!r}; each student must appear once")
        seen.add(sid)
        name = row[name_col].strip() if name_col is not None and name_col < len(row) else ""
        columns = tuple((h, row[i].strip()) for i, h in enumerate(header)
                        if i < len(row) and h and h not in ("student_id", "name"))
        _check_extension(path, line_no, dict(columns).get("extension_hours", ""))
        students.append(Student(sid, name, columns))
    return students


MAX_EXTENSION_HOURS = 24 * 366


def _check_extension(path: Path, line_no: int, text: str) -> None:
    """extension_hours: empty (none) or a number of hours, 0 to a year; anything else would silently count as no
    extension (late days charged) or break the student's grading."""
    if not text:
        return
    try:
        hours = float(text)
    except ValueError:
        hours = math.nan
    if not 0 <= hours <= MAX_EXTENSION_HOURS:
        raise HwkitError(f"{path}:{line_no}: extension_hours {text!r} is not a number of hours from 0 to "
                         f"{MAX_EXTENSION_HOURS} (e.g. 48); leave it empty for no extension")


def load_assignment(path: Path) -> Assignment:
    from hwkit.bank import known_problem_ids  # late import: the bank loads templates

    data = _read_toml(path)
    entries = data.get("problems")
    if not isinstance(entries, list) or not entries:
        raise HwkitError(f"{path}: needs at least one [[problems]] entry with id = \"...\"")
    known = known_problem_ids()
    problems = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise HwkitError(f"{path}: [[problems]] entry {i} needs id = \"...\"")
        pid = entry["id"]
        if pid not in known:
            raise HwkitError(f"{path}: unknown problem id {pid!r}{did_you_mean(pid, known)}; "
                             "`hwkit problems` lists the bank")
        points = entry.get("points")
        if points is not None and (not isinstance(points, (int, float)) or points <= 0):
            raise HwkitError(f"{path}: points for {pid!r} must be a positive number")
        problems.append(AssignmentProblem(pid, None if points is None else float(points)))
    if len({p.problem_id for p in problems}) != len(problems):
        raise HwkitError(f"{path}: a problem is listed twice; list each problem once")
    selfcheck = data.get("selfcheck", "exact")
    if selfcheck not in ("exact", "format"):
        raise HwkitError(f"{path}: selfcheck must be \"exact\" or \"format\", got {selfcheck!r}")
    draw = data.get("draw", 0)
    if not isinstance(draw, int) or draw < 0 or draw > len(problems):
        raise HwkitError(f"{path}: draw must be an integer between 0 and the number of problems")
    canvas_id = str(data.get("canvas_assignment_id", "")).strip()
    if canvas_id and not canvas_id.isdigit():
        raise HwkitError(f"{path}: canvas_assignment_id must be the number Canvas shows in the assignment's URL")
    deadline = _deadline(data, path)
    return Assignment(assignment_id=path.stem, title=str(data.get("title", path.stem)),
                      problems=tuple(problems), selfcheck=selfcheck, quiz_draw=draw, canvas_assignment_id=canvas_id,
                      due=deadline.due, title_zh=str(data.get("title_zh", "")),
                      late_penalty_per_day=deadline.late_penalty_per_day, late_penalty_max=deadline.late_penalty_max)


def _deadline(data: dict, path: Path) -> Deadline:
    due = data.get("due")
    if isinstance(due, str):
        try:
            due = datetime.fromisoformat(due)
        except ValueError:
            raise HwkitError(f"{path}: due {due!r} is not an ISO 8601 time (e.g. 2026-12-10T23:59:00+08:00)") from None
    if due is not None and (not isinstance(due, datetime) or due.tzinfo is None):
        raise HwkitError(f"{path}: due needs a date, a time and a UTC offset, e.g. 2026-12-10T23:59:00+08:00")
    rates = {}
    for key, default in (("late_penalty_per_day", 0.0), ("late_penalty_max", 1.0)):
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise HwkitError(f"{path}: {key} must be a fraction between 0 and 1 (0.1 = 10%)")
        rates[key] = float(value)
    return Deadline(due, **rates)


def check_lang(lang: str | None, course: Course) -> str:
    lang = lang or course.lang
    if lang not in LANGS:
        raise HwkitError(f"--lang {lang!r}: unknown language; use one of {', '.join(LANGS)}")
    return lang


def new_secret() -> str:
    return secrets.token_hex(32)

"""`hwkit collect ASSIGNMENT DOWNLOAD`: an LMS's submission download (a zip or its unpacked folder) filed into
submitted/ASSIGNMENT/<student_id>/ASSIGNMENT.ipynb.

- Canvas ("Download Submissions"): `<sortablename>[_LATE]_<canvas user id>_<submission id>_<original name>`,
  a resubmission adding `-N` before the extension; matched by the roster's `canvas_id` column.
- Moodle ("Download all submissions"): `<Full Name>_<participant id>_assignsubmission_file_/<file>` (or flat
  files with that prefix); matched by the roster's `moodle_participant` column, else by a unique full name.

A zip is read defensively: any entry with an absolute path or `..`, or a symlink, refuses the whole zip; so do
more than MAX_ENTRIES entries or more than MAX_TOTAL_BYTES declared, and no entry is read past its bound
whatever it declares. Names from Windows zips (CP437 bytes that are really UTF-8 or GBK) are decoded, as are
names unpacked on Linux as raw GBK bytes. An entry that cannot be read (a broken or encrypted entry, one over the
notebook limit) is listed as unmatched with its reason and costs nothing else.

Collecting is idempotent: the same file again changes nothing, an older file never replaces a newer one, and
whatever is replaced or set aside is kept in submitted/ASSIGNMENT/.replaced/."""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from hwkit.course import Course, HwkitError, Student, load_course
from hwkit.fsutil import atomic_write_bytes
from hwkit.late import RECORD
from hwkit.notebooks import MAX_NOTEBOOK_BYTES

MAX_ENTRIES = 20_000
MAX_TOTAL_BYTES = 1 << 30             # declared uncompressed size of a whole download

_CANVAS = re.compile(r"^(?P<name>[^_/]+?)(?P<late>_LATE)?_(?P<uid>\d+)_(?P<sub>\d+)_(?P<orig>[^/]+)$")
_MOODLE = re.compile(r"^(?P<name>[^/]+?)_(?P<pid>\d+)_assign(?:submission|feedback)_\w+?_(?:/(?P<file>.+)|(?P<flat>[^/]+))$")
_RESUBMISSION = re.compile(r"-(\d+)\.ipynb$")


@dataclass
class Incoming:
    """One notebook of the download, and what its name says."""
    name: str                  # its path in the download
    read: object               # () -> bytes, bounded
    modified: datetime | None
    lms: str = ""              # canvas | moodle
    key: str = ""              # the LMS's id for the student (Canvas user id, Moodle participant id)
    full_name: str = ""
    late: bool = False
    order: tuple = ()          # later submissions sort last


@dataclass
class Filed:
    student_id: str
    source: str
    outcome: str               # new | replaced | unchanged | older (kept aside)
    late: bool


@dataclass
class CollectReport:
    filed: list[Filed] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)      # (name in the download, why)
    duplicates: list[tuple[str, str]] = field(default_factory=list)     # (student, name set aside)

    @property
    def late(self) -> list[str]:
        return [f.student_id for f in self.filed if f.late]


# ---- reading the download -----------------------------------------------------------------------------

def _readable(raw: bytes) -> str:
    """A file name's bytes as text: UTF-8, else GBK (Windows tools in China), else UTF-8 with the bytes it
    cannot read shown as \\xNN (never a lone surrogate, which no record or page could be written with)."""
    for encoding in ("utf-8", "gbk"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", errors="backslashreplace")


def _decoded_name(info: zipfile.ZipInfo) -> str:
    """zipfile decodes names without the UTF-8 flag as CP437; Windows tools write UTF-8 or GBK there."""
    if info.flag_bits & 0x800:
        return info.filename
    return _readable(info.filename.encode("cp437", errors="replace"))


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or bool(re.match(r"^[A-Za-z]:", name))


def _bounded_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int):
    def read() -> bytes:
        with zf.open(info) as f:
            data = f.read(limit + 1)       # never trust the declared size
        if len(data) > limit:
            raise HwkitError(f"{info.filename}: larger than {limit // 2**20} MB; not a notebook this course can grade")
        return data
    return read


def zip_entries(path: Path) -> list[Incoming]:
    try:
        zf = zipfile.ZipFile(path)
    except Exception as exc:  # zipfile raises what its reading meets: BadZipFile, OSError, a name not UTF-8 as flagged
        raise HwkitError(f"{path}: not a readable zip file ({type(exc).__name__}: {exc})"[:400]) from None
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise HwkitError(f"{path}: {len(infos)} entries, more than {MAX_ENTRIES}; refused (not an LMS download?)")
    declared = sum(i.file_size for i in infos)
    if declared > MAX_TOTAL_BYTES:
        raise HwkitError(f"{path}: declares {declared / 2**30:.1f} GiB uncompressed, over the "
                         f"{MAX_TOTAL_BYTES // 2**30} GiB limit; refused (a zip bomb?), nothing extracted")
    bad = [_decoded_name(i) for i in infos if _unsafe(_decoded_name(i))]
    links = [_decoded_name(i) for i in infos if stat.S_ISLNK(i.external_attr >> 16)]
    if bad or links:
        shown = ", ".join(repr(n[:80]) for n in (bad + links)[:3])
        raise HwkitError(f"{path}: refused: entries outside the download or links ({shown}); nothing extracted")
    entries = []
    for info in infos:
        name = _decoded_name(info)
        if info.is_dir() or not name.lower().endswith(".ipynb"):
            continue
        try:
            modified = datetime(*info.date_time)
        except ValueError:
            modified = None
        entries.append(Incoming(name, _bounded_reader(zf, info, MAX_NOTEBOOK_BYTES), modified))
    return entries


def folder_entries(folder: Path) -> list[Incoming]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):          # os.walk does not follow directory links
        for filename in filenames:
            path = Path(dirpath) / filename
            if path.is_symlink() or not filename.lower().endswith(".ipynb"):
                continue
            name = _readable(os.fsencode(path.relative_to(folder).as_posix()))
            modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)

            def read(path=path) -> bytes:
                if path.stat().st_size > MAX_NOTEBOOK_BYTES:
                    raise HwkitError(f"{path}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
                return path.read_bytes()
            entries.append(Incoming(name, read, modified))
        if len(entries) > MAX_ENTRIES:
            raise HwkitError(f"{folder}: more than {MAX_ENTRIES} notebooks; refused")
    return entries


def parse_name(entry: Incoming) -> Incoming:
    """What an LMS's naming says of a file: Canvas or Moodle, the student's id there, late, resubmission.
    Only what the LMS wrote is read as an id: a Moodle submission's folder, else a Canvas name's prefix, else a
    flat Moodle name; the file name the student chose (inside the folder, after the prefix) never is."""
    base = entry.name.split("/")[-1]
    moodle = _MOODLE.match(entry.name) if "/" in entry.name else None
    canvas = None if moodle else _CANVAS.match(base)
    moodle = moodle or (None if canvas else _MOODLE.match(base))
    if moodle:
        entry.lms, entry.key, entry.full_name = "moodle", moodle["pid"], moodle["name"]
    elif canvas:
        entry.lms, entry.key, entry.full_name, entry.late = "canvas", canvas["uid"], canvas["name"], bool(canvas["late"])
        again = _RESUBMISSION.search(canvas["orig"])
        entry.order = (int(again[1]) if again else 0, int(canvas["sub"]))
    when = entry.modified.replace(tzinfo=None) if entry.modified else datetime.min    # comparable, aware or not
    entry.order = (entry.order[:1], when, entry.order[1:])
    return entry


# ---- matching and filing ------------------------------------------------------------------------------

def match(entry: Incoming, roster: list[Student]) -> tuple[Student | None, str]:
    if entry.lms == "canvas":
        found = [s for s in roster if s.column("canvas_id") == entry.key]
        return (found[0], "") if len(found) == 1 else (None, f"no roster row has canvas_id {entry.key}")
    if entry.lms == "moodle":
        found = [s for s in roster if s.column("moodle_participant") == entry.key]
        if len(found) == 1:
            return found[0], ""
        named = [s for s in roster if s.name and s.name.casefold() == entry.full_name.casefold()]
        if len(named) == 1:
            return named[0], ""
        return None, (f"no roster row has moodle_participant {entry.key}"
                      + (f" and {len(named)} have the name {entry.full_name!r}" if named else ""))
    return None, "the file name is neither Canvas's nor Moodle's download naming"


def _stamp(entry: Incoming, zone) -> str:
    """When the LMS says the file came, with its offset: a zip's times carry none and are the course's local
    time (the deadline's zone, as hwkit.late reads them), a folder's are UTC."""
    if entry.modified is None:
        return ""
    at = entry.modified if entry.modified.tzinfo else entry.modified.replace(tzinfo=zone)
    return at.isoformat(timespec="seconds")


def _moment(text: str, zone) -> datetime | None:
    """A recorded time as a comparable instant (records written before times carried their offset included)."""
    try:
        at = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return at if at.tzinfo else at.replace(tzinfo=zone)


def _set_aside(folder: Path, student_id: str, name: str, data: bytes) -> None:
    """Keep a replaced or older notebook, once (named by its content, so collecting again adds nothing)."""
    aside = folder / ".replaced" / student_id
    aside.mkdir(parents=True, exist_ok=True)
    target = aside / f"{hashlib.sha256(data).hexdigest()[:12]}-{_short(Path(name.replace(chr(92), '/')).name)}"
    if not target.exists():
        target.write_bytes(data)


def _short(filename: str, limit: int = 160) -> str:
    """A file name cut to at most `limit` bytes of UTF-8, its extension kept (a file system allows 255)."""
    path = PurePosixPath(filename)
    suffix = path.suffix if len(path.suffix.encode()) < 16 else ""
    stem = filename[:len(filename) - len(suffix)] if suffix else filename
    while len((stem + suffix).encode("utf-8")) > limit:
        stem = stem[:-1]
    return stem + suffix


def _read(entry: Incoming) -> bytes:
    """An entry's bytes; whatever a broken download raises on the way (a bad CRC, an encrypted entry, a
    compression zipfile cannot read, a file gone meanwhile) becomes one line naming the entry."""
    try:
        return entry.read()
    except HwkitError:
        raise
    except Exception as exc:  # the reading is the zip library's or the file system's: any of their errors
        raise HwkitError(f"unreadable ({type(exc).__name__}: {exc})"[:300]) from None


def _write_record(path: Path, record: dict) -> None:
    atomic_write_bytes(path, (json.dumps(record, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def _record_readable(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


def file_one(folder: Path, assignment_id: str, student: Student, entry: Incoming, data: bytes,
             zone=timezone.utc) -> str:
    """Put one notebook in place, keeping whatever it replaces; an older file does not replace a newer one.
    `zone`: the course's local time zone, which a zip's times are in."""
    target_dir = folder / student.student_id
    target = target_dir / f"{assignment_id}.ipynb"
    record_path = target_dir / RECORD
    record = {"source": entry.name, "submitted_at": _stamp(entry, zone), "late": entry.late, "lms": entry.lms}
    if target.is_file():
        current = target.read_bytes()
        if current == data:
            if not _record_readable(record_path):     # lost when a crash came between the notebook and its record
                _write_record(record_path, record)
            return "unchanged"
        try:
            before = _moment(json.loads(record_path.read_text(encoding="utf-8")).get("submitted_at"), zone)
        except (OSError, ValueError, AttributeError):
            before = None
        now = _moment(record["submitted_at"], zone)
        if before and now and now < before:
            _set_aside(folder, student.student_id, entry.name, data)
            return "older (kept aside)"
        _set_aside(folder, student.student_id, target.name, current)
        outcome = "replaced"
    else:
        outcome = "new"
    target_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    _write_record(record_path, record)
    return outcome


def collect(course: Course, assignment_id: str, download: Path) -> CollectReport:
    assignment = course.assignment(assignment_id)
    zone = assignment.due.tzinfo if assignment.due is not None else timezone.utc
    if download.is_dir():
        entries = folder_entries(download)
    elif download.is_file():
        entries = zip_entries(download)
    else:
        raise HwkitError(f"{download}: no such zip file or folder")
    folder = course.root / "submitted" / assignment_id
    report = CollectReport()
    chosen: dict[str, tuple[Student, Incoming]] = {}
    for entry in map(parse_name, entries):
        student, why = match(entry, course.roster)
        if student is None:
            report.unmatched.append((entry.name, why))
            continue
        previous = chosen.get(student.student_id)
        if previous is not None:
            older, newer = sorted([previous[1], entry], key=lambda e: e.order)
            chosen[student.student_id] = (student, newer)
            try:
                _set_aside(folder, student.student_id, older.name, _read(older))
            except HwkitError as exc:
                report.unmatched.append((older.name, f"an older copy, not kept: {exc}"))
            else:
                report.duplicates.append((student.student_id, older.name))
        else:
            chosen[student.student_id] = (student, entry)
    for sid, (student, entry) in sorted(chosen.items()):
        try:
            data = _read(entry)
        except HwkitError as exc:
            report.unmatched.append((entry.name, str(exc)))
            continue
        report.filed.append(Filed(sid, entry.name, file_one(folder, assignment_id, student, entry, data, zone),
                                  entry.late))
    return report


def main(*, course_dir: Path, assignment_id: str, download: Path, console) -> int:
    from rich.table import Table

    course = load_course(course_dir)
    report = collect(course, assignment_id, download)
    table = Table(title=f"{download.name} → submitted/{assignment_id}/")
    for column in ("student", "outcome", "from", "late"):
        table.add_column(column)
    for f in report.filed:
        table.add_row(f.student_id, f.outcome, f.source, "late" if f.late else "")
    for name, why in report.unmatched:
        table.add_row("—", "unmatched", name, why)
    for sid, name in report.duplicates:
        table.add_row(sid, "duplicate, kept aside", name, "")
    console.print(table)
    console.print(f"{len(report.filed)} filed, {len(report.unmatched)} unmatched, {len(report.duplicates)} "
                  f"duplicate(s) kept aside in submitted/{assignment_id}/.replaced/, {len(report.late)} late.",
                  highlight=False)
    return 0

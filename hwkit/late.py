"""Deadlines: when a notebook was submitted, how many days late that is, and what it costs.

The submission time comes from `hwkit collect`'s record beside the notebook (the LMS download's time; Canvas's
LATE marker), else the file's modification time. Days late count every started day after the due time plus
the student's extension (roster column `extension_hours`, which the LMS does not know: its LATE marker counts
one day only when no time is known). The penalty (`late_penalty_per_day` per day, at most `late_penalty_max`,
fractions of the score) is recorded when the submission is graded, recomputed by every later `hwkit grade` when the
deadline, the penalty or an extension has changed since, and applied to the final score, after any person's
decision."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hwkit.course import Assignment, Deadline, Student

RECORD = ".collected.json"           # written by hwkit.collect beside the notebook


@dataclass(frozen=True)
class Submitted:
    at: datetime | None               # aware; None when unknown
    marked_late: bool = False         # the LMS said so (Canvas's _LATE_ in the file name)
    by_file: bool = False             # `at` is the file's modification time: no record said when


def submission_time(notebook: Path | None, due: datetime | None) -> Submitted:
    """What `collect` recorded, else the file's modification time. A time without an offset (zip entries carry
    none) is read in the deadline's time zone, the course's local time."""
    if notebook is None:
        return Submitted(None)
    zone = due.tzinfo if due is not None else timezone.utc
    try:
        record = json.loads((notebook.parent / RECORD).read_text(encoding="utf-8"))
        record = record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        record = {}
    marked = record.get("late") is True
    text = record.get("submitted_at")
    if isinstance(text, str) and text:
        try:
            at = datetime.fromisoformat(text)
            return Submitted(at if at.tzinfo else at.replace(tzinfo=zone), marked)
        except ValueError:
            pass
    try:
        return Submitted(datetime.fromtimestamp(notebook.stat().st_mtime, timezone.utc), marked, by_file=True)
    except OSError:
        return Submitted(None, marked)


@dataclass(frozen=True)
class Lateness:
    submitted_at: str          # ISO 8601 to the second; "" when unknown
    days: int
    penalty: float


def lateness(deadline: Assignment | Deadline, student: Student, notebook: Path | None) -> Lateness:
    """When the notebook came in and what that costs. The time counts to the second, as it is recorded, so a
    notebook stamped with the due second is on time however it arrived."""
    if notebook is None:
        return Lateness("", 0, 0.0)
    submitted = submission_time(notebook, deadline.due)
    if submitted.at is not None:
        submitted = replace(submitted, at=submitted.at.replace(microsecond=0))
    days = days_late(deadline, student, submitted)
    return Lateness(submitted.at.isoformat(timespec="seconds") if submitted.at else "", days, penalty(deadline, days))


def days_late(assignment: Assignment | Deadline, student: Student, submitted: Submitted) -> int:
    if assignment.due is None:
        return 0
    try:
        extension = max(0.0, float(student.column("extension_hours") or 0))
    except ValueError:
        extension = 0.0
    if submitted.at is None:
        return 1 if submitted.marked_late else 0
    over = submitted.at - (assignment.due + timedelta(hours=extension))
    return max(0, math.ceil(over / timedelta(days=1)))


def penalty(assignment: Assignment | Deadline, late_days: int) -> float:
    """The fraction of the score a submission this many days late loses."""
    return round(min(assignment.late_penalty_max, late_days * assignment.late_penalty_per_day), 6)

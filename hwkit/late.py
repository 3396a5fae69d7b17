"""Deadlines: when a notebook was submitted, how many days late that is, and what it costs.

The submission time comes from `hwkit collect`'s record beside the notebook (the LMS download's time; Canvas's
LATE marker), else the file's modification time. Days late count every started day after the due time plus
the student's extension (roster column `extension_hours`, which the LMS does not know: its LATE marker counts
one day only when no time is known). The penalty (`late_penalty_per_day` per day, at most `late_penalty_max`,
fractions of the score) is fixed when the submission is graded and applied to the final score, after any
person's decision."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hwkit.course import Assignment, Student

RECORD = ".collected.json"           # written by hwkit.collect beside the notebook


@dataclass(frozen=True)
class Submitted:
    at: datetime | None               # aware; None when unknown
    marked_late: bool = False         # the LMS said so (Canvas's _LATE_ in the file name)


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
        return Submitted(datetime.fromtimestamp(notebook.stat().st_mtime, timezone.utc), marked)
    except OSError:
        return Submitted(None, marked)


def days_late(assignment: Assignment, student: Student, submitted: Submitted) -> int:
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


def penalty(assignment: Assignment, late_days: int) -> float:
    """The fraction of the score a submission this many days late loses."""
    return round(min(assignment.late_penalty_max, late_days * assignment.late_penalty_per_day), 6)

"""Which notebook in each student's submission folder is graded, and why."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hwkit.course import Course
from hwkit.notebooks import MAX_NOTEBOOK_BYTES
from hwkit.records import Status


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path | None
    problem: str = ""        # why no notebook could be chosen, if path is None
    missing: Status | None = None    # if path is None: NO_SUBMISSION or AMBIGUOUS
    chosen_by: str = ""      # with several notebooks in the folder, why this one: "metadata" or "name"
    notebooks: int = 1       # how many notebooks the folder holds


def _not_submitted(student_id: str, why: str) -> Submission:
    return Submission(student_id, None, why, Status.NO_SUBMISSION)


def _hwkit_meta(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return {}
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {}).get("hwkit", {})
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return {}


def choose_notebook(folder: Path, assignment_id: str, student_id: str) -> Submission:
    """One notebook per folder is expected; with several, the one whose hwkit metadata names this
    assignment, else the one named ASSIGNMENT.ipynb."""
    notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and not p.is_symlink()
                       and not p.name.startswith("."))
    if not notebooks:
        return _not_submitted(student_id, "the folder holds no .ipynb notebook")
    if len(notebooks) == 1:
        return Submission(student_id, notebooks[0])
    tagged = [p for p in notebooks if _hwkit_meta(p).get("assignment") == assignment_id]
    if len(tagged) == 1:
        return Submission(student_id, tagged[0], chosen_by="metadata", notebooks=len(notebooks))
    named = [p for p in notebooks if p.name == f"{assignment_id}.ipynb"]
    if len(named) == 1:
        return Submission(student_id, named[0], chosen_by="name", notebooks=len(notebooks))
    return Submission(student_id, None, f"several notebooks ({', '.join(p.name for p in notebooks[:5])}) "
                                        "and none is identifiable as this assignment's", Status.AMBIGUOUS)


def find_submissions(folder: Path, course: Course, assignment_id: str,
                     only: list[str] | None) -> tuple[list[Submission], list[str]]:
    """One Submission per student on the roster (or in `only`), and the folder names not on the roster."""
    roster = {s.student_id for s in course.students(only)}
    present = {p.name: p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()} if folder.is_dir() else {}
    unknown = sorted(set(present) - {s.student_id for s in course.roster})
    subs = [choose_notebook(present[sid], assignment_id, sid) if sid in present
            else _not_submitted(sid, "no folder for this student in the submissions")
            for sid in sorted(roster)]
    return subs, unknown


def file_hash(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""


def changed_since_grading(book, assignment_id: str, sub: Submission) -> bool:
    """The notebook in the folder is not the one the gradebook graded (never graded, or resubmitted since)."""
    return book.graded_hash(assignment_id, sub.student_id) != file_hash(sub.path)


def not_graded(course: Course, assignment_id: str, book) -> list[str]:
    """Students whose notebook in submitted/ the gradebook has not graded as it is now."""
    subs, _ = find_submissions(course.root / "submitted" / assignment_id, course, assignment_id, None)
    return [s.student_id for s in subs if s.path is not None and changed_since_grading(book, assignment_id, s)]

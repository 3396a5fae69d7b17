"""`hwkit review ASSIGNMENT --list`: what needs a person, one part a line, for scripts."""
from __future__ import annotations

from hwkit.course import Course, HwkitError
from hwkit.gradebook import Gradebook
from hwkit.review.queue import review_items


def review_list(course: Course, assignment: str) -> tuple[list[str], int]:
    """Tab-separated lines (student, part, problem, flag, score/max) and a last count line; exit status 0."""
    book = Gradebook(course.root)
    try:
        results = book.results(assignment)
    finally:
        book.close()
    if not results:
        raise HwkitError(f"{course.root / 'gradebook.sqlite'}: no grades for {assignment}; "
                         f"run `hwkit grade {assignment}` first")
    items = review_items(results)
    lines = [f"{i.student_id}\t{i.part.part}\t{i.part.problem}\t{i.flag}\t{i.part.score:g}/{i.part.max_points:g}"
             for i in items]
    students = len({i.student_id for i in items})
    return lines + [f"# {len(items)} part(s) of {students} submission(s) need review"], 0

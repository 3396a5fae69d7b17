"""People's decisions on scores: checked, recorded in the gradebook's overrides table, and written through to the
outputs (the student's feedback page, grades.csv, the summary). `hwkit override` and the review page both come
here, so they write the same records.

Everything is checked before anything is written: a bad score, an unknown student or part refuses the whole
request with one clear message. A decision made on a page also says what the page showed (Seen); when a member's
answer or decision changed since, the whole request is refused (StaleDecision), so that nobody's decision lands on
an answer they did not see or silently replaces one they did not see."""
from __future__ import annotations

import getpass
import math
from dataclasses import dataclass
from datetime import datetime, timezone

from hwkit.course import Course, HwkitError
from hwkit.gradebook import Gradebook, Override, PartResult, SubmissionResult, bounded

COMMENT_CHARS = 2000
GRADER_CHARS = 100


@dataclass(frozen=True)
class Seen:
    """What a review page showed of one student's part when it was loaded."""
    fingerprint: str   # of the answer shown
    decision_id: int   # the id of the part's latest override then (0: none)


@dataclass(frozen=True)
class Decision:
    """One requested score, as a person typed it."""
    student_id: str
    part: str          # a part id, or problem/part where two problems share a part id
    score: str
    comment: str = ""
    seen: Seen | None = None   # from a page; None from the command line, which decides on the current answer


class StaleDecision(HwkitError):
    """A decision made on a page that no longer shows the answer or the latest decision: nothing was saved."""


def parse_score(text: str, part: PartResult) -> float:
    """A score within [0, the part's points]; anything else is a HwkitError that says what is allowed."""
    allowed = f"a number from 0 to {part.max_points:g} (the points of {part.part})"
    try:
        score = float(str(text).strip())
    except ValueError:
        raise HwkitError(f"score {str(text)[:40]!r} is not a number: give {allowed}") from None
    if not math.isfinite(score) or not 0 <= score <= part.max_points:
        raise HwkitError(f"score {str(text)[:40]} is out of range: give {allowed}")
    return round(score, 4)


def locate_part(result: SubmissionResult, part_id: str) -> PartResult:
    problem, _, part = part_id.rpartition("/")
    found = [p for p in result.parts if p.part == part and (not problem or p.problem == problem)]
    if len(found) == 1:
        return found[0]
    known = ", ".join(p.part for p in result.parts)
    if not found:
        raise HwkitError(f"{result.assignment} has no part {part_id[:60]!r}; its parts are: {known}")
    raise HwkitError(f"part {part_id!r} is in several problems of {result.assignment}; write it as problem/part")


def grader_name(given: str | None) -> str:
    """--grader NAME, else the OS user."""
    if given is None:
        try:
            given = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in this environment
            given = "unknown"
    name = bounded(" ".join(str(given).split()), GRADER_CHARS)
    if not name:
        raise HwkitError("--grader: give a name")
    return name


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def changes_since_seen(result: SubmissionResult, part: PartResult, seen: Seen, latest: Override | None) -> list[str]:
    """What changed in the student's part since a page showed it (`latest`: the part's latest override now)."""
    changes = []
    if part.fingerprint != seen.fingerprint:
        changes.append(f"{result.student_id}'s answer changed since this page was loaded "
                       f"(regraded at {result.graded_at or 'an unknown time'})")
    if latest is not None and latest.id != seen.decision_id:
        changes.append(f"{result.student_id} was decided by {latest.grader} ({latest.score:g} on "
                       f"{latest.created_at}) since this page was loaded")
    elif latest is None and seen.decision_id:
        changes.append(f"{result.student_id}'s decision is no longer on record")
    return changes


def plan_overrides(results: dict[str, SubmissionResult], assignment: str, decisions: list[Decision],
                   grader: str, latest: dict[str, dict] | None = None) -> list[Override]:
    """The overrides the decisions make, or a HwkitError for the first that cannot be made (nothing recorded);
    a StaleDecision naming every member whose part changed since its page showed it (`latest`: the students'
    latest overrides, Gradebook.latest_overrides)."""
    if not decisions:
        raise HwkitError("no score given")
    when, planned, changes = _now(), [], []
    for d in decisions:
        result = results.get(d.student_id)
        if result is None:
            raise HwkitError(f"{d.student_id[:60]!r} has no graded submission of {assignment}")
        part = locate_part(result, d.part)
        score = parse_score(d.score, part)
        if d.seen is not None:
            decided = (latest or {}).get(d.student_id, {}).get((part.problem, part.part))
            changes += changes_since_seen(result, part, d.seen, decided)
        comment = bounded(str(d.comment or "").strip(), COMMENT_CHARS)
        planned.append(Override(assignment, d.student_id, part.problem, part.part, score, comment, grader, when,
                                part.score, result.nb_hash, part.fingerprint))
    if changes:
        raise StaleDecision("; ".join(changes) + "; reload the page to see what changed, then decide again")
    return planned


def decide(course: Course, assignment: str, decisions: list[Decision], grader: str | None = None) -> list[Override]:
    """Check every decision, record them in one transaction, then rewrite the outputs they change."""
    book = Gradebook(course.root)
    try:
        results = book.results(assignment)
        if not results:
            raise HwkitError(f"{book.path}: no grades for {assignment}; run `hwkit grade {assignment}` first")
        return record_decisions(course, book, results, decisions, grader)[0]
    finally:
        book.close()


def record_decisions(course: Course, book: Gradebook, results: list[SubmissionResult], decisions: list[Decision],
                     grader: str | None, histogram: bool = True) -> tuple[list[Override], list[SubmissionResult]]:
    """Decisions on `results` (the assignment's final results, as read from `book`): checked, recorded, written
    through to the changed students' feedback pages, grades.csv and the summary (and the histogram unless the
    caller redraws it later). Returns the overrides and the results with them applied."""
    from hwkit.report import write_feedback, write_reports

    if not results:
        raise HwkitError(f"{book.path}: no graded submissions to decide on")
    name = grader_name(grader)
    assignment = results[0].assignment
    latest = book.latest_overrides(assignment, sorted({d.student_id for d in decisions if d.seen is not None}))
    overrides = plan_overrides({r.student_id: r for r in results}, assignment, decisions, name, latest)
    book.add_overrides(overrides)
    changed = sorted({o.student_id for o in overrides})
    fresh = {r.student_id: r for r in book.results(assignment, changed)}
    final = [fresh.get(r.student_id, r) for r in results]
    for sid in changed:
        write_feedback(course, fresh[sid])
    write_reports(course, assignment, final, histogram=histogram)
    return overrides, final

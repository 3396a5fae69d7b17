"""What a person must decide: the parts flagged for review, why each is flagged, and written answers grouped by
similarity so that one decision can settle a whole group (each member still visible and changeable).

Grouping: exact after the rubric's normalisation first, then near-duplicates by rapidfuzz's similarity ratio."""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from rapidfuzz import fuzz, process

from hwkit.checks import normalise_text
from hwkit.gradebook import POINTS_LOWERED, PartResult, SubmissionResult
from hwkit.records import Status

WRITTEN, FORMULA, GRADER, SHORTCUT, REQUIRED, MISMATCH, CHANGED, POINTS, OTHER = (
    "written answer", "undecided formula", "grader error", "forbidden shortcut", "required method not used",
    "variant mismatch", "answer changed after an override", "points lowered after an override", "needs review")
NEAR_DUPLICATE = 90          # rapidfuzz ratio (0-100) from which two answers of one part share a group


def review_flag(result: SubmissionResult, part: PartResult) -> str:
    """Why a person must look at this part (the queue's filter)."""
    if part.stale_override:
        return POINTS if part.stale_override.startswith(POINTS_LOWERED) else CHANGED
    if part.note.startswith("WRITTEN_"):
        return WRITTEN
    if part.note == "FORMULA_UNDECIDED":
        return FORMULA
    if part.note == "GRADER_ERROR":
        return GRADER
    if part.note == "FORBIDDEN_SHORTCUT":
        return SHORTCUT
    if part.note == "REQUIRED_METHOD_NOT_USED":
        return REQUIRED
    if result.status == Status.VARIANT_MISMATCH:
        return MISMATCH
    return OTHER


@dataclass(frozen=True)
class ReviewItem:
    """One flagged part of one submission."""
    student_id: str
    flag: str
    part: PartResult

    @property
    def key(self) -> str:
        return f"{self.part.problem}/{self.part.part}"


@dataclass
class AnswerGroup:
    """Flagged answers of one part that read alike (a group of one for everything but written answers)."""
    problem: str
    part: str
    items: list[ReviewItem] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.problem}/{self.part}"

    @property
    def id(self) -> str:
        return f"{self.key}:{self.items[0].student_id}"

    @property
    def written(self) -> bool:
        return self.items[0].flag == WRITTEN

    @property
    def provisional(self) -> float:
        """The provisional score most members share (what 'accept' applies)."""
        return Counter(i.part.score for i in self.items).most_common(1)[0][0]


def review_items(results: list[SubmissionResult], problem: str = "", part: str = "", flag: str = "") -> list[ReviewItem]:
    """Every part that needs review (of final results), in student order, filtered."""
    items = []
    for r in results:
        for p in r.parts:
            if not p.needs_review:
                continue
            item = ReviewItem(r.student_id, review_flag(r, p), p)
            if (not problem or p.problem == problem) and (not part or p.part == part) and (not flag or item.flag == flag):
                items.append(item)
    return items


def counts(items: list[ReviewItem]) -> dict[str, Counter]:
    """How many are left, by problem, by part and by flag."""
    return {"problem": Counter(i.part.problem for i in items), "part": Counter(i.part.part for i in items),
            "flag": Counter(i.flag for i in items)}


def answer_groups(items: list[ReviewItem]) -> list[AnswerGroup]:
    """Written answers of each part grouped: identical after normalisation, then near-duplicates of a group's
    first answer; every other item is a group of its own. Parts in the gradebook's order, largest groups first."""
    groups: list[AnswerGroup] = []
    by_part: dict[tuple, list[ReviewItem]] = {}
    for item in items:
        if item.flag == WRITTEN:
            by_part.setdefault((item.part.problem, item.part.part), []).append(item)
        else:
            groups.append(AnswerGroup(item.part.problem, item.part.part, [item]))
    for (problem, part), members in by_part.items():
        exact: dict[str, list[ReviewItem]] = {}
        for item in members:
            exact.setdefault(normalise_text(item.part.answer), []).append(item)
        texts = sorted(exact, key=lambda t: -len(exact[t]))
        for family in _near_duplicates(tuple(texts)):
            groups.append(AnswerGroup(problem, part, [i for t in family for i in exact[texts[t]]]))
    order = {key: i for i, key in enumerate(dict.fromkeys((i.part.problem, i.part.part) for i in items))}
    return sorted(groups, key=lambda g: (order[(g.problem, g.part)], -len(g.items)))   # parts in gradebook order


@lru_cache(maxsize=64)
def _near_duplicates(texts: tuple) -> list[list[int]]:
    """Families of indexes into `texts` (distinct normalised answers, most frequent first): each text joins the
    first family whose first text is at least NEAR_DUPLICATE similar. Cached: the answers change only when a
    submission is graded again, the queue is drawn after every decision."""
    leaders: list[str] = []
    families: list[list[int]] = []
    for i, text in enumerate(texts):
        match = process.extractOne(text, leaders, scorer=fuzz.ratio, score_cutoff=NEAR_DUPLICATE) if text else None
        if match is None:
            leaders.append(text)
            families.append([i])
        else:
            families[match[2]].append(i)
    return families


@dataclass(frozen=True)
class RubricView:
    """What a reviewer sees of a written part's rubric: the model answer and the concepts."""
    model_answer: str
    concepts: tuple      # ((name, (synonym, ...)), ...)


@lru_cache(maxsize=None)
def rubric_view(problem_id: str, part_id: str) -> RubricView | None:
    """The model answer and the concept lists of a written part from the bank (they do not depend on the
    variant); None for other parts or a bank that cannot be read."""
    from hwkit.bank import get_problem
    from hwkit.checks import Rubric

    try:
        problem = get_problem(problem_id)
        parts = {p.id: p for p in problem.parts(problem.sample(random.Random(0)))}
        part = parts[part_id]
        if not isinstance(part.check, Rubric):
            return None
        model = part.reference(part.probe(random.Random(0)))
    except Exception:  # noqa: BLE001 - the page still shows the student's answer without the rubric
        return None
    return RubricView(str(model), part.check.concepts)


def concept_hits(view: RubricView | None, text: str) -> dict[str, list[str]]:
    """{concept: synonyms found} for a written answer (empty without a rubric)."""
    if view is None:
        return {}
    from hwkit.checks import Rubric

    return Rubric(view.concepts).concept_hits(text)

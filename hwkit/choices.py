"""Multiple-choice items with options shuffled per student, and known-mistake lists without duplicates.

A choice item is a dict: `title`，`question` and `options` (each with its text in both languages; option 0
is the right one), and per wrong option i a stable answer `notes[i]` and a `feedback[i]`."""
from __future__ import annotations

import random

from hwkit.checks import Choice
from hwkit.records import Mistake, Part
from hwkit.probes import read_variable

LETTERS = "ABCD"


def shuffled_orders(rng: random.Random, items: dict) -> dict[str, list[int]]:
    """order[i] = the option shown under letter i, one order per item, drawn from the student's seed."""
    return {name: rng.sample(range(len(items[name]["options"])), len(items[name]["options"])) for name in sorted(items)}


def choice_answer(order: list[int]) -> str:
    """The letter under which option 0 (the right one) is shown."""
    return LETTERS[order.index(0)]


def choice_part(name: str, item: dict, order: list[int], points: float = 1) -> Part:
    mistakes = [Mistake(item["notes"][i], LETTERS[order.index(i)], item["feedback"][i]) for i in range(1, len(order))]
    return Part(name, points, item["title"], probe=lambda rng: read_variable(name),
                reference=lambda probe: choice_answer(order), check=Choice(), mistakes=lambda probe: mistakes,
                kind="choice")


def choice_context(items: dict, orders: dict[str, list[int]]) -> dict:
    """Template variables: per item its question, the answer letter and the options in the student's order."""
    return {"choices": {name: {"question": item["question"], "answer": choice_answer(orders[name]),
                               "options": [{"letter": LETTERS[i], **item["options"][j]} for i, j in enumerate(orders[name])]}
                        for name, item in items.items()}}


def distinct_mistakes(reference, mistakes: list[Mistake], check=None) -> list[Mistake]:
    """Drop known mistakes that coincide with the right answer (or an earlier mistake) for this variant,
    e.g. "used the input size" when input and output sizes are equal. With a check, "coincide" means
    the check cannot tell them apart (tolerances included)."""
    kept, seen = [], [reference]
    for m in mistakes:
        if not any(_same(m.value, v, check) for v in seen):
            kept.append(m)
            seen.append(m.value)
    return kept


def _same(a, b, check) -> bool:
    if check is not None:
        return check.matches(a, b)
    try:
        return bool(a == b)
    except ValueError:  # numpy arrays compare element-wise
        return False

"""Where formulas are compared: fixed generic points, the values there (cached), the verdict; and the
self-check's one-number fingerprint of a formula."""
from __future__ import annotations

import math
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import sympy
from mpmath import libmp

from hwkit.formula.evaluate import (IMPRECISE, PRECISIONS, TOLERANCE_BITS, UNDEFINED, UNKNOWN, Evaluator, Imprecise,
                                    Marker, OutOfTime, Undefined, Unknown, interval_context)
from hwkit.formula.read import Node, tree_from_sympy

POINTS = 16          # candidate points per comparison
MIN_POINTS = 4       # where the reference must be defined, or the reference is at fault
_PRIMES = (7, 11, 13, 17, 19, 23, 29, 31)


@lru_cache(maxsize=256)
def evaluation_points(symbols: tuple[str, ...]) -> tuple[dict, ...]:
    """Fixed, generic points: non-integer rationals with prime denominators, about half of them below 1
    (probabilities) and half up to 40, so no singularity at a round value (K = 1, p = 1) is ever hit by
    chance, and the same formula always gets the same verdict."""
    rng = random.Random("hwkit formula points " + " ".join(symbols))
    points = []
    for _ in range(POINTS):
        point = {}
        for name in symbols:
            denominator = rng.choice(_PRIMES)
            low, high = (1, denominator) if rng.random() < 0.5 else (denominator + 1, 40 * denominator)
            numerator = rng.randrange(low, high)
            point[name] = Fraction(numerator + (numerator % denominator == 0), denominator)
        points.append(point)
    return tuple(points)


class _Cache:
    """A small thread-safe LRU: values of a formula at the points, computed once and reused for the
    reference and every known mistake. Results cut short by the time limit are not kept."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        return None

    def put(self, key, value) -> None:
        with self.lock:
            self.items[key] = value
            if len(self.items) > self.size:
                self.items.popitem(last=False)


_VALUES = _Cache(1024)


def formula_values(tree: Node, symbols: tuple[str, ...], precision: int, deadline: float) -> tuple:
    """The value at each evaluation point: a Fraction, an interval, UNDEFINED, UNKNOWN or IMPRECISE."""
    key = (tree, symbols, precision)
    cached = _VALUES.get(key)
    if cached is not None:
        return cached
    values, complete = [], True
    for point in evaluation_points(symbols):
        if not complete:
            values.append(UNKNOWN)
            continue
        try:
            values.append(Evaluator(point, precision, deadline).value(tree))
        except Undefined:
            values.append(UNDEFINED)
        except OutOfTime:
            values.append(UNKNOWN)
            complete = False
        except Imprecise:
            values.append(IMPRECISE)
        except (Unknown, ArithmeticError, ValueError):   # mpmath's own refusals are unknowns too
            values.append(UNKNOWN)
    values = tuple(values)
    if complete:
        _VALUES.put(key, values)
    return values


def _compare_at(a, b, precision: int) -> str:
    """'equal', 'different' or 'unsure' for two defined values at one point."""
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return "equal" if a == b else "different"
    iv = interval_context(precision)
    (a_low, a_high), (b_low, b_high) = [(iv.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v)._mpi_
                                        for v in (a, b)]
    if libmp.mpf_lt(a_high, b_low) or libmp.mpf_lt(b_high, a_low):
        return "different"
    width = _largest([libmp.mpf_sub(high, low, 64, libmp.round_up) for low, high in ((a_low, a_high), (b_low, b_high))])
    scale = _largest([libmp.mpf_abs(end) for end in (a_low, a_high, b_low, b_high)])
    return "equal" if libmp.mpf_le(width, libmp.mpf_shift(scale, -TOLERANCE_BITS)) else "unsure"


def _largest(numbers: list) -> tuple:
    largest = numbers[0]
    for number in numbers[1:]:
        if libmp.mpf_gt(number, largest):
            largest = number
    return largest


@dataclass(frozen=True)
class Equivalence:
    verdict: str   # "equal" | "different" | "undefined" | "undecided"


def _verdict(student: tuple, reference: tuple, precision: int) -> tuple[str, bool]:
    """The verdict over the points where the reference has a value, and whether more precision could help."""
    usable = [i for i, value in enumerate(reference) if not isinstance(value, Marker)]
    if len(usable) < MIN_POINTS:
        undefined = sum(value is UNDEFINED for value in reference)
        if undefined > POINTS - MIN_POINTS:
            raise ValueError(f"the reference formula is undefined at {undefined} of {POINTS} evaluation points; "
                             "fix the reference")
        return "undecided", any(value is IMPRECISE for value in reference)
    if any(student[i] is UNDEFINED for i in usable):
        return "undefined", False
    unsure, imprecise = False, False
    for i in usable:
        if isinstance(student[i], Marker):
            unsure, imprecise = True, imprecise or student[i] is IMPRECISE
            continue
        outcome = _compare_at(student[i], reference[i], precision)
        if outcome == "different":
            return "different", False
        if outcome == "unsure":
            unsure = imprecise = True
    return ("undecided" if unsure else "equal"), imprecise


def decide(student: Node, reference: Node, symbols: tuple[str, ...], time_limit: float = 5.0) -> str:
    """Compare two compiled formulas at the evaluation points, within time_limit seconds of this thread's
    CPU. A point where the reference is undefined is skipped; a reference undefined almost everywhere is
    an authoring error (ValueError), so a student is never compared with an undefined value."""
    deadline = time.thread_time() + time_limit
    verdict = "undecided"
    for precision in PRECISIONS:
        verdict, retry = _verdict(formula_values(student, symbols, precision, deadline),
                                  formula_values(reference, symbols, precision, deadline), precision)
        if not retry:
            break
    return verdict


def equivalent(student: sympy.Expr, reference: sympy.Expr, time_limit: float = 5.0) -> Equivalence:
    """decide() for two sympy expressions, at points over their symbols."""
    symbols = tuple(sorted({s.name for s in student.free_symbols | reference.free_symbols}))
    return Equivalence(decide(tree_from_sympy(student), tree_from_sympy(reference), symbols, time_limit))


# ---- self-check fingerprints ---------------------------------------------------------------------------

def _fingerprint_points(symbols: list[str]) -> list[dict]:
    rng = random.Random(104729)
    return [{s: Fraction(rng.randint(2, 40), rng.randint(1, 7)) for s in symbols} for _ in range(3)]


def fingerprint_value(tree: Node, symbols: tuple[str, ...], time_limit: float = 5.0) -> Fraction | float | None:
    """One number that stands for the formula: a weighted sum of its values at fixed public points, exact
    when rational. Equivalent formulas give the same number; the formula cannot be read back from it. None
    where the formula is undefined or cannot be evaluated."""
    deadline = time.thread_time() + time_limit
    total = Fraction(0)
    for i, point in enumerate(_fingerprint_points(sorted(symbols))):
        evaluator = Evaluator(point, PRECISIONS[0], deadline)
        try:
            total = evaluator.add(total, evaluator.mul(Fraction(i + 2), evaluator.value(tree)))
        except (Undefined, Unknown, ArithmeticError, ValueError):
            return None
    if isinstance(total, Fraction):
        return total
    low, high = total._mpi_
    middle = (libmp.to_float(low) + libmp.to_float(high)) / 2
    return middle if math.isfinite(middle) else None

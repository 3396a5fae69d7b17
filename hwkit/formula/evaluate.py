"""Evaluating a compiled formula at one point: exact Fractions while the value is rational, rigorous intervals
(mpmath) after an irrational operation; every operation's size is bounded before it runs, and the whole
evaluation by a CPU-time deadline of the calling thread."""
from __future__ import annotations

import math
import threading
import time
from fractions import Fraction

import sympy
from mpmath import libmp
from mpmath.ctx_iv import MPIntervalContext

from hwkit.formula.read import MAX_EXPONENT, Node

MAX_EXACT_BITS = 4096        # an exact value beyond this is "unknown" (no legitimate formula comes close)
MAX_MAGNITUDE_BITS = 4096    # likewise an approximate value outside 2**±4096
MAX_EXP_ARGUMENT = 2800      # exp(2800) is just below 2**4096
MAX_TRIG_ARGUMENT = 2 ** 64
PRECISIONS = (192, 768)      # bits of interval arithmetic: a second pass where the first could not settle
TOLERANCE_BITS = 96          # overlapping intervals narrower than 2**-96 of the value count as equal


class Undefined(Exception):
    """A sub-expression has no finite real value here."""


class Unknown(Exception):
    """The value is beyond the evaluation's bounds."""


class Imprecise(Unknown):
    """An interval straddles the point that decides (zero, an integer); more precision may settle it."""


class OutOfTime(Unknown):
    """The CPU-time limit passed."""


class Marker:
    """What stands in for a value at a point where there is none (compared by identity, never by ==,
    which mpmath would try to read as a number)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNDEFINED, UNKNOWN, IMPRECISE = Marker("UNDEFINED"), Marker("UNKNOWN"), Marker("IMPRECISE")
_ZERO = libmp.fzero
_MAX_EXP_ARGUMENT = libmp.from_int(MAX_EXP_ARGUMENT)
_CONTEXTS = threading.local()


def interval_context(precision: int) -> MPIntervalContext:
    """One interval context per thread and precision (a context's precision is its state; never changed)."""
    contexts = _CONTEXTS.__dict__.setdefault("by_precision", {})
    if precision not in contexts:
        contexts[precision] = MPIntervalContext()
        contexts[precision].prec = precision
    return contexts[precision]


def _exact_size(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_EXACT_BITS:
        raise Unknown
    return value


class Evaluator:
    """Evaluates one tree at one point. Exact Fractions while the value is rational; rigorous intervals
    (mpmath) after an irrational operation; every operation's size is bounded before it runs."""

    def __init__(self, point: dict[str, Fraction], precision: int, deadline: float):
        self.point, self.deadline = point, deadline
        self.iv = interval_context(precision)

    def value(self, tree: Node):
        if time.thread_time() > self.deadline:
            raise OutOfTime
        kind = tree[0]
        if kind == "num":
            return tree[1]
        if kind == "sym":
            return self.point[tree[1]]
        if kind == "undefined":
            raise Undefined
        if kind == "neg":
            return -self.value(tree[1])
        if kind == "call":
            return self.call(tree[1], self.value(tree[2]))
        a, b = self.value(tree[1]), self.value(tree[2])
        return getattr(self, kind)(a, b)

    # -- intervals

    def interval(self, x):
        if isinstance(x, Fraction):
            return self.iv.mpf(x.numerator) / x.denominator
        return x

    def checked(self, v):
        for end in v._mpi_:
            sign, mantissa, exponent, bits = end
            if not mantissa:
                if end != _ZERO:   # an infinity or NaN endpoint
                    raise Unknown
            elif abs(exponent + bits) > MAX_MAGNITUDE_BITS:
                raise Unknown
        return v

    @staticmethod
    def sign(x) -> int | None:
        """1, -1 or 0; None for an interval that straddles zero."""
        if isinstance(x, Fraction):
            return (x > 0) - (x < 0)
        low, high = x._mpi_
        if libmp.mpf_gt(low, _ZERO):
            return 1
        if libmp.mpf_lt(high, _ZERO):
            return -1
        return None

    @staticmethod
    def magnitude_bits(v) -> int:
        """About log2 of the largest |value| in the interval (0 for an interval of zeros)."""
        return max(end[2] + end[3] if end[1] else 0 for end in v._mpi_)

    # -- arithmetic

    def add(self, a, b):
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return _exact_size(a + b)
        return self.checked(self.interval(a) + self.interval(b))

    def sub(self, a, b):
        return self.add(a, -b)

    def mul(self, a, b):
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return _exact_size(a * b)
        if 0 in (self.sign(a), self.sign(b)):   # an exact zero times a defined value
            return Fraction(0)
        return self.checked(self.interval(a) * self.interval(b))

    def div(self, a, b):
        sign = self.sign(b)
        if sign == 0:
            raise Undefined
        if sign is None:
            raise Imprecise
        if isinstance(a, Fraction) and isinstance(b, Fraction):
            return _exact_size(a / b)
        return self.checked(self.interval(a) / self.interval(b))

    def pow(self, base, exponent):
        if isinstance(exponent, Fraction) and exponent.denominator == 1:
            return self.integer_power(base, exponent.numerator)
        base_sign, exponent_sign = self.sign(base), self.sign(exponent)
        if base_sign == 1:
            return self.positive_power(base, exponent)
        if base_sign == 0 and exponent_sign == 1:
            return Fraction(0)
        if base_sign == 0 and exponent_sign in (0, -1):
            raise Undefined
        if base_sign == -1 and (isinstance(exponent, Fraction) or not self.contains_integer(exponent)):
            raise Undefined   # a negative number to a non-integer power is not real
        raise Imprecise

    def integer_power(self, base, n: int):
        if isinstance(base, Fraction):
            if base == 0 and n < 0:
                raise Undefined
            if max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(n) > MAX_EXACT_BITS:
                raise Unknown
            return base ** n
        if n < 0 and self.sign(base) is None:
            raise Imprecise
        if self.magnitude_bits(base) * abs(n) > MAX_MAGNITUDE_BITS:   # a tiny base is caught by checked()
            raise Unknown
        return self.checked(base ** n)

    def positive_power(self, base, exponent):
        if isinstance(base, Fraction) and isinstance(exponent, Fraction):
            root = _exact_root(base, exponent.denominator)
            if root is not None:
                return self.integer_power(root, exponent.numerator)
        return self.exp(self.mul(exponent, self.log(base)))

    def contains_integer(self, v) -> bool:
        low, high = v._mpi_
        return libmp.mpf_ge(libmp.mpf_floor(high), low)

    # -- functions

    def call(self, name: str, x):
        if name == "sqrt":
            return self.pow(x, Fraction(1, 2))
        if name == "sigmoid":
            return self.div(Fraction(1), self.add(Fraction(1), self.exp(-x)))
        if name == "tanh":   # 1 - 2/(exp(2x) + 1)
            return self.sub(Fraction(1), self.div(Fraction(2), self.add(self.exp(self.mul(Fraction(2), x)), Fraction(1))))
        return getattr(self, "log" if name == "ln" else name)(x)

    def exp(self, x):
        if isinstance(x, Fraction) and x == 0:
            return Fraction(1)
        x = self.interval(x)
        if any(libmp.mpf_gt(libmp.mpf_abs(end), _MAX_EXP_ARGUMENT) for end in x._mpi_):
            raise Unknown
        return self.checked(self.iv.exp(x))

    def log(self, x):
        sign = self.sign(x)
        if sign in (0, -1):
            raise Undefined
        if sign is None:
            raise Imprecise
        if isinstance(x, Fraction) and x == 1:
            return Fraction(0)
        return self.checked(self.iv.log(self.interval(x)))

    def sin(self, x):
        return self.trigonometric(self.iv.sin, x, Fraction(0))

    def cos(self, x):
        return self.trigonometric(self.iv.cos, x, Fraction(1))

    def trigonometric(self, function, x, at_zero: Fraction):
        if isinstance(x, Fraction) and x == 0:
            return at_zero
        x = self.interval(x)
        if self.magnitude_bits(x) > math.log2(MAX_TRIG_ARGUMENT):
            raise Unknown
        return self.checked(function(x))


def _exact_root(value: Fraction, degree: int) -> Fraction | None:
    """value ** (1/degree) when it is rational (4/9 under a square root), else None."""
    if degree > MAX_EXPONENT:
        return None
    numerator, exact_numerator = sympy.integer_nthroot(value.numerator, degree)
    denominator, exact_denominator = sympy.integer_nthroot(value.denominator, degree)
    return Fraction(numerator, denominator) if exact_numerator and exact_denominator else None

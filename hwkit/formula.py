"""Student formulas: read through an AST whitelist, never through sympify/parse_expr/eval, and compared by
exact evaluation at rational points.

Accepted: numbers, the symbols and functions a problem declares, + - * / ** (and ^ as power), unary minus,
parentheses. No attributes, subscripts, keywords, comprehensions or strings. Every number written or folded
from constants has at most MAX_DIGITS digits, a constant exponent at most MAX_EXPONENT, and the text is
bounded in length, node count and nesting, so reading a formula costs little whatever it says.

A formula is compiled once into a small tree (`compile_formula`, cached) and evaluated *as written* at fixed
points: exact fractions where the value is rational, rigorous intervals (mpmath) where it is not. It is
undefined at a point when any sub-expression is not a finite real number there (0*log(0), sqrt(-1)*0 and
(K-K)/(K-K) included, though sympy would simplify them away). Every operation is bounded before it runs
(exact numbers, magnitudes, precision) and the whole evaluation by a CPU-time limit of the calling thread,
so the work stays small in the grader process itself and needs no child process; a value that cannot be
found within those bounds is "unknown", and an answer that cannot be decided is "undecided", never
"different" and never "equal". `parse_formula` builds the same text as a sympy expression (for authors and
tests), under the same limits."""
from __future__ import annotations

import ast
import math
import operator
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import sympy
from mpmath import libmp
from mpmath.ctx_iv import MPIntervalContext

from hwkit import pysyntax

MAX_LENGTH = 1000
MAX_NODES = 600
MAX_DEPTH = 100
MAX_EXPONENT = 64
MAX_DIGITS = 100
_MAX_BITS = math.ceil(MAX_DIGITS * math.log2(10))

FUNCTIONS = {
    "sqrt": sympy.sqrt, "exp": sympy.exp, "log": sympy.log, "ln": sympy.log,
    "tanh": sympy.tanh, "sin": sympy.sin, "cos": sympy.cos,
    "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)),
}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_OPERATIONS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
               "pow": operator.pow}

# A compiled formula is a tree of tuples: ("num", Fraction), ("sym", name), ("neg", a), (op, a, b) for op in
# add sub mul div pow, ("call", function, a), ("undefined",). Tuples are immutable and hashable: cache keys.
Node = tuple


class FormulaError(ValueError):
    """The text is not a formula in the allowed language; the message says why, for the student."""


# ---- reading a formula ---------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    return (text.replace("×", "*").replace("·", "*").replace("⋅", "*").replace("−", "-")
            .replace("÷", "/").replace("^", "**").replace("²", "**2").replace("³", "**3").strip())


def _syntax_tree(text) -> ast.expr:
    if not isinstance(text, str):
        raise FormulaError("the answer must be a string such as \"K**2*C_in\"")
    if len(text) > 2 * MAX_LENGTH:   # before any work on it
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    text = _normalise(text)
    if not text:
        raise FormulaError("the formula is empty")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    try:
        tree = pysyntax.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):  # MemoryError: CPython's parser stack
        raise FormulaError("the formula is not valid syntax (use * for products and ** for powers)") from None
    depth, nodes = _depth_and_size(tree.body)
    if depth > MAX_DEPTH:
        raise FormulaError(f"the formula is nested too deeply (more than {MAX_DEPTH} levels)")
    if nodes > MAX_NODES:
        raise FormulaError("the formula is too long")
    return tree.body


def _depth_and_size(root: ast.AST) -> tuple[int, int]:
    deepest, count, stack = 0, 0, [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest, count = max(deepest, depth), count + 1
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest, count


def _check_digits(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > _MAX_BITS:
        raise FormulaError(f"a number in the formula has more than {MAX_DIGITS} digits")
    return value


def _number(value) -> Fraction:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormulaError("every number must be finite; one in the formula is too large (like 1e999)")
        return _check_digits(Fraction(repr(value)))   # the decimal as written: 0.1 is 1/10
    return _check_digits(Fraction(value))


def _folded_power(base: Fraction, exponent: Fraction) -> Fraction | None:
    if exponent.denominator != 1 or (base == 0 and exponent < 0):
        return None
    size = max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(exponent.numerator)
    if size > _MAX_BITS + abs(exponent.numerator):   # estimated before computing: 10**64**64 is never built
        raise FormulaError(f"a number in the formula would have more than {MAX_DIGITS} digits")
    return _check_digits(base ** exponent.numerator)


def _folded(op: str, a: Fraction | None, b: Fraction | None) -> Fraction | None:
    """The exact value of a constant sub-expression, as sympy would fold it while building; None when it is
    not a constant, not rational, or undefined (left for evaluation to report)."""
    if a is None or b is None:
        return None
    if op == "pow":
        return _folded_power(a, b)
    if op == "div":
        return None if b == 0 else _check_digits(a / b)
    return _check_digits(_OPERATIONS[op](a, b))


def _compile(node: ast.AST, symbols: frozenset, functions: frozenset) -> tuple[Node, Fraction | None]:
    """The tree for one AST node and, for a constant, its exact value (to fold and to bound)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        value = _number(node.value)
        return ("num", value), value
    if isinstance(node, ast.Name):
        if node.id in symbols:
            return ("sym", node.id), None
        raise FormulaError(f"unknown name '{node.id[:40]}'; use only {', '.join(sorted(symbols))}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        tree, value = _compile(node.operand, symbols, functions)
        if isinstance(node.op, ast.UAdd):
            return tree, value
        return (("neg", tree), None) if value is None else (("num", -value), -value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        op = _BINOPS[type(node.op)]
        left, a = _compile(node.left, symbols, functions)
        right, b = _compile(node.right, symbols, functions)
        if op == "pow" and b is not None and abs(b) > MAX_EXPONENT:
            raise FormulaError(f"exponents larger than {MAX_EXPONENT} are not allowed")
        value = _folded(op, a, b)
        return ((("num", value) if value is not None else (op, left, right)), value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in functions:
            raise FormulaError(f"function '{node.func.id[:40]}' is not allowed here")
        if len(node.args) != 1:
            raise FormulaError(f"'{node.func.id}' takes one argument")
        argument, _ = _compile(node.args[0], symbols, functions)
        return ("call", node.func.id, argument), None
    raise FormulaError(f"'{ast.unparse(node)[:40]}' is not allowed in a formula (arithmetic only)")


@lru_cache(maxsize=1024)
def _compile_text(text: str, symbols: tuple[str, ...], functions: tuple[str, ...]) -> Node | str:
    """The compiled tree, or the FormulaError message (so a bad answer is not re-read either)."""
    try:
        tree, _ = _compile(_syntax_tree(text), frozenset(symbols), frozenset(functions))
    except FormulaError as exc:
        return str(exc)
    return tree


def compile_formula(text, symbols: tuple[str, ...], functions: tuple[str, ...] = ()) -> Node:
    """The formula as a tree, read once per distinct text (cached); FormulaError says what is wrong."""
    if not isinstance(text, str) or len(text) > 2 * MAX_LENGTH:
        _syntax_tree(text)   # raises the student's message without caching the value
    result = _compile_text(text, tuple(symbols), tuple(name for name in functions if name in FUNCTIONS))
    if isinstance(result, str):
        raise FormulaError(result)
    return result


def reference_formula(want, symbols: tuple[str, ...]) -> Node:
    """An instructor's reference (or known mistake): text in the same language with every function
    available, or a sympy expression."""
    if isinstance(want, sympy.Expr):
        unknown = {s.name for s in want.free_symbols} - set(symbols)
        if unknown:
            raise FormulaError(f"the reference uses undeclared symbols {sorted(unknown)}")
        return tree_from_sympy(want)
    if not isinstance(want, str):
        raise TypeError(f"a formula reference must be text or a sympy expression, not {type(want).__name__}")
    return compile_formula(want, symbols, tuple(FUNCTIONS))


def tree_from_sympy(expr: sympy.Expr) -> Node:
    if expr.is_Symbol:
        return ("sym", expr.name)
    if expr.is_Rational:
        return ("num", Fraction(int(expr.p), int(expr.q)))
    if expr.is_Float:
        return ("num", Fraction(*sympy.Rational(expr).as_numer_denom()))
    if expr in (sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        return ("undefined",)
    if expr is sympy.E:
        return ("call", "exp", ("num", Fraction(1)))
    if expr.is_Add or expr.is_Mul:
        op, args = ("add" if expr.is_Add else "mul"), [tree_from_sympy(a) for a in expr.args]
        tree = args[0]
        for arg in args[1:]:
            tree = (op, tree, arg)
        return tree
    if expr.is_Pow:
        return ("pow", tree_from_sympy(expr.base), tree_from_sympy(expr.exp))
    for name in ("exp", "log", "tanh", "sin", "cos"):
        if isinstance(expr, getattr(sympy, name)):
            return ("call", name, tree_from_sympy(expr.args[0]))
    raise FormulaError(f"cannot evaluate {type(expr).__name__} in a formula")


# ---- the same formula as a sympy expression ------------------------------------------------------------

def parse_formula(text: str, symbols: dict[str, sympy.Symbol], functions: tuple[str, ...] = ()) -> sympy.Expr:
    tree = compile_formula(text, tuple(symbols), functions)
    return _sympy_from(tree, symbols)


def _sympy_from(tree: Node, symbols: dict) -> sympy.Expr:
    kind = tree[0]
    if kind == "num":
        return sympy.Rational(tree[1].numerator, tree[1].denominator)
    if kind == "sym":
        return symbols[tree[1]]
    if kind == "neg":
        return -_sympy_from(tree[1], symbols)
    if kind == "call":
        return _bounded(FUNCTIONS[tree[1]](_sympy_from(tree[2], symbols)))
    a, b = _sympy_from(tree[1], symbols), _sympy_from(tree[2], symbols)
    if kind == "pow":
        _check_power_size(a, b)
    return _bounded(_OPERATIONS[kind](a, b))


def _check_power_size(base: sympy.Expr, exponent: sympy.Expr) -> None:
    """sympy raises numbers (and numeric factors: (10**30*K)**64) to integer powers eagerly."""
    if exponent.is_Rational:
        coefficient = base.as_coeff_Mul()[0]
        if coefficient.is_Rational:
            bits = max(int(coefficient.p).bit_length(), int(coefficient.q).bit_length())
            if bits * abs(int(exponent.p)) > 2 * _MAX_BITS:
                raise FormulaError(f"a number in the formula would have more than {MAX_DIGITS} digits")


def _bounded(expr: sympy.Expr) -> sympy.Expr:
    for number in expr.atoms(sympy.Rational):
        _check_digits(Fraction(int(number.p), int(number.q)))
    return expr


# ---- evaluating a formula at a point -------------------------------------------------------------------

MAX_EXACT_BITS = 4096        # an exact value beyond this is "unknown" (no legitimate formula comes close)
MAX_MAGNITUDE_BITS = 4096    # likewise an approximate value outside 2**±4096
MAX_EXP_ARGUMENT = 2800      # exp(2800) is just below 2**4096
MAX_TRIG_ARGUMENT = 2 ** 64
PRECISIONS = (192, 768)      # bits of interval arithmetic: a second pass where the first could not settle
TOLERANCE_BITS = 96          # overlapping intervals narrower than 2**-96 of the value count as equal


class _Undefined(Exception):
    """A sub-expression has no finite real value here."""


class _Unknown(Exception):
    """The value is beyond the evaluation's bounds."""


class _Imprecise(_Unknown):
    """An interval straddles the point that decides (zero, an integer); more precision may settle it."""


class _OutOfTime(_Unknown):
    """The CPU-time limit passed."""


class _Marker:
    """What stands in for a value at a point where there is none (compared by identity, never by ==,
    which mpmath would try to read as a number)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNDEFINED, UNKNOWN, IMPRECISE = _Marker("UNDEFINED"), _Marker("UNKNOWN"), _Marker("IMPRECISE")
_ZERO = libmp.fzero
_MAX_EXP_ARGUMENT = libmp.from_int(MAX_EXP_ARGUMENT)
_CONTEXTS = threading.local()


def _interval_context(precision: int) -> MPIntervalContext:
    """One interval context per thread and precision (a context's precision is its state; never changed)."""
    contexts = _CONTEXTS.__dict__.setdefault("by_precision", {})
    if precision not in contexts:
        contexts[precision] = MPIntervalContext()
        contexts[precision].prec = precision
    return contexts[precision]


def _exact_size(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_EXACT_BITS:
        raise _Unknown
    return value


class _Evaluator:
    """Evaluates one tree at one point. Exact Fractions while the value is rational; rigorous intervals
    (mpmath) after an irrational operation; every operation's size is bounded before it runs."""

    def __init__(self, point: dict[str, Fraction], precision: int, deadline: float):
        self.point, self.deadline = point, deadline
        self.iv = _interval_context(precision)

    def value(self, tree: Node):
        if time.thread_time() > self.deadline:
            raise _OutOfTime
        kind = tree[0]
        if kind == "num":
            return tree[1]
        if kind == "sym":
            return self.point[tree[1]]
        if kind == "undefined":
            raise _Undefined
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
                    raise _Unknown
            elif abs(exponent + bits) > MAX_MAGNITUDE_BITS:
                raise _Unknown
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
            raise _Undefined
        if sign is None:
            raise _Imprecise
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
            raise _Undefined
        if base_sign == -1 and (isinstance(exponent, Fraction) or not self.contains_integer(exponent)):
            raise _Undefined   # a negative number to a non-integer power is not real
        raise _Imprecise

    def integer_power(self, base, n: int):
        if isinstance(base, Fraction):
            if base == 0 and n < 0:
                raise _Undefined
            if max(base.numerator.bit_length(), base.denominator.bit_length()) * abs(n) > MAX_EXACT_BITS:
                raise _Unknown
            return base ** n
        if n < 0 and self.sign(base) is None:
            raise _Imprecise
        if self.magnitude_bits(base) * abs(n) > MAX_MAGNITUDE_BITS:   # a tiny base is caught by checked()
            raise _Unknown
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
            raise _Unknown
        return self.checked(self.iv.exp(x))

    def log(self, x):
        sign = self.sign(x)
        if sign in (0, -1):
            raise _Undefined
        if sign is None:
            raise _Imprecise
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
            raise _Unknown
        return self.checked(function(x))


def _exact_root(value: Fraction, degree: int) -> Fraction | None:
    """value ** (1/degree) when it is rational (4/9 under a square root), else None."""
    if degree > MAX_EXPONENT:
        return None
    numerator, exact_numerator = sympy.integer_nthroot(value.numerator, degree)
    denominator, exact_denominator = sympy.integer_nthroot(value.denominator, degree)
    return Fraction(numerator, denominator) if exact_numerator and exact_denominator else None


# ---- where formulas are compared -----------------------------------------------------------------------

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
            values.append(_Evaluator(point, precision, deadline).value(tree))
        except _Undefined:
            values.append(UNDEFINED)
        except _OutOfTime:
            values.append(UNKNOWN)
            complete = False
        except _Imprecise:
            values.append(IMPRECISE)
        except (_Unknown, ArithmeticError, ValueError):   # mpmath's own refusals are unknowns too
            values.append(UNKNOWN)
    values = tuple(values)
    if complete:
        _VALUES.put(key, values)
    return values


def _compare_at(a, b, precision: int) -> str:
    """'equal', 'different' or 'unsure' for two defined values at one point."""
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return "equal" if a == b else "different"
    iv = _interval_context(precision)
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
    usable = [i for i, value in enumerate(reference) if not isinstance(value, _Marker)]
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
        if isinstance(student[i], _Marker):
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
        evaluator = _Evaluator(point, PRECISIONS[0], deadline)
        try:
            total = evaluator.add(total, evaluator.mul(Fraction(i + 2), evaluator.value(tree)))
        except (_Undefined, _Unknown, ArithmeticError, ValueError):
            return None
    if isinstance(total, Fraction):
        return total
    low, high = total._mpi_
    middle = (libmp.to_float(low) + libmp.to_float(high)) / 2
    return middle if math.isfinite(middle) else None

"""Reading a formula: the text through an AST whitelist into a small tree (`compile_formula`), never through
sympify/parse_expr/eval; and the same tree as a sympy expression (`parse_formula`), under the same limits."""
from __future__ import annotations

import ast
import math
import operator
from fractions import Fraction
from functools import lru_cache

import sympy

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

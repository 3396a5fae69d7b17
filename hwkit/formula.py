"""Student formulas: parsed through an AST whitelist into sympy, never through sympify/parse_expr.

Accepted: numbers, the symbols and functions a problem declares, + - * / ** (and ^ as power), unary
minus, parentheses; ^ is read as a power, with a power's precedence. No attributes, subscripts, keywords, comprehensions or strings. Equivalence is
decided by exact evaluation at random rational points plus simplification, under a hard time limit;
when neither can decide, the answer is "undecided", never "wrong"."""
from __future__ import annotations

import ast
import json
import multiprocessing
import random
from dataclasses import dataclass

import sympy

MAX_LENGTH = 1000
MAX_NODES = 600
MAX_EXPONENT = 64

FUNCTIONS = {
    "sqrt": sympy.sqrt, "exp": sympy.exp, "log": sympy.log, "ln": sympy.log,
    "tanh": sympy.tanh, "sin": sympy.sin, "cos": sympy.cos,
    "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)),
}
_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b, ast.Pow: lambda a, b: a ** b,
}


class FormulaError(ValueError):
    """The text is not a formula in the allowed language; the message says why, for the student."""


def _normalise(text: str) -> str:
    return (text.replace("×", "*").replace("·", "*").replace("⋅", "*").replace("−", "-")
            .replace("÷", "/").replace("^", "**").replace("²", "**2").replace("³", "**3").strip())


def parse_formula(text: str, symbols: dict[str, sympy.Symbol], functions: tuple[str, ...] = ()) -> sympy.Expr:
    if not isinstance(text, str):
        raise FormulaError("the answer must be a string such as \"K**2*C_in\"")
    text = _normalise(text)
    if not text:
        raise FormulaError("the formula is empty")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise FormulaError("the formula is not valid syntax (use * for products and ** for powers)") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise FormulaError("the formula is too long")
    allowed_functions = {name: FUNCTIONS[name] for name in functions}
    return _build(tree.body, symbols, allowed_functions)


def _build(node: ast.AST, symbols: dict, functions: dict) -> sympy.Expr:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return sympy.Rational(str(node.value)) if isinstance(node.value, float) else sympy.Integer(node.value)
    if isinstance(node, ast.Name):
        if node.id in symbols:
            return symbols[node.id]
        raise FormulaError(f"unknown name '{node.id}'; use only {', '.join(sorted(symbols))}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _build(node.operand, symbols, functions)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left = _build(node.left, symbols, functions)
        right = _build(node.right, symbols, functions)
        if isinstance(node.op, ast.Pow) and right.is_number and abs(right) > MAX_EXPONENT:
            raise FormulaError(f"exponents larger than {MAX_EXPONENT} are not allowed")
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError:
            raise FormulaError("the formula divides by zero") from None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in functions:
            raise FormulaError(f"function '{node.func.id}' is not allowed here")
        if len(node.args) != 1:
            raise FormulaError(f"'{node.func.id}' takes one argument")
        return functions[node.func.id](_build(node.args[0], symbols, functions))
    raise FormulaError(f"'{ast.unparse(node)[:40]}' is not allowed in a formula (arithmetic only)")


@dataclass(frozen=True)
class Equivalence:
    verdict: str   # "equal" | "different" | "undecided"


def _points(symbols: list[sympy.Symbol], count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{s: sympy.Rational(rng.randint(2, 40), rng.randint(1, 7)) for s in symbols} for _ in range(count)]


def _value_at(expr: sympy.Expr, point: dict) -> sympy.Expr:
    return expr.xreplace(point)


def _decide(student: sympy.Expr, reference: sympy.Expr) -> str:
    """Six random rational points that all agree (exactly, or to 1e-9 where irrational) mean equal
    beyond reasonable doubt; one that disagrees means different; simplification is the fallback."""
    symbols = sorted(student.free_symbols | reference.free_symbols, key=str)
    for point in _points(symbols, 6, seed=len(symbols) * 7919):
        a, b = _value_at(student, point), _value_at(reference, point)
        if a.is_Rational and b.is_Rational:
            if a != b:
                return "different"
            continue
        try:
            fa, fb = complex(sympy.N(a, 30)), complex(sympy.N(b, 30))
        except (TypeError, ValueError):
            break
        if abs(fa - fb) > 1e-9 * max(1.0, abs(fb)):
            return "different"
    else:
        return "equal"
    return "equal" if sympy.simplify(student - reference) == 0 else "undecided"


def _decide_in_child(conn, student: sympy.Expr, reference: sympy.Expr) -> None:
    conn.send(json.dumps(_decide(student, reference)))


def _tame(expr: sympy.Expr) -> bool:
    """Small, with only small rational powers: evaluation is quick and needs no time limit."""
    if sympy.count_ops(expr) > 200:
        return False
    return all(p.exp.is_Rational and abs(p.exp) <= 16 and p.exp.q <= 4 for p in expr.atoms(sympy.Pow))


def equivalent(student: sympy.Expr, reference: sympy.Expr, time_limit: float = 5.0) -> Equivalence:
    """Exact comparison at random rational points. Tame expressions are decided in-process; anything
    else runs in a forked child that is stopped at the time limit and reported as undecided (the fork
    start method hands the expressions over without serialising them)."""
    if student == reference:
        return Equivalence("equal")
    if _tame(student) and _tame(reference):
        return Equivalence(_decide(student, reference))
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_decide_in_child, args=(child, student, reference), daemon=True)
    proc.start()
    child.close()
    verdict = "undecided"
    if parent.poll(time_limit):
        try:
            verdict = json.loads(parent.recv())
        except (EOFError, ValueError):
            verdict = "undecided"
    proc.kill()
    proc.join()
    return Equivalence(verdict)


def fingerprint_value(expr: sympy.Expr, symbols: list[sympy.Symbol]) -> sympy.Expr:
    """One number that stands for the formula: a weighted sum of its values at fixed public points.
    Equivalent formulas give the same exact number; the formula itself cannot be read back from it."""
    total = sympy.Integer(0)
    for i, point in enumerate(_points(sorted(symbols, key=str), 3, seed=104729)):
        total += (i + 2) * _value_at(expr, point)
    return total

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
from hwkit.formula.compare import Equivalence, decide, equivalent, fingerprint_value
from hwkit.formula.read import (FUNCTIONS, MAX_DIGITS, MAX_EXPONENT, MAX_LENGTH, FormulaError, compile_formula,
                                parse_formula, reference_formula, tree_from_sympy)

__all__ = ["Equivalence", "FUNCTIONS", "FormulaError", "MAX_DIGITS", "MAX_EXPONENT", "MAX_LENGTH", "compile_formula",
           "decide", "equivalent", "fingerprint_value", "parse_formula", "reference_formula", "tree_from_sympy"]

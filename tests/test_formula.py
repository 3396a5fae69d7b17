"""Formulas from students are parsed through an AST whitelist and compared symbolically."""
import pytest
import sympy

from hwkit.checks import Formula
from hwkit.formula import FormulaError, equivalent, parse_formula

S = {n: sympy.Symbol(n, positive=True) for n in ("K", "C_in", "C_out", "n_in")}


@pytest.mark.parametrize("text", ["K**2*C_in*C_out + C_out", "C_out*(K^2*C_in+1)", "(K·K×C_in + 1)·C_out", "C_out + C_in*C_out*K*K"])
def test_equivalent_forms_are_equal(text):
    ref = S["K"] ** 2 * S["C_in"] * S["C_out"] + S["C_out"]
    assert equivalent(parse_formula(text, S), ref).verdict == "equal"


def test_different_formula_is_different():
    ref = S["K"] ** 2 * S["C_in"] * S["C_out"] + S["C_out"]
    assert equivalent(parse_formula("K**2*C_in*C_out", S), ref).verdict == "different"


@pytest.mark.parametrize("text", [
    "__import__('os').system('id')", "K.__class__", "C_in[0]", "open('x')", "lambda: 1", "[K for K in C_in]",
    "'K'", "K if C_in else C_out", "exp(K)", "x + 1", "K**1000", "K; C_in", "f(K=1)",
])
def test_whitelist_rejects(text):
    with pytest.raises(FormulaError):
        parse_formula(text, S)


def test_sqrt_allowed_when_declared():
    expr = parse_formula("sqrt(2/n_in)", S, ("sqrt",))
    assert equivalent(expr, sympy.sqrt(2) / sympy.sqrt(S["n_in"])).verdict == "equal"


def test_check_gives_notes():
    check = Formula(symbols=("K", "C_in", "C_out"))
    ref = "K**2*C_in*C_out + C_out"
    assert check.grade("C_out*(K**2*C_in + 1)", ref).note == "CORRECT"
    assert check.grade("K**2*C_in*C_out", ref).note == "FORMULA_NOT_EQUIVALENT"
    assert check.grade("K**2 *", ref).note == "FORMULA_UNPARSEABLE"
    assert check.grade(12, ref).note == "FORMULA_UNPARSEABLE"


def test_pathological_input_is_undecided_not_wrong():
    # A huge nested power takes exact evaluation far past the time limit.
    expr = parse_formula("((K+1)**64)**64", S)
    assert equivalent(expr, S["K"], time_limit=0.5).verdict in ("undecided", "different")


def test_fingerprints_match_for_equivalent_forms():
    check = Formula(symbols=("K", "C_in", "C_out"))
    canon = check.canonical("K**2*C_in*C_out + C_out")[""]
    assert canon in check.candidates("C_out*(1 + C_in*K*K)")[""]
    assert canon not in check.candidates("C_in*K*K*C_out")[""]

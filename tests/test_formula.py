"""Formulas from students are parsed through an AST whitelist and compared by evaluation; hostile or
careless answers neither earn points nor cost the grader more than a moment."""
import time

import pytest
import sympy

from hwkit.checks import Check, Formula, Reply, grade_reply
from hwkit.formula import FormulaError, equivalent, parse_formula
from hwkit.problem import Mistake, Part, say

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


# ---- a hostile or careless student ---------------------------------------------------------------------

CONV = Formula(symbols=("K", "C_in", "C_out"), functions=("sqrt", "log", "exp"))
CONV_REF = "K**2*C_in*C_out + C_out"


@pytest.mark.parametrize("text", [
    "1/0", "0/0", "0**-1", "0**(-1/2)", "log(0)", "1/(K-K)", "(K - K)**-2", "sqrt(-1)",
    f"{CONV_REF} + 0*log(0)", f"sqrt(-1)*0 + {CONV_REF}", f"{CONV_REF} + 0/(K-K)",
    f"({CONV_REF})*(C_in - C_in)/(C_in - C_in)", f"{CONV_REF} + 1/(1/0)", f"{CONV_REF} + 0*log(-K)",
    f"{CONV_REF} + log(K - K - 1)*0", f"{CONV_REF} + 0*(-1)**(1/2)",
])
def test_undefined_everywhere_is_wrong_with_its_own_note(text):
    outcome = CONV.grade(text, CONV_REF)
    assert (outcome.fraction, outcome.note, outcome.undecided) == (0.0, "FORMULA_UNDEFINED", False), text
    assert "undefined" in outcome.feedback["en"] and "无定义" in outcome.feedback["zh"]
    assert "。" in outcome.feedback["zh"] and "," not in outcome.feedback["zh"]


@pytest.mark.parametrize("text", [
    f"({CONV_REF})*(1 + 0**(K - 3))",              # 0**negative below K = 3
    f"{CONV_REF} + sqrt(K - 10) - sqrt(K - 10)",   # not real below K = 10
    f"{CONV_REF} + log(C_in - 5)*0",
    f"{CONV_REF} + (C_out - 2)/(C_out - 2) - 1 + 0*log(K - 7)",
    f"{CONV_REF} + 0*(K - 20)**(1/2)",
])
def test_undefined_at_some_points_is_wrong_with_its_own_note(text):
    outcome = CONV.grade(text, CONV_REF)
    assert (outcome.fraction, outcome.note) == (0.0, "FORMULA_UNDEFINED"), text


def test_zoo_and_friends_are_not_names():
    for text in ("zoo", "oo", "nan", "inf", "E", "pi", "I", f"{CONV_REF} + 0*zoo", "1e999", "-1e999"):
        assert CONV.grade(text, CONV_REF).note == "FORMULA_UNPARSEABLE", text


def test_a_reference_undefined_somewhere_uses_other_points():
    check = Formula(symbols=("p", "x"), functions=("sqrt",))
    # sqrt(1 - p) is not real for p > 1: those points are skipped, never counted against the student.
    assert check.grade("(1 - p)**(1/2)*x", "sqrt(1 - p)*x").note == "CORRECT"
    assert check.grade("sqrt(1 - p)*x + 1", "sqrt(1 - p)*x").note == "FORMULA_NOT_EQUIVALENT"
    assert check.grade("(x - p*x)/(1 - p)", "x").note == "CORRECT"   # undefined only at p = 1, outside the domain


def test_a_reference_undefined_everywhere_is_an_authoring_error():
    with pytest.raises(ValueError, match="reference"):
        CONV.grade("K", "1/(K - K)")
    with pytest.raises(ValueError, match="reference"):
        CONV.grade("K", "log(-K)")
    with pytest.raises(FormulaError):
        CONV.grade("K", "K +")


@pytest.mark.parametrize("text", [
    "((((10)**64)**64)**64)**64", "((((((((10)**64)**64)**64)**64)**64)**64)**64)**64",
    f"{CONV_REF} + 0*1e999", "1e308*10", "1e308", "9" * 900, f"{CONV_REF} + 0*" + "9" * 800,
    "2**64**64", "(2**64)**64", "((K**64)**64)**64", "(((((K + 1)**16 + 1)**16 + 1)**16 + 1)**16 + 1)**16",
    "((((((((K + 1)**64 + 1)**64 + 1)**64 + 1)**64 + 1)**64 + 1)**64 + 1)**64 + 1)**64",
    "2**(2**(2**(2**K)))", "exp(exp(exp(exp(K))))", "exp(10**90*K)", "log(exp(exp(exp(99))))",
    "10**(10**(10**K))", "K**(C_in**(C_out**64))", "(1/3)**64**64", "0.1**64**64",
    "-" * 400 + "K", "(" * 150 + "K" + ")" * 150, "(" * 300 + "K" + ")" * 300, "-" * 100_000 + "K",
    "K" + "*K" * 499, "+".join(["(K+1)**64"] * 100), "K" * 5000, "K\x00", "K\u2028+1",
    "*".join(f"(K + {i})**64" for i in range(1, 60)),
    "+".join(f"1/(K + {i})**64" for i in range(1, 40)),
])
def test_hostile_formulas_cost_little_grader_cpu(text):
    mistakes = [Mistake(f"M{i}", m, say("", "")) for i, m in enumerate(["K**2*C_in*C_out", "(K**2 + 1)*C_in*C_out", "(K**2 + 1)*C_out"])]
    part = Part("f", 1, say("", ""), probe=None, reference=lambda probe: CONV_REF, check=CONV, mistakes=lambda probe: mistakes)
    start = time.process_time()
    outcome = grade_reply(part, Reply(True, text), None)
    spent = time.process_time() - start
    assert outcome.note not in ("CORRECT", "GRADER_ERROR"), (text[:60], outcome)
    assert spent < 2.0, (text[:60], spent)


def test_power_tower_and_infinite_literals_are_rejected_with_a_reason():
    for text, reason in [("((((10)**64)**64)**64)**64", "digits"), (f"{CONV_REF} + 0*1e999", "finite"),
                         ("1e308*10", "digits"), ("9" * 900, "digits"), ("-" * 400 + "K", "nested")]:
        start = time.process_time()
        outcome = CONV.grade(text, CONV_REF)
        assert time.process_time() - start < 2.0
        assert outcome.note == "FORMULA_UNPARSEABLE" and reason in outcome.feedback["en"], (text[:40], outcome.feedback)


@pytest.mark.parametrize("text", [None, 12, 1.5, ["K"], {"K": 1}, b"K", True, sympy.Symbol("K")])
def test_non_string_answers_are_unparseable(text):
    assert CONV.grade(text, CONV_REF).note == "FORMULA_UNPARSEABLE"
    assert not CONV.well_formed(text)


def test_sympy_parse_is_bounded_too():
    for text in ["((((10)**64)**64)**64)**64", "((10**30*K)**64)**64", "(((K - K + 10**60)**64)**64)**64",
                 "K*10**60*10**60*10**60*10**60", "(" * 60 + "K" + ")**64" * 60]:
        start = time.process_time()
        with pytest.raises(FormulaError):
            parse_formula(text, S)
        assert time.process_time() - start < 2.0, text


@pytest.mark.parametrize("symbols,functions,reference,text", [
    (("K", "C_in", "C_out"), (), "K**2*C_in*C_out", "K^2*C_in*C_out"),
    (("K", "C_in", "C_out"), (), "K**2*C_in*C_out", "C_out*C_in*K*K"),
    (("K", "C_in", "C_out"), (), "K**2*C_in*C_out", "K²·C_in×C_out"),
    (("K", "C_in", "C_out"), (), "K**2*C_in*C_out", "(K*K*C_in*C_out*2)/2"),
    (("K", "C_in", "C_out"), (), "1/C_out + 1/K**2", "(K**2 + C_out)/(K**2*C_out)"),
    (("K", "C_in", "C_out"), (), "1/C_out + 1/K**2", "C_out**-1 + K**-2"),
    (("n_in", "n_out"), ("sqrt",), "2/(n_in + n_out)", "2/(n_out+n_in)"),
    (("n_in", "n_out"), ("sqrt",), "2/(n_in + n_out)", "1/((n_in + n_out)/2)"),
    (("n_in", "n_out"), ("sqrt",), "sqrt(2/n_in)", "sqrt(2)/sqrt(n_in)"),
    (("n_in", "n_out"), ("sqrt",), "sqrt(2/n_in)", "(2/n_in)**0.5"),
    (("n_in", "n_out"), ("sqrt",), "sqrt(2/n_in)", "(2*n_in)**(1/2)/n_in"),
    (("n_in", "n_out"), ("sqrt",), "2/n_in", "sqrt(2/n_in)**2"),
    (("n_in", "n_out"), ("sqrt",), "2/n_in", "sqrt(4/n_in**2)*1.0"),
    (("d1", "d2"), (), "(d1 + 1)*(d2 + 1)", "d1*d2 + d1 + d2 + 1"),
    (("d1", "d2", "d3"), (), "(d1 + 1)*(d2 + 1)*(d3 + 1)", "1 + d1 + d2 + d3 + d1*d2 + d1*d3 + d2*d3 + d1*d2*d3"),
    (("p", "x"), (), "x", "(1 - p)*x/(1 - p)"),
    (("p", "x"), (), "x", "x*(1 - p) * 1/(1 - p) + 0*p"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "tanh(x)", "(exp(2*x) - 1)/(exp(2*x) + 1)"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "sigmoid(x)", "1/(1 + exp(-x))"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "x", "log(exp(x))"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "2*x", "log(exp(x)**2)"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "exp(x)", "exp(x + 100) / exp(100)"),
    (("x",), ("exp", "log", "tanh", "sigmoid"), "x + 1", "x + exp(2*x) + 1 - exp(2*x)"),   # cancellation
    (("x",), ("sin", "cos"), "1", "sin(x)**2 + cos(x)**2"),
])
def test_correct_answers_written_any_reasonable_way_are_equal(symbols, functions, reference, text):
    assert Formula(symbols=symbols, functions=functions).grade(text, reference).note == "CORRECT", text


@pytest.mark.parametrize("reference,text", [
    ("sqrt(2/n_in)", "sqrt(2/n_in) + 1e-12"),
    ("sqrt(2/n_in)", "sqrt(2/n_in)*(1 + 1e-15)"),
    ("2/(n_in + n_out)", "2/(n_in + n_out) + 1e-30"),
    ("2/(n_in + n_out)", "2/(n_in + n_out) + 1/(n_in + 10**30)"),
    ("2/n_in", "2/n_in + exp(-n_in*10)"),
])
def test_almost_right_is_not_equal(reference, text):
    check = Formula(symbols=("n_in", "n_out"), functions=("sqrt", "exp"))
    assert check.grade(text, reference).note == "FORMULA_NOT_EQUIVALENT", text


def test_what_cannot_be_decided_in_time_is_undecided_never_wrong_or_equal():
    check = Formula(symbols=("a_slow", "b_slow"), time_limit=1e-6)
    for text in ("a_slow*b_slow + 1", "a_slow + b_slow"):
        outcome = check.grade(text, "a_slow*b_slow + 1")
        assert (outcome.note, outcome.needs_review, outcome.undecided) == ("FORMULA_UNDECIDED", True, True)
    # what timed out once is decided again with time to spare (nothing undecided is remembered)
    assert Formula(symbols=("a_slow", "b_slow")).grade("b_slow*a_slow + 1", "a_slow*b_slow + 1").note == "CORRECT"


@pytest.mark.parametrize("text", [
    "((((K + 1)**64 + 1)**64 + 1)**64 + C_in)/(((K + 1)**64 + 1)**64 + 1)**64",
    f"{CONV_REF} + exp(exp(K)) - exp(exp(K))",   # right as written, but exp(exp(40)) is beyond any bound
])
def test_too_large_to_evaluate_is_undecided(text):
    outcome = CONV.grade(text, CONV_REF)
    assert outcome.note == "FORMULA_UNDECIDED" and outcome.needs_review


def test_each_answer_is_parsed_once(monkeypatch):
    import ast as ast_module

    calls = []
    real_parse = ast_module.parse
    monkeypatch.setattr(ast_module, "parse", lambda text, *a, **k: calls.append(text) or real_parse(text, *a, **k))
    text = "C_out*(K**2*C_in + 1) + 0*C_in*71"     # unique to this test, so no earlier grading cached it
    mistakes = [Mistake(f"M{i}", m, say("", "")) for i, m in enumerate(["K**2*C_in*C_out", "(K**2 + 1)*C_out"])]
    part = Part("f", 1, say("", ""), probe=None, reference=lambda probe: CONV_REF, check=CONV, mistakes=lambda probe: mistakes)
    for answer in (text, text, "K**2*C_in*C_out + 0*C_in*71"):
        grade_reply(part, Reply(True, answer), None)
    assert sum(1 for t in calls if "71" in t) == 2


def test_an_undecided_answer_is_not_matched_against_known_mistakes():
    check = Formula(symbols=("K", "C_in", "C_out"), time_limit=1e-6)
    mistakes = [Mistake("FORMULA_NO_BIAS", "K**2*C_in*C_out", say("", ""))]
    part = Part("f", 1, say("", ""), probe=None, reference=lambda probe: CONV_REF, check=check, mistakes=lambda probe: mistakes)
    outcome = grade_reply(part, Reply(True, "K**2*C_in*C_out*1"), None)
    assert (outcome.note, outcome.needs_review) == ("FORMULA_UNDECIDED", True)


# ---- a check that raises costs only its own part -------------------------------------------------------

class _Exploding(Check):
    def grade(self, got, want):
        raise ZeroDivisionError("inside the check")


def _part(**changes) -> Part:
    fields = dict(id="p", points=2, title=say("", ""), probe=None, reference=lambda probe: "K", check=CONV)
    return Part(**{**fields, **changes})


def _boom(*args):
    raise KeyError("boom")


@pytest.mark.parametrize("part", [
    _part(check=_Exploding()),
    _part(reference=_boom),
    _part(interpret=lambda value, probe: _boom()),
    _part(mistakes=_boom),
    _part(mistakes=lambda probe: [Mistake("M", "K +", say("", ""))]),   # a broken known mistake
    _part(reference=lambda probe: "1/(K - K)"),                             # a reference undefined everywhere
    _part(reference=lambda probe: object()),
])
def test_an_exception_while_grading_costs_only_that_part(part):
    outcome = grade_reply(part, Reply(True, "K + 1"), None)
    assert (outcome.fraction, outcome.note, outcome.needs_review) == (0.0, "GRADER_ERROR", True)
    assert "Error" in outcome.feedback["en"] and "Error" in outcome.feedback["zh"]
    assert "。" in outcome.feedback["zh"]
    # the next part is graded as usual
    assert grade_reply(_part(), Reply(True, "K"), None).note == "CORRECT"

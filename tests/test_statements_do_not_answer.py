"""A statement must not answer its own parts. Every problem's starter (all its cells, as a student sees them) is
rendered in both languages for a few variants and searched for the answers of its own parts: each formula part's
reference, normalised (spaces, parentheses and multiplication signs dropped, `**`/`^` unified, LaTeX and symbol
spellings folded), and, outside each written part's own question, the clauses of its model answer."""
from __future__ import annotations

import random
import re
import unicodedata

import pytest

from hwkit.bank import load_bank
from hwkit.checks import Formula, Rubric, normalise_text
from hwkit.render import render_problem_cells

BANK = load_bank()
SEEDS = (0, 1, 2)
# The same quantity under the statements' other names.
ALIASES = {"fan_in": "n_in", "fan_out": "n_out", "fan-in": "n_in", "fan-out": "n_out"}
# A formula too short to search for (a bare symbol) can still be given away in words.
ANSWERS_IN_WORDS = {
    "q_drop_expect": ("the same in training and at test", "expected output of every unit is the same",
                      "训练和测试时相同", "期望在训练和测试时相同"),
}
# Questions that ask to restate what the statement specifies for its code parts: a diagram of the block the code
# builds, the two steps of a depthwise separable convolution "in your own words".
RESTATED_FROM_THE_STATEMENT = {"resnet_diagram", "lstm_diagram", "ds_principle"}
CJK = "\u3400-\u4dbf\u4e00-\u9fff"
SHORTEST_FORMULA = 4   # characters, normalised: shorter ones (a bare symbol) match prose by chance


def statement(problem, params: dict, lang: str) -> str:
    variables = {"lang": lang, "solution": False, "number": 1, "points": "1", "params": params,
                 **problem.context(params)}
    return "\n".join(cell.source for cell in render_problem_cells(problem.template, problem.id, variables))


def formula_text(text: str) -> str:
    """Math as written anywhere (a Python string, prose, LaTeX) in one spelling, parentheses dropped."""
    text = text.replace("²", "^2").replace("³", "^3")
    text = unicodedata.normalize("NFKC", text)
    text = re.sub(r"_\{([^{}]*)\}", r"_\1", text)
    text = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text)
    for alias, name in ALIASES.items():
        text = text.replace(alias, name)
    for old, new in (("**", "^"), ("\\sigma", "sigmoid"), ("σ", "sigmoid"), ("\\cdot", ""), ("\\times", ""),
                     ("−", "-"), ("×", ""), ("·", ""), ("⋅", ""), ("*", "")):
        text = text.replace(old, new)
    return re.sub(r"[\s$`\"'{}()\\]", "", text)


def formula_forms(part, reference: str) -> set[str]:
    forms = {formula_text(reference), formula_text(str(part.check.parse(reference)))}
    return {f for f in forms if len(f) >= SHORTEST_FORMULA}


def key_phrases(model_answer: str) -> list[str]:
    """The model answer's clauses long enough to say something (not a topic word), normalised as rubrics read."""
    clauses = re.split(r"[，。；：、,.;:!?！？()（）\n]", normalise_text(model_answer))
    return [c.strip() for c in clauses if len(re.findall(f"[{CJK}]", c)) >= 8 or len(c.split()) >= 5]


def around_question(text: str, part_id: str) -> str:
    """The statement without the question itself (the lines that name the part's variable): a question names
    its topic, the rest of the statement must not explain it."""
    return "\n".join(line for line in text.splitlines() if part_id not in line)


def giveaways(problem, params: dict, text: str) -> list[str]:
    found, plain, words = [], formula_text(text), text.casefold()
    for part in problem.parts(params):
        if isinstance(part.check, Formula):
            reference = part.reference(part.probe(random.Random(0)))
            found += [f"{part.id}: formula {form}" for form in formula_forms(part, reference) if form in plain]
            found += [f"{part.id}: in words '{w}'" for w in ANSWERS_IN_WORDS.get(part.id, ()) if w.casefold() in words]
        if isinstance(part.check, Rubric) and part.id not in RESTATED_FROM_THE_STATEMENT:
            rest = normalise_text(around_question(text, part.id))
            model = part.reference(part.probe(random.Random(0)))
            found += [f"{part.id}: model answer's '{p}'" for p in key_phrases(model) if p in rest]
    return found


@pytest.mark.parametrize("problem_id", sorted(BANK))
def test_no_statement_answers_its_own_parts(problem_id):
    problem = BANK[problem_id]
    found = []
    for seed in SEEDS:
        params = problem.sample(random.Random(seed))
        for lang in ("en", "zh"):
            found += [f"{lang} seed {seed}: {g}" for g in giveaways(problem, params, statement(problem, params, lang))]
    assert not found, found


def test_the_search_finds_an_answer_given_in_latex_or_prose():
    problem = BANK["weight-init"]
    params = problem.sample(random.Random(0))
    assert giveaways(problem, params, r"the variance is $\frac{2}{n_{in} + n_{out}}$")
    assert giveaways(problem, params, "with variance 2 / fan_in for He")
    assert not giveaways(problem, params, "Give the variance in the symbols n_in and n_out.")

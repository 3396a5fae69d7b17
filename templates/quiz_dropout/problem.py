"""Quiz: dropout's scaling and expected values (inverted dropout as nn.Dropout does it; p = drop probability)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Formula, Number
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import DROPOUT_EXPECTATION, dropout_expected_train_output, dropout_torch_scale

NUMBER = Number(rel=2e-3)
FORMULA = Formula(symbols=("p", "x"))


# p = 0.05, 0.08 and 0.25 are left out: 2/lambda for a whole eigenvalue lambda (40, 25, 8), answers of
# quiz-max-lr, and the release folder must not contain any answer.
DROP_PROBABILITIES = [k / 100 for k in range(5, 81) if k not in (5, 8, 25)]


def sample(rng: random.Random) -> dict:
    """a has one decimal, not two: a two-decimal a (13.15) holds a three-significant-digit number (3.15) that the
    rounded form of some answer of another item matches by coincidence now and then (the release folder must not
    contain any answer); one-decimal tails (3.1) are too short to count. a >= 0.5 keeps the mean (1 - p)*a, exact
    to three decimals, at 0.1 or more (no 0.03 like a learning rate elsewhere), and the few a whose mean is p
    itself, 0.99 or 0.999 (the start of beta2 = 0.999 in quiz-momentum-adam) are left out: 73 x ~1495 variants."""
    p = rng.choice(DROP_PROBABILITIES)
    keep = 100 - round(p * 100)   # (1 - p)*a = keep * (10*a) / 1000, exactly
    tenths = [t for t in range(5, 1500) if keep * t not in (10 * round(p * 100), 990, 999)]
    return {"p": p, "a": rng.choice(tenths) / 10}


def note(params: dict) -> str:
    return f"p={params['p']} a={params['a']}"


def answers(params: dict) -> dict:
    return {"q_drop_scale": dropout_torch_scale(params["p"]),
            "q_drop_plain_mean": dropout_expected_train_output(params["a"], params["p"], inverted=False),
            "q_drop_expect": DROPOUT_EXPECTATION}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    p, a = params["p"], params["a"]
    scale_mistakes = distinct_mistakes(ref["q_drop_scale"], check=NUMBER, mistakes=[
        Mistake("DROPOUT_KEEP_DROP_SWAPPED", 1 / p, say("p is the probability of DROPPING a unit; the keep probability is 1 − p.",
                                                      "p 是丢弃一个单元的概率；保留概率是 1 − p。")),
        Mistake("DROPOUT_SCALE_BY_KEEP", 1 - p, say("Kept units are divided by 1 − p (scaled up), not multiplied by it.",
                                                  "被保留的单元要除以 1 − p（放大），而不是乘以它。")),
    ])
    mean_mistakes = distinct_mistakes(ref["q_drop_plain_mean"], check=NUMBER, mistakes=[
        Mistake("DROPOUT_KEEP_DROP_SWAPPED", p * a, say("A unit survives with probability 1 − p, not p.", "单元以 1 − p 的概率被保留，而不是 p。")),
        Mistake("DROPOUT_ASSUMED_INVERTED", a, say("Without the 1/(1 − p) scale the mean shrinks to (1 − p)·a.",
                                                   "没有 1/(1 − p) 的缩放时，均值缩小为 (1 − p)·a。")),
    ])
    formula_mistakes = [
        Mistake("DROPOUT_FORGOT_SCALE", "(1 - p)*x", say("The 1/(1 − p) scale cancels the keep probability: the mean is x.",
                                                        "1/(1 − p) 的缩放正好抵消保留概率：期望就是 x。")),
        Mistake("DROPOUT_KEEP_DROP_SWAPPED", "p*x/(1 - p)", say("A unit is kept with probability 1 − p.", "单元以 1 − p 的概率被保留。")),
        Mistake("DROPOUT_DOUBLE_SCALE", "x/(1 - p)", say("That is the value of a kept unit, not the mean over the mask.",
                                                          "这是被保留单元的取值，不是对掩码求平均后的期望。")),
    ]
    return [
        variable_part("q_drop_scale", 1, say("Scale of kept units", "保留单元的缩放系数"),
             answer=ref["q_drop_scale"], check=NUMBER, mistakes=scale_mistakes),
        variable_part("q_drop_plain_mean", 1, say("Mean output without rescaling", "不缩放时输出的期望"),
             answer=ref["q_drop_plain_mean"], check=NUMBER, mistakes=mean_mistakes),
        variable_part("q_drop_expect", 1, say("Expected output of inverted dropout (formula)", "inverted dropout 输出的期望（公式）"),
             answer=ref["q_drop_expect"], check=FORMULA, mistakes=formula_mistakes, kind="formula"),
    ]


PROBLEM = Problem(
    id="quiz-dropout",
    title=say("Quiz: dropout scaling", "小测:Dropout 的缩放"),
    points=3, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

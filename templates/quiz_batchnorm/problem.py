"""Quiz: BatchNorm forward in training mode on a small batch, and the running variance after the step."""
from __future__ import annotations

import math
import random
from pathlib import Path

from hwkit.checks import Array
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import batchnorm_formula, batchnorm_train, running_var_formula

EPS, MOMENTUM = 1e-5, 0.1


def _rounds_short(values: list[int]) -> bool:
    """True when some output of this column would be a short decimal. An entry at the column mean has x̂ = 0 and
    outputs exactly β; and when n*Σx² - (Σx)² is a perfect square the whole column's x̂ are fractions (±1, ±1/2,
    3/4 ...), so that γ·x̂ + β rounds, at 4 significant digits, to a one- or two-decimal number such as -1.3."""
    n, total = len(values), sum(values)
    spread = n * sum(v * v for v in values) - total * total
    return any(n * v == total for v in values) or math.isqrt(spread) ** 2 == spread


def _column(rng: random.Random, n: int) -> list[int]:
    """n whole numbers in [-9, 9] whose outputs do not round to short decimals (see _rounds_short): such a number
    turns up, by coincidence, in some other statement of the quiz (a logit, a weight), and the release folder
    must not contain any answer. The first n - 2 values are free, the next one is not equal to all of them (four
    equal values and a fifth always give a perfect square) and the last one is drawn from the values that keep
    the column clear; with the first n - 1 values not all equal at least 13 of the 19 qualify, for every n in
    3..6 (checked over all columns: by construction, no rejection). Whole numbers, not one-decimal ones: the
    outputs are irrational and about one in a hundred still rounds to a one-decimal number; a statement full of
    one-decimal inputs such as -1.3 would contain it too often."""
    values = [rng.randint(-9, 9) for _ in range(n - 2)]
    values.append(rng.choice([v for v in range(-9, 10) if len(set(values)) > 1 or v != values[0]]))
    values.append(rng.choice([v for v in range(-9, 10) if not _rounds_short(values + [v])]))
    return values


def sample(rng: random.Random) -> dict:
    n, f = rng.randint(3, 6), rng.randint(2, 3)
    columns = [_column(rng, n) for _ in range(f)]
    return {"x": [[column[i] for column in columns] for i in range(n)],
            "gamma": [rng.randint(5, 20) / 10 for _ in range(f)], "beta": [rng.randint(-9, 9) / 10 for _ in range(f)]}


def note(params: dict) -> str:
    return f"x={params['x']} gamma={params['gamma']} beta={params['beta']}"


def answers(params: dict) -> dict:
    out = batchnorm_train(params["x"], params["gamma"], params["beta"], EPS, MOMENTUM)
    return {"q_bn_y": out["y"].tolist(), "q_bn_running_var": out["running_var"].tolist()}


Y_CHECK = Array(rtol=1e-4, atol=1e-4)
VAR_CHECK = Array(rtol=1e-5, atol=1e-8)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    x, g, b = params["x"], params["gamma"], params["beta"]
    y_mistakes = distinct_mistakes(ref["q_bn_y"], check=Y_CHECK, mistakes=[
        Mistake("BN_UNBIASED_VAR", batchnorm_formula(x, g, b, EPS, unbiased=True).tolist(),
                say("Normalisation uses the biased batch variance (divide by N, not N − 1).", "归一化使用有偏的批方差（除以 N,而不是 N − 1）。")),
        Mistake("BN_NO_AFFINE", batchnorm_formula(x, g, b, EPS, affine=False).tolist(),
                say("Finish with the affine step y = γ·x̂ + β.", "最后还要做仿射变换 y = γ·x̂ + β。")),
        Mistake("BN_PER_SAMPLE", batchnorm_formula(x, g, b, EPS, axis=1).tolist(),
                say("BatchNorm normalises each feature over the batch (down a column), not each sample over its features.",
                    "BatchNorm 对每个特征在批内（按列）归一化，而不是对每个样本在特征间归一化。")),
    ])
    var_mistakes = distinct_mistakes(ref["q_bn_running_var"], check=VAR_CHECK, mistakes=[
        Mistake("BN_RUNNING_BIASED_VAR", running_var_formula(x, MOMENTUM, unbiased=False).tolist(),
                say("PyTorch updates running_var with the unbiased batch variance (N − 1).", "PyTorch 用无偏批方差（N − 1）更新 running_var。")),
        Mistake("BN_MOMENTUM_SWAPPED", running_var_formula(x, MOMENTUM, swapped=True).tolist(),
                say("In PyTorch momentum weighs the NEW statistic: running = (1 − m)·running + m·batch.",
                    "PyTorch 中 momentum 是新统计量的权重:running = (1 − m)·running + m·batch。")),
        Mistake("BN_RUNNING_IS_BATCH", running_var_formula(x, 1.0).tolist(),
                say("The running variance is a moving average starting from 1, not the batch variance itself.",
                    "running_var 是从 1 开始的滑动平均，而不是批方差本身。")),
    ])
    return [
        variable_part("q_bn_y", 2, say("BatchNorm output", "BatchNorm 的输出"),
             answer=ref["q_bn_y"], check=Y_CHECK, mistakes=y_mistakes),
        variable_part("q_bn_running_var", 1, say("running_var after the step", "这一步之后的 running_var"),
             answer=ref["q_bn_running_var"], check=VAR_CHECK, mistakes=var_mistakes),
    ]


def context(params: dict) -> dict:
    return {"eps": EPS, "momentum": MOMENTUM, "n": len(params["x"]), "f": len(params["x"][0])}


PROBLEM = Problem(
    id="quiz-batchnorm",
    title=say("Quiz: batch normalisation forward pass", "小测：批量归一化的前向计算"),
    points=3, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

"""Quiz: softmax of a logit vector and the cross-entropy loss for one class."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Number
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import cross_entropy, softmax


def sample(rng: random.Random) -> dict:
    """Logits in [0, 8] (softmax depends only on their differences): a negative one-decimal logit such as -1.6
    is hit, by coincidence, by any answer of another item that rounds to it at 4 significant digits, and the
    release folder must not contain any answer; 1.6 is too short to count."""
    k = rng.randint(3, 6)
    return {"logits": [rng.randint(0, 80) / 10 for _ in range(k)], "target": rng.randrange(k)}


def note(params: dict) -> str:
    return f"z={params['logits']} t={params['target']}"


def answers(params: dict) -> dict:
    return {"q_softmax_probs": softmax(params["logits"]).tolist(),
            "q_softmax_ce": cross_entropy(params["logits"], params["target"])}


PROBS = Array(rtol=1e-4, atol=1e-6)
LOSS = Number(rel=2e-3)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    z, t = np.asarray(params["logits"], dtype=np.float64), params["target"]
    p = np.asarray(ref["q_softmax_probs"])
    prob_mistakes = distinct_mistakes(ref["q_softmax_probs"], check=PROBS, mistakes=[
        Mistake("SOFTMAX_GAVE_LOG_PROBS", (z - z.max() - math.log(np.exp(z - z.max()).sum())).tolist(),
                say("Those are log-probabilities (log_softmax); softmax is exp(z_i)/Σ_j exp(z_j).",
                    "这是对数概率(log_softmax);softmax 是 exp(z_i)/Σ_j exp(z_j)。")),
        Mistake("SOFTMAX_SIGMOID", (1 / (1 + np.exp(-z))).tolist(),
                say("An element-wise sigmoid does not sum to 1; softmax normalises over all classes.",
                    "逐元素的 sigmoid 之和不为 1;softmax 要在所有类别上归一化。")),
        Mistake("SOFTMAX_NO_EXP", (z / z.sum()).tolist() if abs(z.sum()) > 1e-9 else [0.0] * len(z),
                say("Exponentiate first: softmax is exp(z_i)/Σ_j exp(z_j).", "要先取指数:softmax 是 exp(z_i)/Σ_j exp(z_j)。")),
    ])
    loss_mistakes = distinct_mistakes(ref["q_softmax_ce"], check=LOSS, mistakes=[
        Mistake("CE_LOG10", -math.log10(p[t]), say("Cross-entropy uses the natural logarithm (as PyTorch does).",
                                                   "交叉熵使用自然对数（与 PyTorch 一致）。")),
        Mistake("CE_FORGOT_MINUS", math.log(p[t]), say("The loss is −log p_t: a loss is never negative here.",
                                                       "损失是 −log p_t:这里的损失不可能为负。")),
        Mistake("CE_ONE_BASED_CLASS", -math.log(p[t - 1]) if t > 0 else -math.log(p[-1]),
                say("Classes are numbered from 0.", "类别从 0 开始编号。")),
    ])
    return [
        variable_part("q_softmax_probs", 2, say("Softmax probabilities", "softmax 概率"),
             answer=ref["q_softmax_probs"], check=PROBS, mistakes=prob_mistakes),
        variable_part("q_softmax_ce", 1, say("Cross-entropy loss", "交叉熵损失"),
             answer=ref["q_softmax_ce"], check=LOSS, mistakes=loss_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-softmax-ce",
    title=say("Quiz: softmax and cross-entropy", "小测:softmax 与交叉熵"),
    points=3, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

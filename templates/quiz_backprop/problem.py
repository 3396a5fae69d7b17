"""Quiz: backpropagation through a tiny two-layer sigmoid network by hand (notes 01-02: the chain rule)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Number
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import backprop_forward, backprop_grads


# Parameters in [-0.9, 2.0]: a negative statement number of four characters such as -1.6 is hit, by coincidence,
# by any answer of another item that rounds to it at 4 significant digits (a BatchNorm output -1.60004), and the
# release folder must not contain any answer; -0.6 is hit ten times less often, 1.6 is too short to count.
NONZERO = [k / 10 for k in range(-9, 21) if k != 0]


def sample(rng: random.Random) -> dict:
    """x, w1 and w2 are nonzero by construction, so both gradients are nonzero."""
    return {"x": rng.choice(NONZERO), "w1": rng.choice(NONZERO), "b1": rng.randint(-9, 20) / 10,
            "w2": rng.choice(NONZERO), "b2": rng.randint(-9, 20) / 10, "y": rng.randint(0, 10) / 10}


def note(params: dict) -> str:
    return " ".join(f"{k}={params[k]}" for k in ("x", "w1", "b1", "w2", "b2", "y"))


def _args(params: dict):
    return tuple(params[k] for k in ("x", "w1", "b1", "w2", "b2", "y"))


def answers(params: dict) -> dict:
    g = backprop_grads(*_args(params))
    return {"q_bp_dw1": g["dw1"], "q_bp_dw2": g["dw2"]}


# Where y-hat nearly equals y the gradient nearly vanishes, and float32 (torch's default dtype) gets it right only to
# within what an error of ~1e-7 in y-hat makes of it, far more than 0.2 % of a gradient near 0: over all 241 million
# variants (computed in float32 and float64) the worst float32 reply is off by 8.7e-8 * |d grad / d y-hat| beyond
# rel 2e-3. Each part also accepts YHAT_TOL (11 times that) in y-hat, scaled by its own sensitivity; a known mistake
# is then taken for the answer only where y-hat is within ~2e-6 of y (about 1 variant in 100,000).
YHAT_TOL = 1e-6


def _check(sensitivity: float) -> Number:
    """rel 2e-3, and an absolute YHAT_TOL * |d grad / d y-hat| (at y-hat = y) for the gradients near 0."""
    return Number(rel=2e-3, abs=max(YHAT_TOL * abs(sensitivity), 1e-12))


FEEDBACK = {
    "BACKPROP_DROPPED_2": say("d/dŷ (ŷ − y)² = 2(ŷ − y): keep the factor 2.", "d/dŷ (ŷ − y)² = 2(ŷ − y)：不要丢掉因子 2。"),
    "BACKPROP_NO_SIGMOID_DERIV": say("ŷ = σ(z2): the chain passes through σ'(z2) = ŷ(1 − ŷ).", "ŷ = σ(z2)：链式法则要经过 σ'(z2) = ŷ(1 − ŷ)。"),
    "BACKPROP_SIGN": say("The sign is off: dL/dŷ = 2(ŷ − y), not 2(y − ŷ).", "符号反了:dL/dŷ = 2(ŷ − y)，而不是 2(y − ŷ)。"),
}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    args = _args(params)
    variants = {"BACKPROP_DROPPED_2": backprop_grads(*args, factor_two=False),
                "BACKPROP_NO_SIGMOID_DERIV": backprop_grads(*args, output_sigmoid_deriv=False),
                "BACKPROP_SIGN": backprop_grads(*args, sign=-1)}
    fwd = backprop_forward(*args)
    h, yhat, x, w2, y = fwd["h"], fwd["yhat"], params["x"], params["w2"], params["y"]
    delta = 2 * (yhat - y) * yhat * (1 - yhat)
    check2 = _check(2 * yhat * (1 - yhat) * h)                       # dw2 = 2 (y-hat - y) y-hat (1 - y-hat) h
    check1 = _check(2 * yhat * (1 - yhat) * w2 * h * (1 - h) * x)   # dw1 = the same, times w2 h (1 - h) x
    dw1_mistakes = distinct_mistakes(ref["q_bp_dw1"], check=check1, mistakes=[Mistake(k, v["dw1"], FEEDBACK[k]) for k, v in variants.items()] + [
        Mistake("BACKPROP_NO_HIDDEN_DERIV", delta * w2 * x,
                say("h = σ(z1): include σ'(z1) = h(1 − h) on the way to w1.", "h = σ(z1)：求 w1 的梯度时要乘 σ'(z1) = h(1 − h)。")),
        Mistake("BACKPROP_FORGOT_W2", delta * h * (1 - h) * x,
                say("The path from ŷ back to h goes through the weight w2: dz2/dh = w2.", "从 ŷ 回到 h 要经过权重 w2:dz2/dh = w2。")),
    ])
    dw2_mistakes = distinct_mistakes(ref["q_bp_dw2"], check=check2, mistakes=[Mistake(k, v["dw2"], FEEDBACK[k]) for k, v in variants.items()] + [
        Mistake("BACKPROP_USED_X", delta * x, say("dz2/dw2 is the hidden activation h, not the input x.", "dz2/dw2 是隐藏层激活 h,而不是输入 x。")),
    ])
    return [
        variable_part("q_bp_dw1", 2, say("dL/dw1", "dL/dw1"),
             answer=ref["q_bp_dw1"], check=check1, mistakes=dw1_mistakes),
        variable_part("q_bp_dw2", 2, say("dL/dw2", "dL/dw2"),
             answer=ref["q_bp_dw2"], check=check2, mistakes=dw2_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-backprop",
    title=say("Quiz: backpropagation by hand", "小测：手算反向传播"),
    points=4, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

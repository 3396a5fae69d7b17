"""Quiz: two heavy-ball momentum steps and one Adam step (notes: optimisers, Adam = momentum + RMSProp + bias correction)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.quiz import adam_step, adam_step_formula, distinct, momentum_ema_steps, momentum_steps


def _vec(rng: random.Random, lo: int, hi: int, nonzero: bool = False) -> list[float]:
    """Three one-decimal numbers in [lo/10, hi/10]; nonzero ones drawn as sign * magnitude (no rejection)."""
    if nonzero:
        return [rng.choice([-1, 1]) * rng.randint(1, hi) / 10 for _ in range(3)]
    return [rng.randint(lo, hi) / 10 for _ in range(3)]


def sample(rng: random.Random) -> dict:
    return {"x0": _vec(rng, -20, 20), "g1": _vec(rng, -30, 30, nonzero=True), "g2": _vec(rng, -30, 30, nonzero=True),
            "lr": rng.choice([0.01, 0.05, 0.1, 0.2]), "beta": rng.choice([0.5, 0.8, 0.9, 0.95]),
            "adam_lr": rng.choice([0.001, 0.01, 0.05, 0.1]), "beta1": rng.choice([0.8, 0.9]),
            "beta2": rng.choice([0.999, 0.9999]), "eps": 1e-8}


def note(params: dict) -> str:
    p = params
    return (f"x0={p['x0']} g1={p['g1']} g2={p['g2']} lr={p['lr']} beta={p['beta']} "
            f"adam lr={p['adam_lr']} b1={p['beta1']} b2={p['beta2']}")


def answers(params: dict) -> dict:
    p = params
    return {"q_mom_x2": momentum_steps(p["x0"], [p["g1"], p["g2"]], p["lr"], p["beta"]).tolist(),
            "q_adam_x1": adam_step(p["x0"], p["g1"], p["adam_lr"], p["beta1"], p["beta2"], p["eps"]).tolist()}


CHECK = Array(rtol=1e-5, atol=1e-8)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    p = params
    x0, g1, g2 = (np.asarray(p[k], dtype=np.float64) for k in ("x0", "g1", "g2"))
    lr, beta = p["lr"], p["beta"]
    adam = (p["x0"], p["g1"], p["adam_lr"], p["beta1"], p["beta2"], p["eps"])
    mom_mistakes = distinct(CHECK, ref["q_mom_x2"], [
        Mistake("MOMENTUM_IGNORED", (x0 - lr * (g1 + g2)).tolist(),
                say("That is plain SGD: with momentum the second step uses v2 = β·v1 + g2.", "这是普通 SGD:有动量时第二步用 v2 = β·v1 + g2。")),
        Mistake("MOMENTUM_DAMPENED", momentum_ema_steps(p["x0"], [p["g1"], p["g2"]], lr, beta).tolist(),
                say("You averaged v = βv + (1−β)g; this convention (PyTorch's) is v = βv + g.", "你用了 v = βv + (1−β)g;本题(PyTorch)的约定是 v = βv + g。")),
        Mistake("MOMENTUM_ONE_STEP", (x0 - lr * g1).tolist(), say("Take both steps.", "要做两步。")),
        Mistake("MOMENTUM_WRONG_SIGN", (x0 + lr * g1 + lr * (beta * g1 + g2)).tolist(),
                say("Momentum still moves against the gradient: x = x − lr·v.", "动量法同样沿负梯度方向移动:x = x − lr·v。")),
    ])
    adam_mistakes = distinct(CHECK, ref["q_adam_x1"], [
        Mistake("ADAM_NO_BIAS_CORRECTION", adam_step_formula(*adam, bias_correction=False).tolist(),
                say("Divide m by (1−β1ᵗ) and v by (1−β2ᵗ) (bias correction, t = 1).", "要做偏差修正:m 除以 (1−β1ᵗ),v 除以 (1−β2ᵗ)(t = 1)。")),
        Mistake("ADAM_NO_SQRT", adam_step_formula(*adam, use_sqrt=False).tolist(),
                say("The denominator is √v̂ + ε, not v̂ + ε.", "分母是 √v̂ + ε,而不是 v̂ + ε。")),
        Mistake("ADAM_WRONG_SIGN", (2 * x0 - np.asarray(ref["q_adam_x1"])).tolist(),
                say("Adam steps against the gradient: x − lr·m̂/(√v̂ + ε).", "Adam 沿负梯度方向更新:x − lr·m̂/(√v̂ + ε)。")),
    ])
    return [
        Part("q_mom_x2", 2, say("Point after two momentum steps", "两步动量法之后的点"),
             probe=lambda rng: read_variable("q_mom_x2"), reference=lambda probe: ref["q_mom_x2"],
             check=CHECK, mistakes=lambda probe: mom_mistakes),
        Part("q_adam_x1", 2, say("Point after one Adam step", "一步 Adam 之后的点"),
             probe=lambda rng: read_variable("q_adam_x1"), reference=lambda probe: ref["q_adam_x1"],
             check=CHECK, mistakes=lambda probe: adam_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-momentum-adam",
    title=say("Quiz: momentum and Adam updates", "小测:动量法与 Adam 的更新"),
    points=4, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

"""Quiz: two heavy-ball momentum steps and one Adam step (notes: optimisers, Adam = momentum + RMSProp + bias correction)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import adam_step, adam_step_formula, momentum_ema_steps, momentum_steps


def _ints(rng: random.Random, hi: int) -> list[int]:
    """Three nonzero integers in [-hi, hi], drawn as sign * magnitude (no rejection)."""
    return [rng.choice([-1, 1]) * rng.randint(1, hi) for _ in range(3)]


# No answer may be a short round decimal, or one that rounds to a few digits: it would turn up, by coincidence,
# as a number in some other statement of the same quiz, and the release folder must not contain any answer.
# Whole-number x0 and gradients, and steps drawn so that every answer has an exact short expansion that ends in
# a nonzero digit (then its 4-significant-digit form is the value itself, never a rounded 1.3 or -2.2):
# - momentum: x2 = x0 - lr*((1+beta)*g1 + g2). With 10*(1+beta) in {13, 17, 19} and 0 < |g1| < 10, the sum has
#   exactly one decimal, nonzero; lr has two decimals ending in 1, 3, 7 or 9, so x2 has exactly three decimals;
# - Adam: the first step moves each coordinate by lr*g1/(|g1| + eps), lr to within 1e-8 relative, so x1 = x0 -+ lr
#   with a three-decimal lr (not 0.001, from which x0 = 1 would give 0.999, i.e. beta2).
# The rates are statement numbers too, which answers of other items (small probabilities, gradients) round to
# now and then: with one significant digit only values within 5e-6 of 0.03 (5e-7 of 0.003) do so, where 0.013
# would catch those near 0.013 and near 0.01. None is 0.05 or starts with 0.04 or 0.08: 2/lambda for a whole
# eigenvalue, answers of quiz-max-lr. beta2 is PyTorch's 0.999 only: 0.9999 would add one more number near 1
# (with 0.99 and 0.999 inside it) that answers such as a probability 0.99994 round to.
MOMENTUM_LRS = [0.01, 0.03, 0.07, 0.09]
MOMENTUM_BETAS = [0.3, 0.7, 0.9]
ADAM_LRS = [0.002, 0.003, 0.005, 0.007, 0.009]


def sample(rng: random.Random) -> dict:
    """x0 is drawn last, each entry from the nonzero integers in [-3, 3] that keep x2 = x0 - lr*s, s = (1+beta)*g1 + g2
    (worked out exactly, in thousandths), out of (-0.1, 0.1), where it would have one or two significant digits,
    and off 0.999, a number in the statement (beta2): at most 2 of the 6 values are left out (no rejection)."""
    g1, g2 = _ints(rng, 5), _ints(rng, 5)
    lr, beta = rng.choice(MOMENTUM_LRS), rng.choice(MOMENTUM_BETAS)
    x0 = []
    for a, b in zip(g1, g2):
        step = round(lr * 100) * (round((1 + beta) * 10) * a + 10 * b)   # 1000 * lr * s, exactly
        x0.append(rng.choice([v for v in (-3, -2, -1, 1, 2, 3) if abs(1000 * v - step) >= 100 and 1000 * v - step != 999]))
    return {"x0": x0, "g1": g1, "g2": g2, "lr": lr, "beta": beta, "adam_lr": rng.choice(ADAM_LRS),
            "beta1": rng.choice([0.8, 0.9]), "beta2": 0.999, "eps": 1e-8}


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
    mom_mistakes = distinct_mistakes(ref["q_mom_x2"], check=CHECK, mistakes=[
        Mistake("MOMENTUM_IGNORED", (x0 - lr * (g1 + g2)).tolist(),
                say("That is plain SGD: with momentum the second step uses v2 = β·v1 + g2.", "这是普通 SGD:有动量时第二步用 v2 = β·v1 + g2。")),
        Mistake("MOMENTUM_DAMPENED", momentum_ema_steps(p["x0"], [p["g1"], p["g2"]], lr, beta).tolist(),
                say("You averaged v = βv + (1−β)g; this convention (PyTorch's) is v = βv + g.", "你用了 v = βv + (1−β)g;本题（PyTorch）的约定是 v = βv + g。")),
        Mistake("MOMENTUM_ONE_STEP", (x0 - lr * g1).tolist(), say("Take both steps.", "要做两步。")),
        Mistake("MOMENTUM_WRONG_SIGN", (x0 + lr * g1 + lr * (beta * g1 + g2)).tolist(),
                say("Momentum still moves against the gradient: x = x − lr·v.", "动量法同样沿负梯度方向移动:x = x − lr·v。")),
    ])
    adam_mistakes = distinct_mistakes(ref["q_adam_x1"], check=CHECK, mistakes=[
        Mistake("ADAM_NO_BIAS_CORRECTION", adam_step_formula(*adam, bias_correction=False).tolist(),
                say("Divide m by (1−β1ᵗ) and v by (1−β2ᵗ) (bias correction, t = 1).", "要做偏差修正:m 除以 (1−β1ᵗ),v 除以 (1−β2ᵗ)(t = 1)。")),
        Mistake("ADAM_NO_SQRT", adam_step_formula(*adam, use_sqrt=False).tolist(),
                say("The denominator is √v̂ + ε, not v̂ + ε.", "分母是 √v̂ + ε,而不是 v̂ + ε。")),
        Mistake("ADAM_WRONG_SIGN", (2 * x0 - np.asarray(ref["q_adam_x1"])).tolist(),
                say("Adam steps against the gradient: x − lr·m̂/(√v̂ + ε).", "Adam 沿负梯度方向更新:x − lr·m̂/(√v̂ + ε)。")),
    ])
    return [
        variable_part("q_mom_x2", 2, say("Point after two momentum steps", "两步动量法之后的点"),
             answer=ref["q_mom_x2"], check=CHECK, mistakes=mom_mistakes),
        variable_part("q_adam_x1", 2, say("Point after one Adam step", "一步 Adam 之后的点"),
             answer=ref["q_adam_x1"], check=CHECK, mistakes=adam_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-momentum-adam",
    title=say("Quiz: momentum and Adam updates", "小测：动量法与 Adam 的更新"),
    points=4, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

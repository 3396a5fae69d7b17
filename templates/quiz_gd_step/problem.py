"""Quiz: one gradient-descent step on a 2-D quadratic f(x) = 1/2 x^T A x - b^T x (notes 01-02)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import gd_step, intify, quadratic_grad


# No answer may be a short round decimal, or one that rounds to a few digits: it would turn up, by coincidence,
# as a number in some other statement of the same quiz (a logit -1.6, a weight 0.25) or in the notebook's
# metadata (a tolerance 0.002), and the release folder must not contain any answer. lr has three decimals ending
# in 1, 3, 7 or 9, x0 is nonzero and b is drawn so that no entry of the (integer) gradient g is a multiple of 10:
# then lr*g, and x1 = x0 - lr*g, have exactly three decimals ending in a nonzero digit, the value itself at 4
# significant digits; b also keeps |x1| >= 0.1 (below, 0.047 would have two significant digits). No rate starts
# with 0.02, 0.04, 0.05 or 0.08: 2/lambda for a whole eigenvalue (0.04, 0.05, 0.08 ...), answers of quiz-max-lr.
LEARNING_RATES = [k / 1000 for k in (*range(31, 40), *range(61, 80), *range(91, 100)) if k % 10 in (1, 3, 7, 9)]


def _nonzero(rng: random.Random, hi: int) -> int:
    return rng.choice([-1, 1]) * rng.randint(1, hi)


def sample(rng: random.Random) -> dict:
    """A = [[a, e], [e, c]] is symmetric positive definite by construction: a > 0 and c > e^2/a. Each b_i is drawn
    from the values in [-6, 6] that keep g_i = (A x0)_i - b_i off the multiples of 10 (at most 2 of the 13 values),
    x1_i = x0_i - lr*g_i out of (-0.1, 0.1) (an interval 0.2 wide; b moves x1_i by lr >= 0.031: at most 7 values)
    and off 0.999, a number in the statement of quiz-momentum-adam (at most 1): at least 5 values are left to draw
    from, for every A, x0 and lr (checked over all of them: by construction, no rejection)."""
    a, e = rng.randint(1, 9), rng.randint(-6, 6)
    c = e * e // a + 1 + rng.randint(0, 6)
    x0 = [_nonzero(rng, 5), _nonzero(rng, 5)]
    lr = rng.choice(LEARNING_RATES)
    k = round(lr * 1000)
    ax = [a * x0[0] + e * x0[1], e * x0[0] + c * x0[1]]

    def allowed(i: int, v: int) -> bool:
        x1 = 1000 * x0[i] - k * (ax[i] - v)   # in thousandths
        return (ax[i] - v) % 10 != 0 and abs(x1) >= 100 and x1 != 999

    b = [rng.choice([v for v in range(-6, 7) if allowed(i, v)]) for i in range(2)]
    return {"A": [[a, e], [e, c]], "b": b, "x0": x0, "lr": lr}


def note(params: dict) -> str:
    return f"A={params['A']} b={params['b']} x0={params['x0']} lr={params['lr']}"


def answers(params: dict) -> dict:
    p = params
    return {"q_gd_grad": intify(quadratic_grad(p["A"], p["b"], p["x0"])),
            "q_gd_x1": intify(gd_step(p["A"], p["b"], p["x0"], p["lr"]))}


# Whole-number references are ints (intify): [2, -3] by hand passes. float32 (torch's default dtype) computes
# x1 = x0 - lr*g to within 2^-24 (2|lr*g| + |x1|) <= 4.2e-6 over every variant of the sampler, against |x1| >= 0.1:
# atol 1e-4 is 24 times that; every known mistake is at least lr*1 >= 0.031 away.
CHECK = Array(rtol=1e-5, atol=1e-4)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    A, b, x0, lr = (np.asarray(params[k], dtype=np.float64) for k in ("A", "b", "x0", "lr"))
    g = A @ x0 - b
    grad_mistakes = distinct_mistakes(ref["q_gd_grad"], check=CHECK, mistakes=[
        Mistake("GD_FORGOT_B", intify(A @ x0), say("The linear term -bᵀx contributes -b to the gradient.", "线性项 -bᵀx 对梯度的贡献是 -b。")),
        Mistake("GD_KEPT_HALF", intify(0.5 * A @ x0 - b),
                say("For symmetric A, the gradient of ½xᵀAx is Ax: the ½ cancels the 2.", "A 对称时 ½xᵀAx 的梯度是 Ax:½ 与求导得到的 2 相消。")),
        Mistake("GD_SIGN_B", intify(A @ x0 + b), say("Mind the sign: ∇f = Ax − b.", "注意符号:∇f = Ax − b。")),
    ])
    step_mistakes = distinct_mistakes(ref["q_gd_x1"], check=CHECK, mistakes=[
        Mistake("GD_WRONG_SIGN", intify(x0 + lr * g), say("Gradient descent moves against the gradient: x1 = x0 − lr·∇f(x0).",
                                                             "梯度下降沿负梯度方向移动:x1 = x0 − lr·∇f(x0)。")),
        Mistake("GD_FORGOT_LR", intify(x0 - g), say("Multiply the gradient by the learning rate.", "梯度要乘以学习率。")),
        Mistake("GD_FORGOT_B", intify(x0 - lr * (A @ x0)), say("The gradient is Ax − b; you left out −b.", "梯度是 Ax − b,你遗漏了 −b。")),
    ])
    return [
        variable_part("q_gd_grad", 1, say("Gradient at x0", "x0 处的梯度"),
             answer=ref["q_gd_grad"], check=CHECK, mistakes=grad_mistakes),
        variable_part("q_gd_x1", 2, say("The point after one step", "一步之后的点"),
             answer=ref["q_gd_x1"], check=CHECK, mistakes=step_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-gd-step",
    title=say("Quiz: one gradient-descent step", "小测：梯度下降的一步"),
    points=3, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

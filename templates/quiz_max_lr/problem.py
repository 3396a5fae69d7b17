"""Quiz: the largest stable learning rate of gradient descent on a quadratic, 2/lambda_max."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.checks import Number
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import best_constant_lr, eigenvalues, max_stable_lr


def sample(rng: random.Random) -> dict:
    """H = MᵀM + dI is symmetric positive definite by construction (d >= 1)."""
    M = np.array([[rng.randint(-2, 2) for _ in range(3)] for _ in range(3)])
    H = M.T @ M + rng.randint(1, 4) * np.eye(3, dtype=int)
    return {"H": H.astype(int).tolist(), "b": [rng.randint(-5, 5) for _ in range(3)]}


def note(params: dict) -> str:
    return f"H={params['H']} b={params['b']}"


def answers(params: dict) -> dict:
    return {"q_maxlr": max_stable_lr(params["H"]), "q_maxlr_best": best_constant_lr(params["H"])}


CHECK = Number(rel=2e-3)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    lo, hi = eigenvalues(params["H"])[0], eigenvalues(params["H"])[-1]
    max_mistakes = distinct_mistakes(ref["q_maxlr"], check=CHECK, mistakes=[
        Mistake("MAXLR_LAMBDA_MIN", 2 / lo, say("The stiffest direction limits the step: use the largest eigenvalue.",
                                                 "最陡的方向限制了步长：要用最大的特征值。")),
        Mistake("MAXLR_NO_FACTOR_2", 1 / hi, say("GD is stable while |1 − lr·λ| < 1, i.e. lr < 2/λ_max; 1/λ_max is not the limit.",
                                                  "梯度下降稳定的条件是 |1 − lr·λ| < 1，即 lr < 2/λ_max;1/λ_max 不是上限。")),
        Mistake("MAXLR_DIAGONAL", 2 / max(params["H"][i][i] for i in range(3)),
                say("Use the eigenvalues of H, not its diagonal entries.", "要用 H 的特征值，而不是对角元。")),
    ])
    best_mistakes = distinct_mistakes(ref["q_maxlr_best"], check=CHECK, mistakes=[
        Mistake("BESTLR_GAVE_MAX", 2 / hi, say("At lr = 2/λ_max the stiffest direction does not converge at all (|1 − lr·λ_max| = 1).",
                                               "lr = 2/λ_max 时最陡方向完全不收敛(|1 − lr·λ_max| = 1)。")),
        Mistake("BESTLR_ONE_OVER_LMAX", 1 / hi, say("1/λ_max is best for the stiffest direction alone; balance both ends: |1 − lr·λ_min| = |1 − lr·λ_max|.",
                                                    "1/λ_max 只对最陡方向最好；应让两端平衡:|1 − lr·λ_min| = |1 − lr·λ_max|。")),
    ])
    return [
        variable_part("q_maxlr", 2, say("Largest stable learning rate", "最大稳定学习率"),
             answer=ref["q_maxlr"], check=CHECK, mistakes=max_mistakes),
        variable_part("q_maxlr_best", 1, say("Fastest constant learning rate", "收敛最快的固定学习率"),
             answer=ref["q_maxlr_best"], check=CHECK, mistakes=best_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-max-lr",
    title=say("Quiz: the largest stable learning rate", "小测：最大稳定学习率"),
    points=3, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

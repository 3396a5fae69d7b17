"""Quiz: classify a stationary point from its 2x2 Hessian (second-order test via the eigenvalues)."""
from __future__ import annotations

import math
import random
from pathlib import Path

from hwkit.checks import Array, Choice
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import classify_stationary, eigenvalues, intify

KINDS = ("min", "max", "saddle", "degenerate")
LABELS = {"min": say("a local minimum", "局部极小值点"), "max": say("a local maximum", "局部极大值点"),
          "saddle": say("a saddle point", "鞍点"),
          "degenerate": say("cannot be decided from the Hessian (an eigenvalue is 0)", "无法仅由 Hessian 判断（有特征值为 0）")}
LETTERS = "ABCD"


def sample(rng: random.Random) -> dict:
    """The kind is drawn first and H = [[a, e], [e, c]] built to have it: definite when a > 0 and
    ac > e^2 (negated for a maximum); indefinite when e^2 > ac. Never degenerate, by construction."""
    kind = rng.choice(["min", "max", "saddle"])
    if kind == "saddle":
        a, c = rng.randint(-9, 9), rng.randint(-9, 9)
        e = rng.choice([-1, 1]) * (math.isqrt(max(a * c, 0)) + 1 + rng.randint(0, 4))
    else:
        a, e = rng.randint(1, 9), rng.randint(-9, 9)
        c = e * e // a + 1 + rng.randint(0, 9)
        if kind == "max":
            a, e, c = -a, -e, -c
    options = list(KINDS)
    rng.shuffle(options)
    return {"H": [[a, e], [e, c]], "point": [rng.randint(-5, 5), rng.randint(-5, 5)], "options": options}


def note(params: dict) -> str:
    return f"H={params['H']} at {params['point']} options={''.join(k[:2] for k in params['options'])}"


def _letter(params: dict, kind: str) -> str:
    return LETTERS[params["options"].index(kind)]


def answers(params: dict) -> dict:
    return {"q_hess_choice": _letter(params, classify_stationary(params["H"])),
            "q_hess_eig": intify(eigenvalues(params["H"]))}


# float32 (torch's default dtype) gets an eigenvalue within about eps32 * |lambda_max| of the true one: at most
# 5.9e-6 over all 7,030 Hessians of the sampler (torch.linalg.eigvalsh, eigvals, the closed form), a lot for a
# small eigenvalue (0.0196 next to 51). atol 1e-4 is 17 times that; the nearest known mistake (the diagonal as
# the eigenvalues) is 0.055 away.
EIG = Array(rtol=1e-5, atol=1e-4)


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    (a, e), (_, c) = params["H"]
    kind = classify_stationary(params["H"])
    choice_mistakes = [Mistake("HESSIAN_NOT_DEGENERATE", _letter(params, "degenerate"),
                               say("Both eigenvalues are nonzero (det H ≠ 0), so the second-order test decides.",
                                   "两个特征值都不为 0(det H ≠ 0)，二阶条件可以判定。"))]
    if kind in ("min", "max"):
        choice_mistakes.append(Mistake("HESSIAN_SIGN_REVERSED", _letter(params, "max" if kind == "min" else "min"),
                                       say("All eigenvalues > 0 means a minimum (curving up in every direction); all < 0 a maximum.",
                                           "特征值全为正是极小值（各方向都向上弯）；全为负才是极大值。")))
    elif a * c > 0:
        choice_mistakes.append(Mistake("HESSIAN_DIAGONAL_ONLY", _letter(params, "min" if a > 0 else "max"),
                                       say("The diagonal alone does not decide: the eigenvalues have opposite signs (det H < 0).",
                                           "只看对角元不够：两个特征值异号（det H < 0）。")))
    eig_mistakes = distinct_mistakes(ref["q_hess_eig"], check=EIG, mistakes=[
        Mistake("HESSIAN_EIG_DESCENDING", ref["q_hess_eig"][::-1], say("Sort the eigenvalues in ascending order.", "特征值要按从小到大排序。")),
        Mistake("HESSIAN_DIAGONAL_AS_EIG", sorted([a, c]),
                say("The eigenvalues of a non-diagonal matrix are not its diagonal entries: solve det(H − λI) = 0.",
                    "非对角矩阵的特征值不是对角元：要解 det(H − λI) = 0。")),
    ])
    return [
        variable_part("q_hess_choice", 2, say("Type of the stationary point", "驻点的类型"),
             answer=ref["q_hess_choice"], check=Choice(), mistakes=choice_mistakes, kind="choice"),
        variable_part("q_hess_eig", 1, say("Eigenvalues of the Hessian", "Hessian 的特征值"),
             answer=ref["q_hess_eig"], check=EIG, mistakes=eig_mistakes),
    ]


def context(params: dict) -> dict:
    return {"choices": [(LETTERS[i], LABELS[k]) for i, k in enumerate(params["options"])],
            "letter_of": {k: LETTERS[i] for i, k in enumerate(params["options"])}}


PROBLEM = Problem(
    id="quiz-hessian",
    title=say("Quiz: classify a stationary point", "小测：用 Hessian 判断驻点类型"),
    points=3, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

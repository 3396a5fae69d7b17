"""Quiz: shapes and parameter count of a squeeze-and-excitation (channel attention) block (notes 02-04)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Exact, Fields
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import se_params, se_shapes


def sample(rng: random.Random) -> dict:
    """C is a multiple of r by construction (C = r * m)."""
    r = rng.choice([2, 4, 8, 16])
    return {"r": r, "c": r * rng.randint(2, 48), "n": rng.randint(1, 64), "h": rng.randint(4, 64),
            "w": rng.randint(4, 64)}


def note(params: dict) -> str:
    return f"C={params['c']} r={params['r']} x={params['n']}x{params['c']}x{params['h']}x{params['w']}"


def answers(params: dict) -> dict:
    p = params
    return {"q_se_shapes": se_shapes(p["n"], p["c"], p["r"], p["h"], p["w"]), "q_se_params": se_params(p["c"], p["r"])}


SHAPES = Fields({"squeeze": (1, Array(rtol=0, atol=0)), "fc1": (1, Array(rtol=0, atol=0)),
                 "fc2": (1, Array(rtol=0, atol=0))})


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    n, c, r, h, w = params["n"], params["c"], params["r"], params["h"], params["w"]
    shape_mistakes = distinct_mistakes(ref["q_se_shapes"], check=SHAPES, mistakes=[
        Mistake("SE_SQUEEZE_NOT_POOLED", {"squeeze": [n, c, h, w]},
                say("Squeeze is a global average pool: every H×W map becomes one number, (N, C).",
                    "Squeeze 是全局平均池化：每个 H×W 的特征图被压成一个数，得到 (N, C)。")),
        Mistake("SE_FC1_TIMES_R", {"fc1": [n, c * r]},
                say("The first FC layer reduces C to C/r; it does not expand it.", "第一个全连接层把 C 降到 C/r,而不是扩大。")),
        Mistake("SE_DROPPED_BATCH", {"squeeze": [c], "fc1": [c // r], "fc2": [c]},
                say("Keep the batch dimension N in front.", "要保留最前面的批量维 N。")),
    ])
    count_mistakes = distinct_mistakes(ref["q_se_params"], check=Exact(), mistakes=[
        Mistake("SE_NO_BIAS", se_params(c, r, bias=False),
                say("Count the biases too: C/r for FC1 and C for FC2.", "偏置也要算上:FC1 有 C/r 个,FC2 有 C 个。")),
        Mistake("SE_ONE_FC", c * (c // r) + c // r,
                say("The excitation has two FC layers: C→C/r and C/r→C.", "激励部分有两个全连接层:C→C/r 与 C/r→C。")),
        Mistake("SE_COUNTED_SQUEEZE", se_params(c, r) + c,
                say("Global average pooling has no parameters.", "全局平均池化没有参数。")),
    ])
    return [
        variable_part("q_se_shapes", 2, say("Shapes after squeeze, FC1 and FC2", "squeeze、FC1、FC2 之后的形状"),
             answer=ref["q_se_shapes"], check=SHAPES, mistakes=shape_mistakes),
        variable_part("q_se_params", 2, say("Parameters of the block", "模块的参数个数"),
             answer=ref["q_se_params"], check=Exact(), mistakes=count_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-se-block",
    title=say("Quiz: squeeze-and-excitation block", "小测:SE 通道注意力模块"),
    points=4, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

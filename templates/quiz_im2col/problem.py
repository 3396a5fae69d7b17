"""Quiz: convolution as a matrix product (im2col): the column matrix's shape and the layer's MACs."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Exact
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import conv_macs, conv_out, im2col_shape


def sample(rng: random.Random) -> dict:
    """K <= 7 and H, W >= 8 keep the output at least 1 by construction."""
    k = rng.choice([1, 3, 3, 5, 7])
    return {"cin": rng.randint(1, 64), "cout": rng.randint(1, 128), "k": k, "s": rng.choice([1, 1, 2, 3]),
            "p": rng.randint(0, k // 2), "h": rng.randint(8, 64), "w": rng.randint(8, 64)}


def note(params: dict) -> str:
    p = params
    return f"Cin={p['cin']} Cout={p['cout']} K={p['k']} S={p['s']} P={p['p']} HxW={p['h']}x{p['w']}"


def _args(params: dict):
    return params["cin"], params["k"], params["s"], params["p"], params["h"], params["w"]


def answers(params: dict) -> dict:
    return {"q_im2col_shape": im2col_shape(*_args(params)),
            "q_im2col_macs": conv_macs(params["cin"], params["cout"], *_args(params)[1:])}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    cin, cout, k, s, p, h, w = (params[key] for key in ("cin", "cout", "k", "s", "p", "h", "w"))
    rows, cols = ref["q_im2col_shape"]
    assert cols == conv_out(h, k, s, p) * conv_out(w, k, s, p)
    shape_check, macs_check = Array(rtol=0, atol=0), Exact()
    shape_mistakes = distinct_mistakes(ref["q_im2col_shape"], check=shape_check, mistakes=[
        Mistake("IM2COL_TRANSPOSED", [cols, rows], say("One COLUMN per output position: rows are Cin·K·K, columns H_out·W_out.",
                                                       "每个输出位置占一列：行数是 Cin·K·K,列数是 H_out·W_out。")),
        Mistake("IM2COL_NO_CIN", [k * k, cols], say("A patch spans all input channels: Cin·K·K values.", "一个图像块覆盖全部输入通道：共 Cin·K·K 个值。")),
        Mistake("IM2COL_INPUT_POSITIONS", [rows, h * w], say("There is one column per OUTPUT position, H_out·W_out of them.",
                                                             "每个输出位置一列，共 H_out·W_out 列。")),
    ])
    macs_mistakes = distinct_mistakes(ref["q_im2col_macs"], check=macs_check, mistakes=[
        Mistake("MACS_GAVE_FLOPS", 2 * ref["q_im2col_macs"], say("One multiply-accumulate counts once; 2× that is FLOPs.",
                                                                 "一次乘加只计一次；乘以 2 是 FLOPs。")),
        Mistake("MACS_NO_CIN", cout * k * k * cols, say("Each output value sums over Cin·K·K products.", "每个输出值要累加 Cin·K·K 个乘积。")),
        Mistake("MACS_INPUT_SIZE", cout * rows * h * w, say("Count output positions (H_out·W_out), not input pixels.",
                                                            "要按输出位置数（H_out·W_out）计算，而不是输入像素数。")),
    ])
    return [
        variable_part("q_im2col_shape", 2, say("Shape of the im2col matrix", "im2col 矩阵的形状"),
             answer=ref["q_im2col_shape"], check=shape_check, mistakes=shape_mistakes),
        variable_part("q_im2col_macs", 1, say("MACs of the layer", "该层的乘加次数"),
             answer=ref["q_im2col_macs"], check=macs_check, mistakes=macs_mistakes),
    ]


PROBLEM = Problem(
    id="quiz-im2col",
    title=say("Quiz: convolution as a matrix product (im2col)", "小测：用矩阵乘法实现卷积(im2col)"),
    points=3, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

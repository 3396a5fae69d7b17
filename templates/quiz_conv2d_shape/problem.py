"""Quiz: what nn.Conv2d(in, out, kernel, stride, padding) does to a tensor's shape, and its parameter count."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Exact
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import conv2d_params, conv2d_shape, conv2d_shape_formula


def sample(rng: random.Random) -> dict:
    """Kernel (kh, kw) in 1..7 (odd), padding at most half the kernel, stride 1..3; H, W >= 8 keep every
    output side at least 1 by construction (8 - 7 >= 0)."""
    kh, kw = rng.choice([1, 3, 5, 7]), rng.choice([1, 3, 5, 7])
    return {"cin": rng.choice([1, 3, 8, 16, 24, 32, 48, 64, 96, 128]), "cout": rng.randint(2, 256),
            "kernel": [kh, kw], "stride": rng.choice([1, 2, 2, 3]),
            "padding": [rng.randint(0, kh // 2), rng.randint(0, kw // 2)],
            "n": rng.choice([1, 4, 8, 16, 32, 64]), "h": rng.randint(8, 128), "w": rng.randint(8, 128)}


def _args(params: dict):
    shape = [params["n"], params["cin"], params["h"], params["w"]]
    return params["cin"], params["cout"], params["kernel"], params["stride"], params["padding"], shape


def note(params: dict) -> str:
    kh, kw = params["kernel"]
    ph, pw = params["padding"]
    return (f"Conv2d({params['cin']},{params['cout']},({kh},{kw}),{params['stride']},({ph},{pw})) "
            f"x={params['n']}x{params['cin']}x{params['h']}x{params['w']}")


def answers(params: dict) -> dict:
    return {"q_conv2d_shape": conv2d_shape(*_args(params)),
            "q_conv2d_params": conv2d_params(params["cin"], params["cout"], params["kernel"])}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    args = _args(params)
    cin, cout, (kh, kw) = params["cin"], params["cout"], params["kernel"]
    shape_check, count_check = Array(rtol=0, atol=0), Exact()
    shape_mistakes = distinct_mistakes(ref["q_conv2d_shape"], check=shape_check, mistakes=[
        Mistake("SHAPE_KEPT_IN_CHANNELS", conv2d_shape_formula(*args, keep_channels=True),
                say("The output has out_channels channels (the second argument), not in_channels.",
                    "输出的通道数是 out_channels（第二个参数），而不是 in_channels。")),
        Mistake("SHAPE_KERNEL_SWAPPED", conv2d_shape_formula(*args, swap_kernel=True),
                say("A kernel (kh, kw) applies kh to the height and kw to the width.", "卷积核 (kh, kw) 中 kh 作用于高度,kw 作用于宽度。")),
        Mistake("OUT_IGNORED_STRIDE", conv2d_shape_formula(*args, use_stride=False),
                say("Divide by the stride: floor((W - K + 2P)/S) + 1.", "要除以步幅:floor((W - K + 2P)/S) + 1。")),
    ])
    count_mistakes = distinct_mistakes(ref["q_conv2d_params"], check=count_check, mistakes=[
        Mistake("CONV_NO_BIAS", conv2d_params(cin, cout, params["kernel"], bias=False),
                say("nn.Conv2d has a bias by default: one per output channel.", "nn.Conv2d 默认带偏置：每个输出通道一个。")),
        Mistake("PARAMS_NO_IN_CHANNELS", kh * kw * cout + cout,
                say("Each filter spans all in_channels: weights = out·in·kh·kw.", "每个卷积核覆盖全部输入通道：权重数 = out·in·kh·kw。")),
    ])
    return [
        variable_part("q_conv2d_shape", 2, say("Output shape", "输出形状"),
             answer=ref["q_conv2d_shape"], check=shape_check, mistakes=shape_mistakes),
        variable_part("q_conv2d_params", 1, say("Number of parameters", "参数个数"),
             answer=ref["q_conv2d_params"], check=count_check, mistakes=count_mistakes),
    ]


def context(params: dict) -> dict:
    kh, kw = params["kernel"]
    ph, pw = params["padding"]
    return {"conv_src": f"nn.Conv2d({params['cin']}, {params['cout']}, ({kh}, {kw}), {params['stride']}, ({ph}, {pw}))",
            "shape_src": f"({params['n']}, {params['cin']}, {params['h']}, {params['w']})",
            "kh": kh, "kw": kw, "ph": ph, "pw": pw}


PROBLEM = Problem(
    id="quiz-conv2d-shape",
    title=say("Quiz: what nn.Conv2d does to a shape", "小测:nn.Conv2d 的输出形状"),
    points=3, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

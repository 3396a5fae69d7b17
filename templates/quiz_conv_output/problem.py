"""Quiz: output size of a conv/pool stack, and the output shape of a small CNN (course notes, 02-02 q13)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Number
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say, variable_part
from solutions.quiz import (net_output_shape, net_output_shape_formula, stack_output_size,
                            torch_stack_output_size)


def _stack_ok(n: int, layers) -> bool:
    for k, s, p in layers:
        n = (n - k + 2 * p) // s + 1
        if n < 2:
            return False
    return True


def sample(rng: random.Random) -> dict:
    """Three layers (conv or pool); the input side is drawn above the smallest side that keeps every output
    at least 2 (a bounded scan, not a rejection loop). The network's sizes keep every map at least 1 by
    construction (H, W >= 20, K1 <= 7, K2 <= 5, two 2x2 pools)."""
    layers, kinds = [], []
    for i in range(3):
        if i > 0 and rng.random() < 0.4:
            k = rng.choice([2, 3])
            layers.append([k, 2 if k == 2 else rng.choice([1, 2]), rng.randint(0, k // 2)])
            kinds.append("pool")
        else:
            k = rng.choice([1, 3, 3, 5, 5, 7])
            layers.append([k, rng.choice([1, 2, 2, 3]), rng.randint(0, k // 2)])
            kinds.append("conv")
    smallest = next(n for n in range(1, 4096) if _stack_ok(n, layers))
    lo = max(smallest, 24)
    net = {"n": rng.choice([1, 2, 4, 8, 16, 32, 64, 128]), "cin": rng.choice([1, 3]), "c1": rng.randint(4, 64),
           "k1": rng.choice([3, 5, 7]), "c2": rng.randint(8, 128), "k2": rng.choice([1, 3, 5]),
           "s2": rng.choice([1, 2]), "h": rng.randint(20, 64), "w": rng.randint(20, 64)}
    net["p1"] = rng.randint(0, net["k1"] // 2)
    net["p2"] = rng.randint(0, net["k2"] // 2)
    return {"layers": layers, "kinds": kinds, "input_size": rng.randint(lo, lo + 230), "net": net}


def note(params: dict) -> str:
    stack = " ".join(f"{'C' if t == 'conv' else 'P'}{k}s{s}p{p}" for t, (k, s, p) in zip(params["kinds"], params["layers"]))
    n = params["net"]
    return (f"{stack} in={params['input_size']}; net {n['n']}x{n['cin']}x{n['h']}x{n['w']} "
            f"c{n['c1']}k{n['k1']}p{n['p1']} c{n['c2']}k{n['k2']}s{n['s2']}p{n['p2']}")


def _no_floor(size: float, layers) -> float:
    for k, s, p in layers:
        size = (size - k + 2 * p) / s + 1
    return size


def answers(params: dict) -> dict:
    return {"q_convout_size": torch_stack_output_size(params["input_size"], params["layers"], params["kinds"]),
            "q_convout_shape": net_output_shape(params["net"])}


def parts(params: dict) -> list[Part]:
    ref = answers(params)
    layers, size, net = params["layers"], params["input_size"], params["net"]
    size_check, shape_check = Number(rel=1e-9, abs=1e-9), Array(rtol=0, atol=0)
    size_mistakes = distinct_mistakes(ref["q_convout_size"], check=size_check, mistakes=[
        Mistake("CONV_OUT_NO_FLOOR", _no_floor(size, layers),
                say("Sizes are whole numbers: round (W - K + 2P)/S down at every layer, then add 1.",
                    "尺寸必须是整数：每一层都要对 (W - K + 2P)/S 向下取整，再加 1。")),
        Mistake("CONV_OUT_CEIL", stack_output_size(size, layers, ceil=True),
                say("You rounded up; PyTorch rounds (W - K + 2P)/S down (floor).", "你向上取整了;PyTorch 对 (W - K + 2P)/S 向下取整。")),
        Mistake("OUT_IGNORED_PADDING", stack_output_size(size, layers, use_padding=False),
                say("You left out the padding: the formula has +2P.", "遗漏了填充：公式中有 +2P。")),
    ])
    shape_mistakes = distinct_mistakes(ref["q_convout_shape"], check=shape_check, mistakes=[
        Mistake("SHAPE_NHWC_ORDER", net_output_shape_formula(net, nhwc=True),
                say("PyTorch orders a feature map as (N, C, H, W), channels second.", "PyTorch 中特征图的维度顺序是 (N, C, H, W)，通道在第二维。")),
        Mistake("SHAPE_FORGOT_POOL", net_output_shape_formula(net, use_pool=False),
                say("Each 2x2 max-pool with stride 2 halves H and W (rounding down).", "每个 2×2、步幅 2 的最大池化都会把 H 和 W 减半（向下取整）。")),
        Mistake("CONV_OUT_CEIL", net_output_shape_formula(net, ceil=True),
                say("You rounded up somewhere; PyTorch rounds down.", "某处向上取整了;PyTorch 向下取整。")),
        Mistake("OUT_IGNORED_PADDING", net_output_shape_formula(net, use_padding=False),
                say("You left out the padding of the convolutions.", "遗漏了卷积层的填充。")),
    ])
    return [
        variable_part("q_convout_size", 2, say("Output side of the layer stack", "层堆叠的输出边长"),
             answer=ref["q_convout_size"], check=size_check, mistakes=size_mistakes),
        variable_part("q_convout_shape", 2, say("Output shape (N, C, H, W) of the network", "网络输出形状 (N, C, H, W)"),
             answer=ref["q_convout_shape"], check=shape_check, mistakes=shape_mistakes),
    ]


def context(params: dict) -> dict:
    return {"rows": [dict(kind=t, k=k, s=s, p=p) for t, (k, s, p) in zip(params["kinds"], params["layers"])],
            "layers_src": "[" + ", ".join(f"({k}, {s}, {p})" for k, s, p in params["layers"]) + "]",
            "net": params["net"]}


PROBLEM = Problem(
    id="quiz-conv-output",
    title=say("Quiz: convolution output size", "小测：卷积输出尺寸"),
    points=4, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"), topic="quiz",
)

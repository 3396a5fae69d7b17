"""Receptive field, jump and output size of a randomized conv/pool stack (seed homework, problem 2)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Cases, Exact, Rubric
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import call_function, read_variable
from solutions.receptive_field import (MODEL_ANSWER_CONCEPT, output_size, receptive_field, receptive_field_table,
                                       torch_output_size)


def sample(rng: random.Random) -> dict:
    """3-5 layers; pools never pad more than half their kernel. The input size is drawn above the
    smallest size that keeps every layer's output at least 2, so every variant is valid by construction."""
    kinds, layers = [], []
    for i in range(rng.randint(3, 5)):
        if i > 0 and rng.random() < 0.35:
            k = rng.choice([2, 3])
            layer = (k, rng.choice([1, 2]) if k == 3 else 2, rng.randint(0, k // 2), 1)
            kinds.append("pool")
        else:
            k = rng.choice([1, 3, 3, 3, 5, 5, 7])
            d = 2 if k in (3, 5) and rng.random() < 0.25 else 1
            layer = (k, rng.choice([1, 1, 2, 2, 3]) if k > 1 else rng.choice([1, 2]), rng.randint(0, d * (k - 1) // 2), d)
            kinds.append("conv")
        layers.append(layer)
    smallest = next(n for n in range(1, 4096) if _min_size_ok(n, layers))
    size = rng.randint(max(smallest, 28), max(smallest, 28) + 200)
    return {"layers": [list(l) for l in layers], "kinds": kinds, "input_size": size, **_worked_example(rng)}


EXAMPLE_SIZES = (32, 64, 128, 224)


def _worked_example(rng: random.Random) -> dict:
    """The course notes' worked example (32×32: 3×3 conv s1 p1 → 3×3 conv s2 p0 → 2×2 max-pool s2) with this
    student's numbers: two convolutions, a max-pool, sometimes one more convolution; no dilation. Drawn after
    the main stack, so the main stack's draws are those of every earlier release."""
    kinds = ["conv", "conv", "pool"] + (["conv"] if rng.random() < 0.5 else [])
    layers = []
    for kind in kinds:
        k = rng.choice([2, 3]) if kind == "pool" else rng.choice([3, 5, 7])
        s = rng.choice([2, 3]) if kind == "pool" and k == 3 else 2 if kind == "pool" else rng.choice([1, 2])
        layers.append([k, s, rng.randint(0, k // 2), 1])
    size = rng.choice([n for n in EXAMPLE_SIZES if _min_size_ok(n, layers)])   # 224 always fits
    return {"example_layers": layers, "example_kinds": kinds, "example_size": size}


def _min_size_ok(n: int, layers) -> bool:
    size = n
    for k, s, p, d in layers:
        size = (size + 2 * p - (d * (k - 1) + 1)) // s + 1
        if size < 2:
            return False
    return True


def note(params: dict) -> str:
    names = {"conv": "C", "pool": "P"}
    stack = " ".join(f"{names[t]}{k}s{s}p{p}" + (f"d{d}" if d > 1 else "")
                     for t, (k, s, p, d) in zip(params["kinds"], params["layers"]))
    example = " ".join(f"{names[t]}{k}s{s}p{p}" for t, (k, s, p, _d) in zip(params["example_kinds"], params["example_layers"]))
    return f"{stack} in={params['input_size']} | example {example} in={params['example_size']}"


def answers(params: dict) -> dict:
    layers = [tuple(l) for l in params["layers"]]
    r, j = receptive_field(layers)
    return {"rf_final": r, "rf_jump": j,
            "rf_out_size": torch_output_size(params["input_size"], layers, params["kinds"]),
            "rf_table": receptive_field_table(params["example_layers"])}


def _random_stack(rng: random.Random) -> list[list[int]]:
    layers = []
    for _ in range(rng.randint(1, 6)):
        k = rng.choice([1, 2, 3, 5, 7])
        d = rng.choice([1, 1, 2]) if k > 1 else 1
        layers.append([k, rng.randint(1, 3), rng.randint(0, k // 2), d])
    return layers


def _function_probe(rng: random.Random, classic: bool = True):
    cases = [[_random_stack(rng)] for _ in range(6)]
    if classic:    # grading only: the self-check's public cases are never among the graded ones
        cases.append([[[3, 1, 1, 1], [3, 2, 0, 1], [2, 2, 0, 1]]])  # the classic example from the course notes
    return call_function("receptive_field", cases)


def _function_reference(probe, **switches):
    return [list(receptive_field([tuple(l) for l in case[0]], **switches)) for case in probe.inputs["cases"]]


CONCEPT_RUBRIC = Rubric(concepts=(
    ("input_region", ("区域", "范围", "region", "area", "patch", "window", "窗口", "portion of the input", "part of the input",
                      "pixels of the input", "输入中的", "输入上的")),
    ("small_local", ("边缘", "纹理", "局部", "细节", "角点", "edge", "texture", "local", "detail", "corner", "small pattern")),
    ("large_global", ("全局", "语义", "整体", "形状", "物体", "上下文", "抽象", "高层", "global", "semantic", "whole",
                      "shape", "object", "context", "abstract", "high-level", "high level")),
    ("grows_with_depth", ("越深", "加深", "逐层", "深层", "增大", "变大", "更大", "堆叠", "deeper", "depth", "layer by layer",
                          "grows", "increas", "larger", "stack", "accumulat", "累积")),
))


def _table_mistakes(params: dict, table: list) -> list[Mistake]:
    layers = params["example_layers"]
    return distinct_mistakes(table, check=TABLE_CHECK, mistakes=[
        Mistake("RF_TABLE_IGNORED_STRIDE", receptive_field_table(layers, use_stride=False), say(
            "The strides are missing from the table: J_l = J_{l-1}·S_l, and each layer adds (K_l - 1)·J_{l-1} to R.",
            "表中没有考虑步幅：J_l = J_{l-1}·S_l，每层给 R 增加 (K_l - 1)·J_{l-1}。")),
        Mistake("RF_TABLE_NEW_JUMP", receptive_field_table(layers, jump_after_layer=True), say(
            "A layer grows R by (K_l - 1)·J_{l-1}, with the jump BEFORE the layer; you used its own J_l = J_{l-1}·S_l.",
            "一层使 R 增加 (K_l - 1)·J_{l-1}，用的是该层之前的跳跃步长；你用了该层自己的 J_l = J_{l-1}·S_l。")),
    ])


TABLE_CHECK = Cases(Array(rtol=0, atol=0))   # one row (R_l, J_l) per layer: partial credit row by row


def parts(params: dict) -> list[Part]:
    layers = [tuple(l) for l in params["layers"]]
    ref = answers(params)
    size = params["input_size"]
    has_dilation = any(l[3] > 1 for l in layers)
    rf_mistakes = [Mistake("RF_IGNORED_STRIDE", receptive_field(layers, use_stride=False)[0],
                           say("You added (K-1) per layer but ignored the stride: later layers grow the field by (K-1)·J, where J is the product of earlier strides.",
                               "每层只加了 (K-1)，忽略了步幅：后面的层应增加 (K-1)·J,J 为之前各层步幅之积。"))]
    if has_dilation:
        rf_mistakes.append(Mistake("RF_IGNORED_DILATION", receptive_field(layers, use_dilation=False)[0],
                                   say("A dilated kernel spans d(K-1)+1 pixels; you used K.", "空洞卷积的有效核大小为 d(K-1)+1，你使用了 K。")))
    out_mistakes = [Mistake("OUT_IGNORED_PADDING", output_size(size, layers, use_padding=False),
                            say("You left out the padding: the output is floor((W + 2P - K_eff)/S) + 1.",
                                "遗漏了填充：输出大小为 floor((W + 2P - K_eff)/S) + 1。"))]
    if has_dilation:
        out_mistakes.append(Mistake("OUT_IGNORED_DILATION", output_size(size, layers, use_dilation=False),
                                    say("With dilation d the kernel covers d(K-1)+1 pixels.", "空洞率为 d 时卷积核覆盖 d(K-1)+1 个像素。")))
    return [
        Part("rf_final", 3, say("Receptive field of the last layer", "最后一层的感受野"),
             probe=lambda rng: read_variable("rf_final"), reference=lambda probe: ref["rf_final"],
             check=Exact(), mistakes=lambda probe: rf_mistakes),
        Part("rf_jump", 2, say("Jump (cumulative stride)", "跳跃步长（累积步幅）"),
             probe=lambda rng: read_variable("rf_jump"), reference=lambda probe: ref["rf_jump"],
             check=Exact(), mistakes=lambda probe: [Mistake("JUMP_SUMMED_STRIDES", sum(l[1] for l in layers),
                                                            say("The jump multiplies the strides; you added them.", "跳跃步长是各层步幅的乘积，你把它们相加了。"))]
             if sum(l[1] for l in layers) != ref["rf_jump"] else []),
        Part("rf_out_size", 2, say("Output feature-map size", "输出特征图大小"),
             probe=lambda rng: read_variable("rf_out_size"), reference=lambda probe: ref["rf_out_size"],
             check=Exact(), mistakes=lambda probe: out_mistakes),
        Part("receptive_field", 5, say("Function receptive_field(layers)", "函数 receptive_field(layers)"),
             probe=_function_probe, public_probe=lambda rng: _function_probe(rng, classic=False),
             reference=_function_reference, check=Cases(Array(rtol=0, atol=0)),
             mistakes=lambda probe: [Mistake("RF_IGNORED_STRIDE", _function_reference(probe, use_stride=False),
                                             say("Your function ignores the stride of earlier layers.", "你的函数忽略了之前各层的步幅。"))],
             kind="code", hidden_inputs=True),
        Part("rf_concept", 3, say("The receptive field and feature extraction", "感受野的概念及其对特征提取的影响"),
             probe=lambda rng: read_variable("rf_concept"), reference=lambda probe: MODEL_ANSWER_CONCEPT,
             check=CONCEPT_RUBRIC, kind="written"),
        Part("rf_table", 4, say("Worked example: R_l and J_l layer by layer", "计算过程：逐层的 R_l 与 J_l"),
             probe=lambda rng: read_variable("rf_table"), reference=lambda probe: ref["rf_table"],
             check=TABLE_CHECK, mistakes=lambda probe: _table_mistakes(params, ref["rf_table"])),
    ]


def context(params: dict) -> dict:
    layers_src = "[" + ", ".join("(" + ", ".join(map(str, l)) + ")" for l in params["layers"]) + "]"
    return {"rf_layers_src": layers_src, "rows": [dict(kind=t, k=l[0], s=l[1], p=l[2], d=l[3]) for t, l in zip(params["kinds"], params["layers"])],
            "example_rows": [dict(kind=t, k=l[0], s=l[1], p=l[2]) for t, l in zip(params["example_kinds"], params["example_layers"])],
            "rf_example_src": "[" + ", ".join(f"({k}, {s}, {p})" for k, s, p, _d in params["example_layers"]) + "]",
            "rf_concept_answer_src": repr(MODEL_ANSWER_CONCEPT)}


PROBLEM = Problem(
    id="receptive-field",
    title=say("Receptive field of a conv/pool stack", "卷积/池化堆叠的感受野"),
    points=19, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)

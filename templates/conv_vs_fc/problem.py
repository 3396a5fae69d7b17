"""Convolution vs fully connected layers: parameter counts, the saving from local connectivity and weight
sharing, the roles of conv / pooling / FC layers (seed homework, problem 7)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Exact, Number, Rubric
from hwkit.choices import choice_answer, choice_context, choice_part, distinct_mistakes, shuffled_orders
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.conv_vs_fc import CHOICES, MODEL_ROLES, MODEL_SHARING, solve


def sample(rng: random.Random) -> dict:
    """Always valid ("same" padding). ~1e11 variants before the option orders."""
    h = rng.randint(8, 64)
    return {"c": rng.choice([1, 3, 3, 3, 4, 8, 16]), "h": h, "w": h if rng.random() < 0.6 else rng.randint(8, 64),
            "hidden": rng.randint(32, 1024), "k": rng.choice([3, 5, 7]), "c_out": rng.randint(8, 128),
            "orders": shuffled_orders(rng, CHOICES)}


def note(p: dict) -> str:
    return (f"img={p['c']}x{p['h']}x{p['w']} D={p['hidden']} K={p['k']} Cout={p['c_out']} "
            + " ".join(choice_answer(p["orders"][n]) for n in sorted(CHOICES)))


def answers(p: dict) -> dict:
    return {**solve(p), **{name: choice_answer(p["orders"][name]) for name in sorted(CHOICES)}}


def parts(p: dict) -> list[Part]:
    ref = solve(p)
    c, h, w, d, k, co = p["c"], p["h"], p["w"], p["hidden"], p["k"], p["c_out"]
    n_in, n_out = c * h * w, co * h * w

    def fixed(part_id):
        return lambda probe: ref[part_id]

    no_bias = say("You left out the biases.", "遗漏了偏置。")
    inverted = say("Put the larger layer on top: the ratio asked for is how many times more parameters it has.",
                   "比值应为较大的层除以卷积层：即它的参数量是卷积层的多少倍。")
    return [
        Part("fcconv_fc_params", 1, say("FC layer parameters", "全连接层参数量"),
             probe=lambda rng: read_variable("fcconv_fc_params"), reference=fixed("fcconv_fc_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["fcconv_fc_params"], [
                 Mistake("FC_NO_BIAS", n_in * d, no_bias),
                 Mistake("FC_NO_CHANNELS", h * w * d + d, say("The flattened image has C·H·W inputs, channels included.",
                                                             "展平后的输入有 C·H·W 个元素，要包括通道数。"))])),
        Part("fcconv_conv_params", 1, say("Conv layer parameters", "卷积层参数量"),
             probe=lambda rng: read_variable("fcconv_conv_params"), reference=fixed("fcconv_conv_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["fcconv_conv_params"], [
                 Mistake("CONV_NO_BIAS", k * k * c * co, no_bias),
                 Mistake("CONV_NO_CIN", (k * k + 1) * co, say("Each kernel spans all C input channels.", "每个卷积核覆盖全部 C 个输入通道。"))])),
        Part("fcconv_fc_same_params", 2, say("FC layer with the conv's output volume", "输出与卷积相同的全连接层参数量"),
             probe=lambda rng: read_variable("fcconv_fc_same_params"), reference=fixed("fcconv_fc_same_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["fcconv_fc_same_params"], [
                 Mistake("FC_NO_BIAS", n_in * n_out, no_bias),
                 Mistake("FC_BIAS_PER_CHANNEL", n_in * n_out + co,
                         say("A fully connected layer has one bias per output unit: C_out·H·W of them.", "全连接层每个输出单元一个偏置，共 C_out·H·W 个。"))])),
        Part("fcconv_local_params", 2, say("Locally connected layer parameters", "局部连接层（不共享参数）参数量"),
             probe=lambda rng: read_variable("fcconv_local_params"), reference=fixed("fcconv_local_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["fcconv_local_params"], [
                 Mistake("LOCAL_SHARED", ref["fcconv_conv_params"],
                         say("That is the shared conv; without sharing every output position has its own kernels.",
                             "这是共享参数的卷积；不共享时每个输出位置都有自己的一组卷积核。")),
                 Mistake("LOCAL_BIAS_PER_CHANNEL", h * w * co * c * k * k + co,
                         say("Without sharing, each output unit (C_out·H·W of them) has its own bias.", "不共享参数时，每个输出单元（共 C_out·H·W 个）都有自己的偏置。")),
                 Mistake("LOCAL_NO_BIAS", h * w * co * c * k * k, no_bias)])),
        Part("fcconv_sharing_ratio", 1, say("Saving from weight sharing (ratio)", "参数共享带来的节省（比值）"),
             probe=lambda rng: read_variable("fcconv_sharing_ratio"), reference=fixed("fcconv_sharing_ratio"),
             check=Number(rel=2e-3),
             mistakes=lambda probe: [Mistake("RATIO_INVERTED", 1 / ref["fcconv_sharing_ratio"], inverted)]),
        Part("fcconv_fc_conv_ratio", 1, say("FC / conv parameter ratio", "全连接 / 卷积 参数量之比"),
             probe=lambda rng: read_variable("fcconv_fc_conv_ratio"), reference=fixed("fcconv_fc_conv_ratio"),
             check=Number(rel=2e-3),
             mistakes=lambda probe: [Mistake("RATIO_INVERTED", 1 / ref["fcconv_fc_conv_ratio"], inverted),
                                     Mistake("RATIO_WRONG_FC", ref["fcconv_fc_params"] / ref["fcconv_conv_params"],
                                             say("Compare with the FC layer that has the SAME output volume as the conv (part c).",
                                                 "应与输出体积和卷积相同的全连接层（第 (c) 问）比较。"))]),
        Part("fcconv_roles", 3, say("Roles of conv, pooling and FC layers", "卷积层、池化层、全连接层的作用"),
             probe=lambda rng: read_variable("fcconv_roles"), reference=lambda probe: MODEL_ROLES,
             check=Rubric(concepts=(
                 ("feature_extraction", ("特征提取", "提取", "局部特征", "边缘", "纹理", "feature extract", "extract", "edge", "texture", "detect",
                                        "pattern", "learn features", "learns features", "find features", "模式", "识别")),
                 ("downsampling", ("下采样", "降采样", "降低分辨率", "减小", "缩小", "压缩", "downsampl", "subsampl", "spatial size", "reduces the size", "reduce the size", "smaller",
                                  "shrink", "pooling", "lower resolution", "resolution", "coarser", "池化", "分辨率")),
                 ("invariance", ("平移不变", "不变性", "鲁棒", "invarian", "robust", "small shift", "shifted", "moves a little",
                                "insensitive", "does not matter where", "doesn't matter where", "位移", "不敏感")),
                 ("classification", ("分类", "整合", "综合", "决策", "回归", "classif", "combin", "decision", "regression", "integrat",
                                    "predict", "label", "which class", "output class", "预测", "类别")),
             )), kind="written"),
        Part("fcconv_sharing", 3, say("Connections and weight sharing: conv vs FC", "连接方式与参数共享：卷积 vs 全连接"),
             probe=lambda rng: read_variable("fcconv_sharing"), reference=lambda probe: MODEL_SHARING,
             check=Rubric(concepts=(
                 ("local_connectivity", ("局部连接", "局部区域", "局部感受野", "local connect", "locally connect", "local region", "local receptive", "local patch", "local neighbo",
                                        "small region", "small patch", "small window", "nearby pixels", "neighbouring pixels",
                                        "neighboring pixels", "only sees", "邻近", "附近的像素")),
                 ("weight_sharing", ("参数共享", "权值共享", "权重共享", "共享", "weight shar", "parameter shar", "shared weight", "shares", "same kernel", "same weights", "same filter",
                                    "reuse", "re-use", "reused", "slid", "everywhere", "复用", "重复使用", "滑动")),
                 ("fewer_parameters", ("参数量", "参数数量", "参数少", "参数更少", "减少参数", "fewer param", "fewer weight", "number of parameters", "parameter count", "less param", "fewer",
                                      "far less", "much less", "smaller model", "less weights", "少得多", "更少")),
                 ("overfitting", ("过拟合", "泛化", "overfit", "over-fit", "generaliz", "generalis", "memoris", "memoriz",
                                  "记住", "死记")),
             )), kind="written"),
        choice_part("fcconv_choice_pool", CHOICES["fcconv_choice_pool"], p["orders"]["fcconv_choice_pool"]),
        choice_part("fcconv_choice_sharing", CHOICES["fcconv_choice_sharing"], p["orders"]["fcconv_choice_sharing"]),
    ]


PROBLEM = Problem(
    id="conv-vs-fc",
    title=say("Convolution vs fully connected layers", "卷积层与全连接层"),
    points=16, sample=sample, note=note, parts=parts, answers=answers,
    context=lambda p: choice_context(CHOICES, p["orders"]),
    template=Path(__file__).with_name("notebook.j2"),
)

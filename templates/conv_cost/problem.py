"""Parameters, MACs and FLOPs of a randomized conv layer and of its 1x1 replacement (seed homework, problem 3)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Exact, Formula, Number, Rubric
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.conv_cost import MODEL_ROLE_1X1, out_size, solve

FORMULA = Formula(symbols=("K", "C_in", "C_out"))


def sample(rng: random.Random) -> dict:
    """Padding is "same" (K//2) or one more, so a 1x1 conv with the same stride and padding P - K//2
    always gives the same output size: valid by construction. ~5e8 variants."""
    k = rng.choice([3, 5, 7])
    extra = rng.choice([0, 0, 0, 1])
    h = rng.randint(14, 64)
    w = h if rng.random() < 0.5 else rng.randint(14, 64)
    return {"c_in": rng.randint(3, 96), "c_out": rng.randint(8, 192), "k": k, "stride": rng.choice([1, 2]),
            "padding": k // 2 + extra, "padding1x1": extra, "h": h, "w": w}


def note(p: dict) -> str:
    return f"K={p['k']} S={p['stride']} P={p['padding']} Cin={p['c_in']} Cout={p['c_out']} H={p['h']} W={p['w']}"


def answers(p: dict) -> dict:
    return solve(p)


def parts(p: dict) -> list[Part]:
    ref = solve(p)
    k, s, cin, cout, h, w = p["k"], p["stride"], p["c_in"], p["c_out"], p["h"], p["w"]
    ho, wo = ref["conv_out_hw"]
    macs, macs1 = ho * wo * cout * cin * k * k, ho * wo * cout * cin
    in_macs, in_macs1 = h * w * cout * cin * k * k, h * w * cout * cin

    def fixed(part_id):
        return lambda probe: ref[part_id]

    gave_macs = say("You gave the MACs (multiply-accumulates). Here FLOPs = 2 × MACs: each MAC is one multiplication and one addition.",
                    "你给出的是 MACs（乘加次数）。本题约定 FLOPs = 2 × MACs:每次乘加包含一次乘法和一次加法。")
    input_size = say("You used the input size H×W; the kernel is applied once per OUTPUT position, so use H_out×W_out.",
                     "你使用了输入尺寸 H×W;卷积核在每个输出位置计算一次，应使用输出尺寸 H_out×W_out。")
    no_bias = say("You left out the bias: every output channel has one bias, so add C_out.",
                  "遗漏了偏置：每个输出通道有一个偏置，应加上 C_out。")
    inverted = say("The ratio is original / 1×1, not the other way round.", "比值应为 原卷积 / 1×1 卷积，你把它倒过来了。")

    out_mistakes = distinct_mistakes(ref["conv_out_hw"], [
        Mistake("OUT_IGNORED_PADDING", [out_size(h, k, s, 0), out_size(w, k, s, 0)],
                say("You left out the padding: H_out = floor((H + 2P - K)/S) + 1.", "遗漏了填充:H_out = floor((H + 2P - K)/S) + 1。")),
        Mistake("OUT_IGNORED_STRIDE", [out_size(h, k, 1, p["padding"]), out_size(w, k, 1, p["padding"])],
                say("You ignored the stride: divide (H + 2P - K) by S before adding 1.", "忽略了步幅：应先用 (H + 2P - K) 除以 S 再加 1。")),
        Mistake("OUT_ROUNDED_UP", [-((-(h + 2 * p["padding"] - k)) // s) + 1, -((-(w + 2 * p["padding"] - k)) // s) + 1],
                say("Round (H + 2P - K)/S down, as PyTorch does.", "(H + 2P - K)/S 应向下取整（与 PyTorch 一致）。")),
    ])
    return [
        Part("conv_out_hw", 1, say("Output size (H_out, W_out)", "输出尺寸 (H_out, W_out)"),
             probe=lambda rng: read_variable("conv_out_hw"), reference=fixed("conv_out_hw"),
             check=Array(rtol=0, atol=0), mistakes=lambda probe: out_mistakes),
        Part("conv_params", 2, say("Parameters of the conv layer", "卷积层参数量"),
             probe=lambda rng: read_variable("conv_params"), reference=fixed("conv_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["conv_params"], [
                 Mistake("CONV_NO_BIAS", k * k * cin * cout, no_bias),
                 Mistake("CONV_NO_CIN", (k * k + 1) * cout,
                         say("Each kernel spans all C_in input channels: it has K·K·C_in weights.", "每个卷积核覆盖全部 C_in 个输入通道，有 K·K·C_in 个权重。")),
                 Mistake("CONV_BIAS_PER_INPUT", (k * k + 1) * cin * cout,
                         say("There is one bias per output channel, not one per (input, output) pair.", "每个输出通道只有一个偏置，而不是每对输入/输出通道一个。")),
             ])),
        Part("conv_macs", 2, say("MACs of the conv layer", "卷积层的 MACs"),
             probe=lambda rng: read_variable("conv_macs"), reference=fixed("conv_macs"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["conv_macs"], [
                 Mistake("MACS_INPUT_SIZE", in_macs, input_size),
                 Mistake("MACS_GAVE_FLOPS", 2 * macs, say("That is 2 × MACs (the FLOPs); a MAC counts one multiply-add pair once.",
                                                          "这是 2 × MACs（即 FLOPs）；一次乘加只算一个 MAC。")),
                 Mistake("MACS_NO_CIN", ho * wo * cout * k * k,
                         say("Each output value sums over K·K·C_in products.", "每个输出值是 K·K·C_in 个乘积之和。")),
             ])),
        Part("conv_flops", 1, say("FLOPs of the conv layer", "卷积层的 FLOPs"),
             probe=lambda rng: read_variable("conv_flops"), reference=fixed("conv_flops"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["conv_flops"], [
                 Mistake("FLOPS_GAVE_MACS", macs, gave_macs),
                 Mistake("FLOPS_INPUT_SIZE", 2 * in_macs, input_size),
                 Mistake("FLOPS_COUNTED_BIAS", 2 * macs + ho * wo * cout,
                         say("By the stated convention the bias additions are not counted.", "按题目约定，偏置加法不计入。")),
             ])),
        Part("conv1x1_params", 1, say("Parameters of the 1×1 conv", "1×1 卷积参数量"),
             probe=lambda rng: read_variable("conv1x1_params"), reference=fixed("conv1x1_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["conv1x1_params"], [
                 Mistake("CONV_NO_BIAS", cin * cout, no_bias),
                 Mistake("CONV1X1_KEPT_K", ref["conv_params"],
                         say("A 1×1 kernel has K = 1: C_in weights per output channel.", "1×1 卷积核 K = 1：每个输出通道有 C_in 个权重。")),
             ])),
        Part("conv1x1_flops", 1, say("FLOPs of the 1×1 conv", "1×1 卷积的 FLOPs"),
             probe=lambda rng: read_variable("conv1x1_flops"), reference=fixed("conv1x1_flops"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["conv1x1_flops"], [
                 Mistake("FLOPS_GAVE_MACS", macs1, gave_macs),
                 Mistake("FLOPS_INPUT_SIZE", 2 * in_macs1, input_size),
             ])),
        Part("conv_param_ratio", 1, say("Parameter ratio original / 1×1", "参数量之比 原卷积 / 1×1"),
             probe=lambda rng: read_variable("conv_param_ratio"), reference=fixed("conv_param_ratio"), check=Number(rel=2e-3),
             mistakes=lambda probe: distinct_mistakes(ref["conv_param_ratio"], [
                 Mistake("RATIO_INVERTED", 1 / ref["conv_param_ratio"], inverted),
                 Mistake("RATIO_NO_BIAS", float(k * k),
                         say("K² is the ratio without biases; this problem counts the bias.", "K² 是不含偏置时的比值；本题参数量含偏置。")),
             ])),
        Part("conv_flops_ratio", 1, say("FLOPs ratio original / 1×1", "FLOPs 之比 原卷积 / 1×1"),
             probe=lambda rng: read_variable("conv_flops_ratio"), reference=fixed("conv_flops_ratio"), check=Number(rel=2e-3),
             mistakes=lambda probe: [Mistake("RATIO_INVERTED", 1 / ref["conv_flops_ratio"], inverted)]),
        Part("conv_params_formula", 2, say("Parameter count as a formula in K, C_in, C_out", "参数量公式(K、C_in、C_out)"),
             probe=lambda rng: read_variable("conv_params_formula"), reference=fixed("conv_params_formula"), check=FORMULA,
             mistakes=lambda probe: [
                 Mistake("FORMULA_NO_BIAS", "K**2*C_in*C_out", no_bias),
                 Mistake("FORMULA_BIAS_PER_INPUT", "(K**2 + 1)*C_in*C_out",
                         say("One bias per output channel: + C_out, not + C_in·C_out.", "每个输出通道一个偏置：应加 C_out,而不是 C_in·C_out。")),
                 Mistake("FORMULA_NO_CIN", "(K**2 + 1)*C_out",
                         say("Each kernel has K·K·C_in weights.", "每个卷积核有 K·K·C_in 个权重。")),
             ], kind="formula"),
        Part("conv1x1_role", 2, say("The roles of a 1×1 convolution", "1×1 卷积的核心作用"),
             probe=lambda rng: read_variable("conv1x1_role"), reference=lambda probe: MODEL_ROLE_1X1,
             check=Rubric(concepts=(
                 ("channels", ("降维", "升维", "通道数", "维度", "reduce", "dimension", "number of channels", "channel count", "bottleneck", "瓶颈",
                                "change the channel", "changes the channel", "compress", "expand", "shrink the channel",
                                "more or fewer channels", "压缩通道", "改变通道")),
                 ("cross_channel", ("跨通道", "通道间", "融合", "组合", "交互", "cross-channel", "across channels", "between channels", "mix", "combin",
                                     "blend", "linear combination", "weighted sum", "线性组合", "加权")),
                 ("nonlinearity", ("非线性", "nonlinear", "non-linear", "non linear", "relu", "激活", "activation", "rectif")),
             )), kind="written"),
    ]


def context(p: dict) -> dict:
    return {}


PROBLEM = Problem(
    id="conv-cost",
    title=say("Parameters and FLOPs of a convolution layer", "卷积层的参数量与计算量"),
    points=14, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)

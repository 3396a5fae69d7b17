"""Depthwise separable convolution: principle, parameter and cost formulas, a numeric example and the
module itself (seed homework, problem 6)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.behaviour import ModuleSpec, Variant, module_case, module_part
from hwkit.checks import Exact, Formula, Number, Rubric
from hwkit.choices import distinct_mistakes
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.depthwise_separable import COST_FORMULA, MODEL_PRINCIPLE, module_configs, module_variant, solve

CHANNEL_FORMULA = Formula(symbols=("K", "C_in", "C_out"))
COST_CHECK = Formula(symbols=("K", "C_in", "C_out", "H_out", "W_out"))
WITH_BIAS = say("This problem has no biases (bias=False everywhere).", "本题中所有卷积都不含偏置(bias=False)。")

# Graded by behaviour (hwkit/behaviour.py): with its weights set by the grader, the module must compute
# what a depthwise K x K conv followed by a 1 x 1 conv computes, written any way (groups=, a ModuleList of
# per-channel convs, a Linear pointwise step).
MODULE = ModuleSpec("DepthwiseSeparableConv", lambda config, **sw: module_variant(*config, **sw), mistakes=(
    Variant("DSCONV_NO_GROUPS", (("standard", True),), say(
        "Your module is a standard K×K conv (every output mixes all channels with its own K×K kernels): use "
        "groups=in_channels for the depthwise step, then a 1×1 conv.",
        "你的模块是一个标准 K×K 卷积：深度卷积应设置 groups=in_channels,之后再接 1×1 卷积。"), 0.0),
    Variant("DSCONV_WITH_BIAS", (("bias", True),), WITH_BIAS, 0.5),
    Variant("DSCONV_POINTWISE_FIRST", (("pointwise_first", True),), say(
        "Depthwise first (on the C_in input channels), then the 1×1 pointwise conv.",
        "应先做深度卷积（作用在 C_in 个输入通道上），再做 1×1 逐点卷积。"), 0.25),
))


def _module_cases(rng: random.Random) -> list[dict]:
    g = np.random.default_rng(rng.getrandbits(63))
    return [module_case(rng, config, g.standard_normal(shape).astype(np.float32))
            for config, shape in module_configs(rng)]


def sample(rng: random.Random) -> dict:
    """Always valid: stride 1 and padding K//2 keep H x W. ~3e8 variants."""
    h = rng.randint(8, 64)
    return {"c_in": rng.randint(8, 128), "c_out": rng.randint(16, 256), "k": rng.choice([3, 5, 7]),
            "h": h, "w": h if rng.random() < 0.6 else rng.randint(8, 64)}


def note(p: dict) -> str:
    return f"K={p['k']} Cin={p['c_in']} Cout={p['c_out']} H={p['h']} W={p['w']}"


def answers(p: dict) -> dict:
    return solve(p)


def parts(p: dict) -> list[Part]:
    ref = solve(p)
    k, cin, cout, h, w = p["k"], p["c_in"], p["c_out"], p["h"], p["w"]

    def fixed(part_id):
        return lambda probe: ref[part_id]

    with_bias = WITH_BIAS
    full_depthwise = say("The depthwise step has ONE K×K filter per input channel (groups = C_in), not a full C_in→C_in conv.",
                         "深度卷积对每个输入通道只用一个 K×K 卷积核(groups = C_in)，而不是完整的 C_in→C_in 卷积。")
    per_output = say("The depthwise step works on the C_in input channels; the 1×1 step then maps C_in → C_out.",
                     "深度卷积作用在 C_in 个输入通道上；之后由 1×1 卷积把 C_in 映射到 C_out。")
    gave_flops = say("That is 2 × MACs (FLOPs); here count each multiply-accumulate once.", "这是 2 × MACs(FLOPs)；本题每次乘加只计一次。")
    no_spatial = say("The kernels run once per output position: multiply by H_out·W_out.", "卷积核在每个输出位置都要计算一次：要乘以 H_out·W_out。")
    inverted = say("The ratio asked for is depthwise-separable / standard.", "题目要求的比值是 深度可分离 / 标准卷积。")
    sep_macs = h * w * (k * k * cin + cin * cout)
    return [
        Part("ds_principle", 2, say("Principle of depthwise separable convolution", "深度可分离卷积的原理"),
             probe=lambda rng: read_variable("ds_principle"), reference=lambda probe: MODEL_PRINCIPLE["zh"],
             check=Rubric(concepts=(
                 ("depthwise", ("深度卷积", "逐通道", "每个通道", "每个输入通道", "depthwise", "depth-wise", "per-channel",
                                "per channel", "each channel", "each input channel", "channel-wise", "channelwise",
                                "every channel", "on its own", "separately per channel", "channel by channel",
                                "one filter per channel", "one kernel per channel", "单独", "各自", "分别对每个", "一个通道一个")),
                 ("pointwise", ("逐点", "点卷积", "1×1", "1x1", "1*1", "pointwise", "point-wise", "1 x 1", "1 × 1", "1-by-1",
                                "1 by 1", "one by one", "one-by-one")),
                 ("decoupling", ("解耦", "拆分", "分离", "分解", "分开", "两步", "decoupl", "separat", "split", "factori", "two steps",
                                 "two stages", "two-step", "two parts", "break", "in two", "分两步", "两个步骤", "两个阶段")),
                 ("cost", ("参数量", "计算量", "减少", "降低", "fewer", "reduc", "cheaper", "less comput", "smaller",
                           "efficien", "lighter", "fraction of", "less memory", "faster", "节省", "高效", "轻量", "更少")),
             )), kind="written"),
        Part("ds_standard_formula", 1, say("Parameters of a standard conv (formula)", "标准卷积参数量公式"),
             probe=lambda rng: read_variable("ds_standard_formula"), reference=fixed("ds_standard_formula"),
             check=CHANNEL_FORMULA, kind="formula", mistakes=lambda probe: [
                 Mistake("FORMULA_WITH_BIAS", "K**2*C_in*C_out + C_out", with_bias),
                 Mistake("FORMULA_NO_CIN", "K**2*C_out", say("Each standard kernel spans all C_in channels.", "标准卷积的每个卷积核覆盖全部 C_in 个通道。"))]),
        Part("ds_separable_formula", 2, say("Parameters of a depthwise separable conv (formula)", "深度可分离卷积参数量公式"),
             probe=lambda rng: read_variable("ds_separable_formula"), reference=fixed("ds_separable_formula"),
             check=CHANNEL_FORMULA, kind="formula", mistakes=lambda probe: [
                 Mistake("DSCONV_NO_GROUPS", "K**2*C_in*C_out", full_depthwise),
                 Mistake("DS_DEPTHWISE_FULL", "K**2*C_in**2 + C_in*C_out", full_depthwise),
                 Mistake("DS_DEPTHWISE_PER_OUTPUT", "K**2*C_out + C_in*C_out", per_output),
                 Mistake("DS_WITH_BIAS", "K**2*C_in + C_in*C_out + C_in + C_out", with_bias),
                 Mistake("DS_NO_POINTWISE", "K**2*C_in", say("Add the 1×1 pointwise conv: C_in·C_out weights.", "还要加上 1×1 逐点卷积的 C_in·C_out 个权重。"))]),
        Part("ds_cost_formula", 2, say("MACs of a depthwise separable conv (formula)", "深度可分离卷积计算量（MACs）公式"),
             probe=lambda rng: read_variable("ds_cost_formula"), reference=fixed("ds_cost_formula"),
             check=COST_CHECK, kind="formula", mistakes=lambda probe: [
                 Mistake("COST_NO_SPATIAL", "K**2*C_in + C_in*C_out", no_spatial),
                 Mistake("COST_GAVE_FLOPS", f"2*{COST_FORMULA}", gave_flops),
                 Mistake("COST_STANDARD", "H_out*W_out*K**2*C_in*C_out",
                         say("That is the cost of the standard conv.", "这是标准卷积的计算量。"))]),
        Part("ds_ratio_formula", 1, say("Ratio separable / standard (formula)", "深度可分离 / 标准 之比（公式）"),
             probe=lambda rng: read_variable("ds_ratio_formula"), reference=fixed("ds_ratio_formula"),
             check=CHANNEL_FORMULA, kind="formula", mistakes=lambda probe: [
                 Mistake("RATIO_INVERTED", "K**2*C_out/(K**2 + C_out)", inverted)]),
        Part("ds_standard_params", 1, say("Standard conv parameters (numbers)", "标准卷积参数量（数值）"),
             probe=lambda rng: read_variable("ds_standard_params"), reference=fixed("ds_standard_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["ds_standard_params"], [
                 Mistake("CONV_WITH_BIAS", ref["ds_standard_params"] + cout, with_bias)])),
        Part("ds_separable_params", 1, say("Depthwise separable parameters (numbers)", "深度可分离卷积参数量（数值）"),
             probe=lambda rng: read_variable("ds_separable_params"), reference=fixed("ds_separable_params"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["ds_separable_params"], [
                 Mistake("DSCONV_NO_GROUPS", k * k * cin * cout, full_depthwise),
                 Mistake("DS_DEPTHWISE_FULL", k * k * cin * cin + cin * cout, full_depthwise),
                 Mistake("DS_DEPTHWISE_PER_OUTPUT", k * k * cout + cin * cout, per_output),
                 Mistake("DS_WITH_BIAS", ref["ds_separable_params"] + cin + cout, with_bias)])),
        Part("ds_param_ratio", 1, say("Parameter ratio separable / standard", "参数量之比 深度可分离 / 标准"),
             probe=lambda rng: read_variable("ds_param_ratio"), reference=fixed("ds_param_ratio"), check=Number(rel=2e-3),
             mistakes=lambda probe: [Mistake("RATIO_INVERTED", 1 / ref["ds_param_ratio"], inverted)]),
        Part("ds_standard_macs", 1, say("Standard conv MACs", "标准卷积 MACs"),
             probe=lambda rng: read_variable("ds_standard_macs"), reference=fixed("ds_standard_macs"), check=Exact(),
             mistakes=lambda probe: [Mistake("MACS_GAVE_FLOPS", 2 * ref["ds_standard_macs"], gave_flops),
                                     Mistake("MACS_NO_SPATIAL", k * k * cin * cout, no_spatial)]),
        Part("ds_separable_macs", 1, say("Depthwise separable MACs", "深度可分离卷积 MACs"),
             probe=lambda rng: read_variable("ds_separable_macs"), reference=fixed("ds_separable_macs"), check=Exact(),
             mistakes=lambda probe: [Mistake("MACS_GAVE_FLOPS", 2 * sep_macs, gave_flops),
                                     Mistake("MACS_NO_SPATIAL", k * k * cin + cin * cout, no_spatial),
                                     Mistake("DS_DEPTHWISE_PER_OUTPUT", h * w * (k * k * cout + cin * cout), per_output)]),
        module_part("ds_module", 6, say("Module DepthwiseSeparableConv", "模块 DepthwiseSeparableConv"), MODULE,
                    cases=_module_cases, public_cases=lambda: _module_cases(random.Random(20240611))),
    ]


PROBLEM = Problem(
    id="depthwise-separable",
    title=say("Depthwise separable convolution", "深度可分离卷积"),
    points=19, sample=sample, note=note, parts=parts, answers=answers,
    template=Path(__file__).with_name("notebook.j2"),
)

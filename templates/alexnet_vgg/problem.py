"""AlexNet and VGG: stacked 3x3 convolutions vs one large kernel (parameters, receptive field, FLOPs),
AlexNet's and VGG's innovations (seed homework, problem 8)."""
from __future__ import annotations

import random
from pathlib import Path

from hwkit.checks import Array, Exact, Number, Rubric
from hwkit.choices import choice_answer, choice_context, choice_part, distinct_mistakes, shuffled_orders
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.alexnet_vgg import CHOICES, MODEL_ALEXNET, MODEL_VGG, solve

RATIO = Number(rel=2e-3)


def sample(rng: random.Random) -> dict:
    """Always valid ("same" padding). ~1e6 variants before the option orders."""
    h = rng.randint(8, 64)
    return {"c_in": rng.randint(3, 128), "c": rng.randint(8, 256), "h": h, "w": h if rng.random() < 0.6 else rng.randint(8, 64),
            "orders": shuffled_orders(rng, CHOICES)}


def note(p: dict) -> str:
    return f"Cin={p['c_in']} C={p['c']} H={p['h']} W={p['w']} " + " ".join(choice_answer(p["orders"][n]) for n in sorted(CHOICES))


def answers(p: dict) -> dict:
    return {**solve(p), **{name: choice_answer(p["orders"][name]) for name in sorted(CHOICES)}}


def parts(p: dict) -> list[Part]:
    ref = solve(p)
    ci, c, h, w = p["c_in"], p["c"], p["h"], p["w"]

    def fixed(part_id):
        return lambda probe: ref[part_id]

    no_bias = say("Every conv has a bias here: add C per layer.", "本题每个卷积都有偏置：每层加 C。")
    same_cin = say("Only the FIRST conv of the stack sees C_in channels; the next ones map C → C.",
                   "只有堆叠中的第一个卷积输入 C_in 个通道，之后的卷积是 C → C。")
    all_c = say("The first conv of the stack maps C_in → C, not C → C.", "堆叠中的第一个卷积是 C_in → C,而不是 C → C。")

    def stack_mistakes(n: int, key: str) -> list[Mistake]:
        return distinct_mistakes(ref[key], [
            Mistake("CONV_NO_BIAS", 9 * ci * c + (n - 1) * 9 * c * c, no_bias),
            Mistake("STACK_ALL_CIN", n * (9 * ci * c + c), same_cin),
            Mistake("STACK_ALL_C", n * (9 * c * c + c), all_c),
        ])

    def single_mistakes(k: int, key: str) -> list[Mistake]:
        return distinct_mistakes(ref[key], [Mistake("CONV_NO_BIAS", k * k * ci * c, no_bias),
                                    Mistake("CONV_NO_CIN", (k * k + 1) * c, say("A kernel spans all C_in input channels.", "每个卷积核覆盖全部 C_in 个输入通道。"))])

    inverted = say("The ratio asked for is stack / single large kernel.", "题目要求的比值是 堆叠 / 单个大卷积核。")
    gave_macs = say("You gave MACs; FLOPs = 2 × MACs here.", "你给出的是 MACs;本题 FLOPs = 2 × MACs。")
    macs_three3, macs_one7 = ref["vgg_three3_flops"] // 2, ref["vgg_one7_flops"] // 2
    return [
        Part("vgg_two3_params", 1, say("Two stacked 3×3 convs: parameters", "两层 3×3 卷积的参数量"),
             probe=lambda rng: read_variable("vgg_two3_params"), reference=fixed("vgg_two3_params"), check=Exact(),
             mistakes=lambda probe: stack_mistakes(2, "vgg_two3_params")),
        Part("vgg_one5_params", 1, say("One 5×5 conv: parameters", "一层 5×5 卷积的参数量"),
             probe=lambda rng: read_variable("vgg_one5_params"), reference=fixed("vgg_one5_params"), check=Exact(),
             mistakes=lambda probe: single_mistakes(5, "vgg_one5_params")),
        Part("vgg_three3_params", 1, say("Three stacked 3×3 convs: parameters", "三层 3×3 卷积的参数量"),
             probe=lambda rng: read_variable("vgg_three3_params"), reference=fixed("vgg_three3_params"), check=Exact(),
             mistakes=lambda probe: stack_mistakes(3, "vgg_three3_params")),
        Part("vgg_one7_params", 1, say("One 7×7 conv: parameters", "一层 7×7 卷积的参数量"),
             probe=lambda rng: read_variable("vgg_one7_params"), reference=fixed("vgg_one7_params"), check=Exact(),
             mistakes=lambda probe: single_mistakes(7, "vgg_one7_params")),
        Part("vgg_rf", 1, say("Receptive fields of the two stacks", "两种堆叠的感受野"),
             probe=lambda rng: read_variable("vgg_rf"), reference=fixed("vgg_rf"), check=Array(rtol=0, atol=0),
             mistakes=lambda probe: [
                 Mistake("RF_SUMMED_KERNELS", [6, 9], say("Each extra 3×3 layer (stride 1) adds K − 1 = 2, not 3: R = 1 + n·2.",
                                                          "每增加一层 3×3（步幅 1）感受野增加 K − 1 = 2，而不是 3:R = 1 + 2n。")),
                 Mistake("RF_SINGLE_LAYER", [3, 3], say("Stacking grows the receptive field: R = 1 + n·(K − 1).", "堆叠会扩大感受野:R = 1 + n·(K − 1)。"))]),
        Part("vgg_ratio5", 1, say("Parameter ratio two 3×3 / one 5×5", "参数量之比 两层 3×3 / 一层 5×5"),
             probe=lambda rng: read_variable("vgg_ratio5"), reference=fixed("vgg_ratio5"), check=RATIO,
             mistakes=lambda probe: distinct_mistakes(ref["vgg_ratio5"], [
                 Mistake("RATIO_INVERTED", 1 / ref["vgg_ratio5"], inverted),
                 Mistake("RATIO_SQUARE_CHANNELS", 18 / 25, say("18/25 holds only when C_in = C and without biases; use this problem's layers.",
                                                               "18/25 只在 C_in = C 且无偏置时成立；请按本题的层计算。"))], RATIO)),
        Part("vgg_ratio7", 1, say("Parameter ratio three 3×3 / one 7×7", "参数量之比 三层 3×3 / 一层 7×7"),
             probe=lambda rng: read_variable("vgg_ratio7"), reference=fixed("vgg_ratio7"), check=RATIO,
             mistakes=lambda probe: distinct_mistakes(ref["vgg_ratio7"], [
                 Mistake("RATIO_INVERTED", 1 / ref["vgg_ratio7"], inverted),
                 Mistake("RATIO_SQUARE_CHANNELS", 27 / 49, say("27/49 holds only when C_in = C and without biases; use this problem's layers.",
                                                               "27/49 只在 C_in = C 且无偏置时成立；请按本题的层计算。"))], RATIO)),
        Part("vgg_three3_flops", 1, say("FLOPs of three 3×3 convs", "三层 3×3 卷积的 FLOPs"),
             probe=lambda rng: read_variable("vgg_three3_flops"), reference=fixed("vgg_three3_flops"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["vgg_three3_flops"], [
                 Mistake("FLOPS_GAVE_MACS", macs_three3, gave_macs),
                 Mistake("FLOPS_ALL_CIN", 2 * h * w * 3 * 9 * ci * c, same_cin)])),
        Part("vgg_one7_flops", 1, say("FLOPs of one 7×7 conv", "一层 7×7 卷积的 FLOPs"),
             probe=lambda rng: read_variable("vgg_one7_flops"), reference=fixed("vgg_one7_flops"), check=Exact(),
             mistakes=lambda probe: distinct_mistakes(ref["vgg_one7_flops"], [
                 Mistake("FLOPS_GAVE_MACS", macs_one7, gave_macs),
                 Mistake("FLOPS_COUNTED_BIAS", 2 * macs_one7 + h * w * c, say("Bias additions are not counted here.", "本题不计偏置加法。"))])),
        Part("alexnet_innovations", 3, say("AlexNet's innovations", "AlexNet 的创新点"),
             probe=lambda rng: read_variable("alexnet_innovations"), reference=lambda probe: MODEL_ALEXNET,
             check=Rubric(concepts=(
                 ("relu", ("relu", "修正线性", "rectified", "rectifier", "max(0", "max(x, 0)", "max(x,0)", "线性整流", "整流")),
                 ("dropout", ("dropout", "drop out", "drops out", "randomly drop", "randomly zero", "randomly switch",
                              "randomly turn", "随机失活", "丢弃", "随机丢", "随机置零", "随机关闭")),
                 ("gpu", ("gpu", "显卡", "图形处理器", "graphics card", "graphics processor", "graphics processing", "video card",
                          "cuda", "nvidia", "gtx", "图形卡", "英伟达")),
                 ("faster_convergence", ("梯度消失", "收敛", "饱和", "加快", "加速", "vanish", "converge", "saturat", "faster", "speed",
                                         "quicker", "more quickly", "训练更快", "更快")),
                 ("overfitting", ("过拟合", "泛化", "overfit", "over-fit", "generaliz", "generalis", "memoris", "memoriz",
                                  "记住", "死记", "背下")),
             )), kind="written"),
        Part("vgg_innovations", 2, say("VGG's innovations", "VGG 的创新点"),
             probe=lambda rng: read_variable("vgg_innovations"), reference=lambda probe: MODEL_VGG,
             check=Rubric(concepts=(
                 ("small_kernels", ("3×3", "3x3", "3*3", "小卷积核", "小卷积", "小的卷积核", "small kernel", "small filter", "small convolution",
                                  "3 x 3", "3 × 3", "3 by 3", "three by three", "tiny filter", "tiny kernel", "smaller filter",
                                  "smaller kernel")),
                 ("depth", ("深度", "更深", "加深", "层数", "deeper", "depth", "more layers", "many layers", "stack", "16 layers",
                            "19 layers", "16 or 19", "很多层", "堆叠")),
                 ("uniform_design", ("统一", "规则", "模块", "重复", "简洁", "uniform", "regular", "modular", "repeat", "simple", "homogeneous",
                                     "consistent", "same design", "same structure", "same pattern", "一致", "相同的结构")),
             )), kind="written"),
        choice_part("vgg_choice_stack", CHOICES["vgg_choice_stack"], p["orders"]["vgg_choice_stack"]),
        choice_part("alexnet_choice_relu", CHOICES["alexnet_choice_relu"], p["orders"]["alexnet_choice_relu"]),
    ]


PROBLEM = Problem(
    id="alexnet-vgg",
    title=say("AlexNet and VGG: small stacked kernels", "AlexNet 与 VGG:小卷积核的堆叠"),
    points=16, sample=sample, note=note, parts=parts, answers=answers,
    context=lambda p: choice_context(CHOICES, p["orders"]),
    template=Path(__file__).with_name("notebook.j2"),
)

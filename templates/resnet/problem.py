"""ResNet-18/34: residual gradients, the BasicBlock and the whole network (seed homework, problem 9).

The modules are graded by behaviour only (hwkit/behaviour.py): with every parameter set by the grader, the
student's module must give the reference's output and input gradient on hidden inputs, including a block
whose residual branch is switched off. Attribute names and style (nn.Sequential, functional calls, when
the shortcut is computed) are free; counts and FLOPs the kernel could report are never asked for."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.behaviour import ModuleSpec, Variant, module_case, module_part
from hwkit.checks import Formula, Rubric
from hwkit.problem import Mistake, Part, Problem, say
from hwkit.probes import read_variable
from solutions.resnet import (LAYOUTS, MODEL_ANSWER_RESIDUAL, MODEL_DIAGRAM, BasicBlock, chain_gradient, make_resnet,
                              model_facts)


def sample(rng: random.Random) -> dict:
    return {"depth": rng.choice([18, 34]), "num_classes": rng.randint(2, 2000), "in_channels": rng.randint(1, 12),
            "chain_k": rng.randint(2, 4)}


def note(params: dict) -> str:
    return (f"ResNet-{params['depth']} classes={params['num_classes']} in={params['in_channels']} "
            f"chain={params['chain_k']}")


def answers(params: dict) -> dict:
    facts = model_facts(params["depth"], params["num_classes"], params["in_channels"], 32)
    return {"resnet_dydx": "dF + 1", "resnet_chain_grad": chain_gradient(params["chain_k"]),
            "resnet_params": facts["params"], "resnet_flops_32x32_batch2": facts["flops"]}


# ---- (c)-(e) modules, graded by behaviour ---------------------------------------------------------
# The kernel fills every tensor of the student's module from the grader's seed at first use and reports
# the output and input gradient on a hidden input; the reference (solutions/resnet.py) runs through the
# same function. A shortcut may be computed before, between or after the main branch's convolutions.

ORDERS = tuple((("order", order),) for order in ("after", "before", "between"))

_FEEDBACK = {
    "RESNET_BIAS_IN_CONV": say(
        "The convolutions carry a bias: a conv followed by BatchNorm needs none (BN's β plays that role), so every conv "
        "here is created with bias=False.",
        "卷积带有偏置：卷积后面接 BatchNorm 时不需要偏置（BN 的 β 起了偏置的作用），所以这里所有卷积都使用 bias=False。"),
    "RESNET_NO_DOWNSAMPLE": say(
        "The projection shortcut is missing: when the stride is not 1 or the channel count changes, the shortcut must be "
        "a 1×1 conv (with that stride) followed by BatchNorm, so that x matches F(x) in shape.",
        "缺少投影捷径：当步幅不为 1 或通道数改变时，捷径分支应为 1×1 卷积（使用相同步幅）加 BatchNorm,使 x 与 F(x) 的形状一致。"),
    "RESNET_SHORTCUT_NO_BN": say(
        "The projection shortcut is a 1×1 conv followed by a BatchNorm2d; the BatchNorm is missing.",
        "投影捷径由 1×1 卷积和其后的 BatchNorm2d 组成；你漏掉了 BatchNorm。"),
    "RESNET_ALWAYS_PROJECT": say(
        "A block whose stride is 1 and whose channel count does not change uses the identity shortcut (no parameters); "
        "you added a 1×1 projection there too.",
        "步幅为 1 且通道数不变的残差块使用恒等捷径（没有参数）；你在这种块里也加了 1×1 投影。"),
    "RESNET_RELU_PLACEMENT": say(
        "The final ReLU must come after the addition: y = ReLU(F(x) + shortcut(x)), not ReLU(F(x)) + shortcut(x), and "
        "not left out.",
        "最后的 ReLU 应放在相加之后:y = ReLU(F(x) + 捷径(x))，而不是 ReLU(F(x)) + 捷径（x），也不能省略。"),
    "RESNET_NO_SHORTCUT": say(
        "The shortcut is never added: the block returns ReLU(F(x)) alone, so with its residual branch switched off it "
        "returns zeros and no gradient reaches x through it. Add the shortcut: y = ReLU(F(x) + shortcut(x)).",
        "捷径从未被加上：块只返回 ReLU(F(x))，关闭残差分支后输出全为 0，梯度也无法经捷径传回 x。应加上捷径:y = ReLU(F(x) + 捷径(x))。"),
    "RESNET_WRONG_BLOCKS": say(
        "The stage layout is swapped: ResNet-18 has [2, 2, 2, 2] BasicBlocks per stage, ResNet-34 [3, 4, 6, 3].",
        "各阶段的残差块数量弄反了:ResNet-18 为 [2, 2, 2, 2],ResNet-34 为 [3, 4, 6, 3]。"),
    "RESNET_NO_MAXPOOL": say(
        "The stem's 3×3 max-pool (stride 2, padding 1) after the first conv is missing.",
        "缺少第一个卷积之后的 3×3 最大池化（步幅 2，填充 1）。"),
    "RESNET_STRIDE_IN_SECOND_CONV": say(
        "In a stride-2 block the FIRST 3×3 conv carries the stride (and the 1×1 shortcut conv), as in torchvision.",
        "步幅为 2 的残差块中应由第一个 3×3 卷积（以及 1×1 捷径卷积）承担步幅，与 torchvision 一致。"),
}


def _variant(note: str, fraction: float, **switches) -> Variant:
    return Variant(note, tuple(sorted(switches.items())), _FEEDBACK[note], fraction)


BLOCK_MISTAKES = (
    _variant("RESNET_BIAS_IN_CONV", 0.5, bias=True),
    _variant("RESNET_SHORTCUT_NO_BN", 0.5, shortcut="conv"),
    _variant("RESNET_ALWAYS_PROJECT", 0.5, shortcut="always"),
    _variant("RESNET_NO_DOWNSAMPLE", 0.25, shortcut="free"),
    _variant("RESNET_RELU_PLACEMENT", 0.25, relu="before_add"),
    _variant("RESNET_RELU_PLACEMENT", 0.25, relu="none"),
    _variant("RESNET_NO_SHORTCUT", 0.0, add=False),
    _variant("RESNET_NO_SHORTCUT", 0.0, shortcut="none"),
    _variant("RESNET_STRIDE_IN_SECOND_CONV", 0.5, stride_in_second=True),
)
BLOCK = ModuleSpec("BasicBlock", lambda config, **sw: BasicBlock(*config, **sw), ORDERS, BLOCK_MISTAKES)
# The identity property holds for a block whose convolutions carry a bias too (that mistake costs points in
# the block part, not here); what breaks it is the shortcut or the ReLU.
IDENTITY = ModuleSpec("BasicBlock", BLOCK.build, ORDERS + tuple(order + (("bias", True),) for order in ORDERS),
                      tuple(m for m in BLOCK_MISTAKES if m.note in ("RESNET_RELU_PLACEMENT", "RESNET_NO_SHORTCUT",
                                                                    "RESNET_ALWAYS_PROJECT")))
MODEL = ModuleSpec("make_resnet", lambda config, **sw: make_resnet(*config, **sw), ORDERS, BLOCK_MISTAKES + (
    _variant("RESNET_WRONG_BLOCKS", 0.25, other_layout=True),
    _variant("RESNET_NO_MAXPOOL", 0.5, maxpool=False),
))


def _inputs(rng: random.Random, shape) -> np.ndarray:
    return np.random.default_rng(rng.getrandbits(63)).standard_normal(shape).astype(np.float32)


def _block_cases(rng: random.Random) -> list:
    c = rng.randint(4, 24)
    c2 = rng.randint(4, 24)
    if c2 == c:
        c2 += 3
    hw = 2 * rng.randint(4, 8)
    configs = [[c, c, 1], [c, 2 * c, 2], [c, c2, 1], [c2, c2, 2]]   # identity; stage entry; channels; resolution
    return [module_case(rng, config, _inputs(rng, (2, config[0], hw, hw))) for config in configs]


def _identity_cases(rng: random.Random) -> list:
    """Two blocks with an identity shortcut: one with the residual branch's last BatchNorm switched off
    (γ = β = 0: the last two tensors the block uses, BatchNorm's weight and bias), where y must be ReLU(x)
    and the gradient reach x through the shortcut; one as it is. Both must pass."""
    c, hw = rng.randint(4, 12), rng.randint(4, 6)
    return [module_case(rng, [c, c, 1], _inputs(rng, (2, c, hw, hw)), zero=[(-2 * c, 0)]),
            module_case(rng, [c, c, 1], _inputs(rng, (2, c, hw, hw)))]


def _model_cases(params: dict, rng: random.Random, sizes=(32, (32, 48))) -> list:
    other = 34 if params["depth"] == 18 else 18
    own, hw = [params["depth"], params["num_classes"], params["in_channels"]], rng.choice(sizes[1])
    configs = [(own, sizes[0]), ([other, rng.randint(2, 1000), rng.randint(1, 4)], hw)]
    return [module_case(rng, config, _inputs(rng, (2, config[2], size, size))) for config, size in configs]


# The self-check's networks see 40×40 inputs, a size grading never uses: no public case is a graded one.
PUBLIC_MODEL_SIZES = (40, (40,))


def _public(cases):
    """The self-check's cases: the same for every student (its references are computed once)."""
    return lambda: cases(random.Random(20240611))


# ---- (f), (g) written: the residual connection, the block diagram (provisional, reviewed) ---------------

RESIDUAL_RUBRIC = Rubric(concepts=(
    ("shortcut", ("恒等", "捷径", "跳跃连接", "跨层连接", "短路连接", "identity", "shortcut", "skip")),
    ("residual_learning", ("残差", "residual", "f(x) + x", "f(x)+x", "h(x) - x", "h(x)-x")),
    ("gradient_plus_one", ("+ 1", "+1", "1 +", "1+", "加 1", "加1", "加上 1", "加上1", "常数项", "constant term",
                           "constant 1", "the 1 ", "∂x/∂x = 1")),
    ("direct_path", ("直接", "浅层", "绕过", "不经过", "无衰减", "不衰减", "directly", "earlier layers", "shallow",
                     "bypass", "without passing", "unchanged", "unattenuated", "straight")),
    ("no_vanishing", ("不会消失", "不消失", "缓解", "避免", "防止", "does not vanish", "doesn't vanish", "won't vanish",
                      "not vanish", "never vanish", "alleviat", "eases", "mitigat", "avoid", "prevent")),
    ("degradation", ("退化", "更容易优化", "更容易学习", "容易得多", "接近 0", "接近0", "≈ 0", "≈0", "degrad",
                     "easier to optimi", "easier to learn", "close to zero", "near zero", "f(x) = 0", "f(x)=0")),
))
# What the diagram must show; a person checks the drawing itself.
DIAGRAM_RUBRIC = Rubric(concepts=(
    ("kernel_3x3", ("3x3", "3×3", "3 x 3", "3 × 3", "3*3")),
    ("conv", ("conv", "卷积")),
    ("batchnorm", ("bn", "batchnorm", "batch norm", "批归一化", "批量归一化", "批标准化")),
    ("relu", ("relu",)),
    ("shortcut", ("shortcut", "identity", "skip", "恒等", "捷径", "跳跃")),
    ("projection", ("1x1", "1×1", "1 x 1", "1 × 1", "projection", "downsample", "投影", "下采样")),
    ("addition", ("add", "+", "⊕", "相加", "加法", "求和", "sum")),
))


# ---- parts ------------------------------------------------------------------------------------

def parts(params: dict) -> list[Part]:
    k = params["chain_k"]
    chain_symbols = tuple(f"d{i}" for i in range(1, k + 1))
    return [
        Part("resnet_dydx", 2, say("Gradient through one residual connection", "经过一个残差连接的梯度"),
             probe=lambda rng: read_variable("resnet_dydx"), reference=lambda probe: "dF + 1",
             check=Formula(symbols=("dF",)), kind="formula",
             mistakes=lambda probe: [Mistake("RESNET_GRAD_NO_IDENTITY", "dF", say(
                 "That is the gradient of F alone; the shortcut y = … + x adds ∂x/∂x = 1.",
                 "这只是 F 的梯度；捷径 y = … + x 还贡献了 ∂x/∂x = 1。"))]),
        Part("resnet_chain_grad", 2, say(f"Gradient through {k} residual blocks", f"经过 {k} 个残差块的梯度"),
             probe=lambda rng: read_variable("resnet_chain_grad"), reference=lambda probe: chain_gradient(k),
             check=Formula(symbols=chain_symbols), kind="formula",
             mistakes=lambda probe: [
                 Mistake("RESNET_CHAIN_NO_IDENTITY", "*".join(chain_symbols), say(
                     "Without the +1 of each shortcut this is the plain network's product of derivatives, the one that vanishes.",
                     "缺少每个捷径带来的 +1，这就是普通网络中会消失的导数连乘。")),
                 Mistake("RESNET_CHAIN_ADDED", " + ".join(chain_symbols) + " + 1", say(
                     "The chain rule multiplies the blocks' derivatives: ∂y_k/∂x = ∏ (1 + dF_i); you added them.",
                     "链式法则是把各块的导数相乘:∂y_k/∂x = ∏ (1 + dF_i)；你把它们相加了。"))]),
        module_part("resnet_block", 4, say("BasicBlock on hidden inputs", "BasicBlock（隐藏测试输入）"), BLOCK,
                    cases=_block_cases, public_cases=_public(_block_cases)),
        module_part("resnet_identity", 3, say("BasicBlock with its residual branch switched off",
                                              "关闭残差分支的 BasicBlock"), IDENTITY,
                    cases=_identity_cases, public_cases=_public(_identity_cases), all_or_nothing=True),
        module_part("resnet_model", 5, say("make_resnet: the whole network", "make_resnet:整个网络"), MODEL,
                    cases=lambda rng: _model_cases(params, rng),
                    public_cases=_public(lambda rng: _model_cases({"depth": 18, "num_classes": 10, "in_channels": 3}, rng,
                                                                   PUBLIC_MODEL_SIZES))),
        Part("resnet_residual", 3, say("What a residual connection is and how it eases vanishing gradients",
                                       "什么是残差连接，它如何缓解梯度消失"),
             probe=lambda rng: read_variable("resnet_residual"), reference=lambda probe: MODEL_ANSWER_RESIDUAL,
             check=RESIDUAL_RUBRIC, kind="written"),
        Part("resnet_diagram", 3, say("Diagram of the residual block (BasicBlock)", "残差块（BasicBlock）结构示意图"),
             probe=lambda rng: read_variable("resnet_diagram"), reference=lambda probe: MODEL_DIAGRAM,
             check=DIAGRAM_RUBRIC, kind="written"),
    ]


def context(params: dict) -> dict:
    return {"layout": list(LAYOUTS[params["depth"]]), "chain_symbols": [f"d{i}" for i in range(1, params["chain_k"] + 1)],
            "residual_answer_src": repr(MODEL_ANSWER_RESIDUAL), "diagram": MODEL_DIAGRAM}


PROBLEM = Problem(
    id="resnet",
    title=say("Residual networks: ResNet-18/34", "残差网络:ResNet-18/34"),
    points=22, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)

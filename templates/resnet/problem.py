"""ResNet-18/34: residual gradients, the BasicBlock and the whole network (seed homework, problem 9).

Probes test behaviour only (output shapes, parameter counts, forward FLOPs, the identity property of a
block whose residual branch is switched off, gradient flow), never attribute names, so any correct
implementation (nn.Sequential, other names, functional calls) earns full marks."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Cases, Exact, Fields, Formula
from hwkit.problem import Mistake, Part, Probe, Problem, say
from hwkit.probes import read_variable
from solutions.resnet import LAYOUTS, block_output_shape, block_params, chain_gradient, model_facts, model_value

SHAPE = Array(rtol=0, atol=0)


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


# ---- (c) BasicBlock -----------------------------------------------------------------------------

BLOCK_SOURCE = """import torch
cls = function('BasicBlock')
result = []
for cin, cout, stride, hw in inputs['cases']:
    try:
        block = cls(cin, cout, stride)
        block.eval()
        with torch.no_grad():
            y = block(torch.randn(2, cin, hw, hw))
        result.append({'shape': list(y.shape), 'params': sum(p.numel() for p in block.parameters())})
    except Exception as e:
        result.append({'__error__': '%s: %s' % (type(e).__name__, str(e)[:200])})
"""


def _block_cases(rng: random.Random) -> list:
    c = rng.randint(4, 24)
    c2 = rng.randint(4, 24)
    if c2 == c:
        c2 += 3
    hw = 2 * rng.randint(4, 8)
    return [[c, c, 1, hw],            # identity shortcut
            [c, 2 * c, 2, hw],        # the stage-entry block: stride 2 and twice the channels
            [c, c2, 1, hw],           # channels change, same resolution
            [c2, c2, 2, hw]]          # resolution halves, same channels


def _block_reference(probe: Probe) -> list:
    return [{"shape": block_output_shape(cin, cout, s, (2, cin, hw, hw)), "params": block_params(cin, cout, s)}
            for cin, cout, s, hw in probe.inputs["cases"]]


_SWITCH_FEEDBACK = {
    "RESNET_BIAS_IN_CONV": ({"bias": True}, say(
        "Too many parameters: a conv followed by BatchNorm needs no bias (BN's β plays that role), so every conv here "
        "is created with bias=False.",
        "参数量偏多:卷积后面接 BatchNorm 时不需要偏置(BN 的 β 起了偏置的作用),所以这里所有卷积都使用 bias=False。")),
    "RESNET_NO_DOWNSAMPLE": ({"shortcut": "free"}, say(
        "The projection shortcut is missing: when the stride is not 1 or the channel count changes, the shortcut must be "
        "a 1×1 conv (with that stride) followed by BatchNorm, so that x matches F(x) in shape.",
        "缺少投影捷径:当步幅不为 1 或通道数改变时,捷径分支应为 1×1 卷积(使用相同步幅)加 BatchNorm,使 x 与 F(x) 的形状一致。")),
    "RESNET_SHORTCUT_NO_BN": ({"shortcut": "conv"}, say(
        "The projection shortcut is a 1×1 conv followed by a BatchNorm2d; the BatchNorm is missing.",
        "投影捷径由 1×1 卷积和其后的 BatchNorm2d 组成;你漏掉了 BatchNorm。")),
    "RESNET_ALWAYS_PROJECT": ({"shortcut": "always"}, say(
        "A block whose stride is 1 and whose channel count does not change uses the identity shortcut (no parameters); "
        "you added a 1×1 projection there too.",
        "步幅为 1 且通道数不变的残差块使用恒等捷径(没有参数);你在这种块里也加了 1×1 投影。")),
}


def _block_mistakes(probe: Probe) -> list[Mistake]:
    out = []
    for note, (switches, feedback) in _SWITCH_FEEDBACK.items():
        value = [{"params": block_params(cin, cout, s, **switches)} for cin, cout, s, _ in probe.inputs["cases"]]
        out.append(Mistake(note, value, feedback))
    return out


# ---- (d) the identity property ------------------------------------------------------------------

IDENTITY_SOURCE = """import torch
cls = function('BasicBlock')
c = inputs['c']
block = cls(c, c, 1)
block.eval()
bns = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d) and m.num_features == c]
if not bns:
    raise ValueError('the block has no BatchNorm2d with %d features' % c)
with torch.no_grad():
    bns[-1].weight.zero_()
    bns[-1].bias.zero_()
x = torch.as_tensor(inputs['x']).clone().requires_grad_(True)
y = block(x)
y.sum().backward()
result = {'y': y, 'grad': x.grad}
"""


def _identity_probe(rng: random.Random) -> Probe:
    c, hw = rng.randint(4, 12), rng.randint(4, 6)
    g = np.random.default_rng(rng.getrandbits(63))
    return Probe(IDENTITY_SOURCE, {"c": c, "x": g.standard_normal((2, c, hw, hw)).astype(np.float32)})


def _identity_reference(probe: Probe) -> dict:
    x = probe.inputs["x"]
    return {"y": np.maximum(x, 0), "grad": (x > 0).astype(np.float32)}


def _identity_mistakes(probe: Probe) -> list[Mistake]:
    x = probe.inputs["x"]
    return [
        Mistake("RESNET_RELU_PLACEMENT", {"y": x, "grad": np.ones_like(x)}, say(
            "With the residual branch switched off the block returned x itself: the final ReLU must come after the "
            "addition, y = ReLU(F(x) + x) (not ReLU(F(x)) + x, and not left out).",
            "残差分支关闭后,你的块直接返回了 x:最后的 ReLU 应放在相加之后,y = ReLU(F(x) + x)(而不是 ReLU(F(x)) + x,也不能省略)。")),
        Mistake("RESNET_NO_SHORTCUT", {"y": np.zeros_like(x), "grad": np.zeros_like(x)}, say(
            "With the residual branch switched off the block returned zeros and no gradient reached x: the shortcut "
            "(+ x) is missing.",
            "残差分支关闭后,你的块输出全为 0,梯度也传不到 x:缺少捷径连接(+ x)。")),
    ]


# ---- (e) the whole network ----------------------------------------------------------------------

MODEL_SOURCE = """import torch
from torch.utils.flop_counter import FlopCounterMode
make = function('make_resnet')
result = []
for depth, classes, cin, hw in inputs['cases']:
    try:
        model = make(depth, classes, cin)
        model.eval()
        x = torch.randn(2, cin, hw, hw)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            y = model(x)
        called = []
        hooks = [m.register_forward_hook(lambda mod, i, o: called.append(mod))
                 for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        model.zero_grad()
        model(x).square().mean().backward()
        for h in hooks:
            h.remove()
        g = called[0].weight.grad if called else None
        result.append({'shape': list(y.shape), 'params': sum(p.numel() for p in model.parameters()),
                       'flops': int(counter.get_total_flops()),
                       'stem_grad_norm': None if g is None else float(g.double().abs().sum())})
    except Exception as e:
        result.append({'__error__': '%s: %s' % (type(e).__name__, str(e)[:200])})
"""


def _stem_flag(rec):
    """Raw kernel record -> the compared values: the first conv's gradient norm becomes 1 (it got a non-zero,
    finite gradient) or 0. Runs in the grader; the self-check's probe runs the same code in the kernel."""
    if not isinstance(rec, dict) or "__error__" in rec:
        return rec
    out = {key: value for key, value in rec.items() if key != "stem_grad_norm"}
    norm = rec.get("stem_grad_norm")
    out["stem_grad"] = int(isinstance(norm, float) and norm > 0 and norm != float("inf"))
    return out


def _interpret_model(reply, probe: Probe):
    return [_stem_flag(rec) for rec in reply] if isinstance(reply, list) else reply


PUBLIC_MODEL_SOURCE = (MODEL_SOURCE + "\n" + __import__("inspect").getsource(_stem_flag)
                       + "\nresult = [_stem_flag(rec) for rec in result]\n")

MODEL_CHECK = Cases(Fields({"shape": (1.0, SHAPE), "params": (2.0, Exact()), "flops": (2.0, Exact()),
                            "stem_grad": (1.0, Exact())}))


def _model_probe(params: dict, rng: random.Random, public: bool = False) -> Probe:
    other = 34 if params["depth"] == 18 else 18
    cases = [[params["depth"], params["num_classes"], params["in_channels"], 32],
             [other, rng.randint(2, 1000), rng.randint(1, 4), rng.choice([32, 48])]]
    return Probe(PUBLIC_MODEL_SOURCE if public else MODEL_SOURCE, {"cases": cases})


def _model_reference(probe: Probe) -> list:
    out = []
    for depth, classes, cin, hw in probe.inputs["cases"]:
        facts = model_facts(depth, classes, cin, hw)
        out.append({"shape": facts["shape"], "params": facts["params"], "flops": facts["flops"], "stem_grad": 1})
    return out


def _model_mistakes(probe: Probe) -> list[Mistake]:
    cases = probe.inputs["cases"]
    out = [Mistake("RESNET_WRONG_BLOCKS",
                   [{"params": model_value("params", 34 if d == 18 else 18, k, c)} for d, k, c, hw in cases],
                   say("The stage layout is swapped: ResNet-18 has [2, 2, 2, 2] BasicBlocks per stage, ResNet-34 [3, 4, 6, 3].",
                       "各阶段的残差块数量弄反了:ResNet-18 为 [2, 2, 2, 2],ResNet-34 为 [3, 4, 6, 3]。"))]
    for note, (switches, feedback) in _SWITCH_FEEDBACK.items():
        key = tuple(sorted(switches.items()))
        out.append(Mistake(note, [{"params": model_value("params", d, k, c, switches=key)} for d, k, c, hw in cases],
                           feedback))
    out.append(Mistake("RESNET_NO_MAXPOOL",
                       [{"flops": model_value("flops", d, k, c, hw, switches=(("maxpool", False),))} for d, k, c, hw in cases],
                       say("The parameters are right but the computation is about 4× too large: the stem's 3×3 max-pool "
                           "(stride 2, padding 1) after the first conv is missing.",
                           "参数量正确,但计算量约大了 4 倍:缺少第一个卷积之后的 3×3 最大池化(步幅 2,填充 1)。")))
    out.append(Mistake("RESNET_STRIDE_IN_SECOND_CONV",
                       [{"flops": model_value("flops", d, k, c, hw, switches=(("stride_in_second", True),))}
                        for d, k, c, hw in cases],
                       say("The parameters are right but the computation is not: in a stride-2 block the FIRST 3×3 conv "
                           "carries the stride (and the 1×1 shortcut conv), as in torchvision.",
                           "参数量正确但计算量不对:步幅为 2 的残差块中应由第一个 3×3 卷积(以及 1×1 捷径卷积)承担步幅,与 torchvision 一致。")))
    return out


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
                 "这只是 F 的梯度;捷径 y = … + x 还贡献了 ∂x/∂x = 1。"))]),
        Part("resnet_chain_grad", 2, say(f"Gradient through {k} residual blocks", f"经过 {k} 个残差块的梯度"),
             probe=lambda rng: read_variable("resnet_chain_grad"), reference=lambda probe: chain_gradient(k),
             check=Formula(symbols=chain_symbols), kind="formula",
             mistakes=lambda probe: [
                 Mistake("RESNET_CHAIN_NO_IDENTITY", "*".join(chain_symbols), say(
                     "Without the +1 of each shortcut this is the plain network's product of derivatives, the one that vanishes.",
                     "缺少每个捷径带来的 +1,这就是普通网络中会消失的导数连乘。")),
                 Mistake("RESNET_CHAIN_ADDED", " + ".join(chain_symbols) + " + 1", say(
                     "The chain rule multiplies the blocks' derivatives: ∂y_k/∂x = ∏ (1 + dF_i); you added them.",
                     "链式法则是把各块的导数相乘:∂y_k/∂x = ∏ (1 + dF_i);你把它们相加了。"))]),
        Part("resnet_block", 4, say("BasicBlock: shapes and parameters", "BasicBlock:形状与参数量"),
             probe=lambda rng: Probe(BLOCK_SOURCE, {"cases": _block_cases(rng)}), reference=_block_reference,
             check=Cases(Fields({"shape": (1.0, SHAPE), "params": (1.0, Exact())})), mistakes=_block_mistakes,
             kind="code", hidden_inputs=True),
        Part("resnet_identity", 3, say("BasicBlock with its residual branch switched off", "关闭残差分支的 BasicBlock"),
             probe=_identity_probe, reference=_identity_reference,
             check=Fields({"y": (1.0, Array()), "grad": (1.0, Array())}), mistakes=_identity_mistakes,
             kind="code", hidden_inputs=True),
        Part("resnet_model", 5, say("make_resnet: the whole network", "make_resnet:整个网络"),
             probe=lambda rng: _model_probe(params, rng), reference=_model_reference, check=MODEL_CHECK,
             mistakes=_model_mistakes, kind="code", hidden_inputs=True, interpret=_interpret_model,
             public_probe=lambda rng: _model_probe(params, rng, public=True)),
    ]


def context(params: dict) -> dict:
    return {"layout": list(LAYOUTS[params["depth"]]), "chain_symbols": [f"d{i}" for i in range(1, params["chain_k"] + 1)]}


PROBLEM = Problem(
    id="resnet",
    title=say("Residual networks: ResNet-18/34", "残差网络:ResNet-18/34"),
    points=16, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)

"""Reference for the depthwise-separable problem.

Convention (stated in the notebook): no biases anywhere (bias=False), stride 1, padding K//2, so the
output is H x W. MACs count multiply-accumulates (N = 1); torch's FlopCounterMode reports 2 x MACs for
a convolution, grouped ones included. Parameters are counted on real modules."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

STANDARD_FORMULA = "K**2*C_in*C_out"
SEPARABLE_FORMULA = "K**2*C_in + C_in*C_out"
COST_FORMULA = "H_out*W_out*(K**2*C_in + C_in*C_out)"
RATIO_FORMULA = "1/C_out + 1/K**2"


class DepthwiseSeparableConv(nn.Module):
    """The reference module: a depthwise K x K conv (groups = C_in) followed by a pointwise 1 x 1 conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, padding=kernel_size // 2,
                                   groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _count(module: nn.Module, c_in: int, h: int, w: int) -> tuple[int, int]:
    """(parameters, MACs) of a module on a 1 x c_in x h x w input, measured on meta tensors."""
    module = module.to("meta")
    with FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, c_in, h, w, device="meta"))
    return int(sum(p.numel() for p in module.parameters())), int(counter.get_total_flops()) // 2


@lru_cache(maxsize=4096)
def solve_numbers(c_in: int, c_out: int, k: int, h: int, w: int) -> dict:
    with torch.device("meta"):
        standard = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        separable = DepthwiseSeparableConv(c_in, c_out, k)
    std_params, std_macs = _count(standard, c_in, h, w)
    sep_params, sep_macs = _count(separable, c_in, h, w)
    return {"ds_standard_params": std_params, "ds_separable_params": sep_params,
            "ds_param_ratio": sep_params / std_params, "ds_standard_macs": std_macs, "ds_separable_macs": sep_macs}


def solve(p: dict) -> dict:
    return {**solve_numbers(p["c_in"], p["c_out"], p["k"], p["h"], p["w"]),
            "ds_standard_formula": STANDARD_FORMULA, "ds_separable_formula": SEPARABLE_FORMULA,
            "ds_cost_formula": COST_FORMULA, "ds_ratio_formula": RATIO_FORMULA}


# ---- the module part ---------------------------------------------------------------------------------

def module_cases(rng) -> list[dict]:
    """Hidden test sizes: three cases, one per kernel size, C_out != C_in, small random inputs."""
    gen = np.random.default_rng(rng.getrandbits(64))
    cases = []
    for k in rng.sample([3, 5, 7], 3):
        cin = rng.randint(2, 9)
        cout = rng.choice([c for c in range(2, 17) if c != cin])
        n, h, w = rng.randint(1, 2), rng.randint(k, k + 9), rng.randint(k, k + 9)
        cases.append({"cin": cin, "cout": cout, "k": k, "seed": rng.randint(0, 2**31 - 1),
                      "x": gen.standard_normal((n, cin, h, w)).astype(np.float32)})
    return cases


# Behaviour only, no attribute names: the parameter count, the output shape, the impulse responses (one
# delta per input channel) and whether the module is exactly a "same" K x K convolution with the kernel
# read from those responses. Depthwise-then-pointwise is exactly "for every input channel c, the
# responses of all outputs to c are one spatial pattern scaled per output": rank 1, whether written with
# groups=, a ModuleList or a Linear pointwise.
#
# For grading the kernel only reports raw data (params, output, responses) and analyse_module() runs in
# the grader. The offline self-check runs the same analysis in the student's own kernel (PUBLIC_PROBE).
MODULE_RUN = r'''
import torch
_cls = function("DepthwiseSeparableConv")
result = []
for _case in inputs["cases"]:
    try:
        _cin, _cout, _k = _case["cin"], _case["cout"], _case["k"]
        torch.manual_seed(_case["seed"])
        _m = _cls(_cin, _cout, _k)
        _rec = {"params": int(sum(_p.numel() for _p in _m.parameters()))}
        _x = torch.as_tensor(_case["x"], dtype=torch.float32)
        with torch.no_grad():
            _y = _m(_x)
            _s = 2 * _k + 1
            _d = torch.zeros(_cin, _cin, _s, _s)
            _d[torch.arange(_cin), torch.arange(_cin), _k, _k] = 1.0
            _rec["y"] = _y.double().numpy()
            _rec["responses"] = _m(_d).double().numpy()
        result.append(_rec)
    except Exception as _e:
        result.append({"__error__": "%s: %s" % (type(_e).__name__, str(_e)[:200])})
'''


def _analyse_case(rec: dict, case: dict) -> dict:
    import numpy as _np
    import torch as _torch
    if "__error__" in rec:
        return rec
    cin, k = case["cin"], case["k"]
    p = k // 2
    x = _torch.as_tensor(_np.asarray(case["x"]), dtype=_torch.float64)
    y = _torch.as_tensor(_np.asarray(rec["y"], dtype=_np.float64))
    r = _torch.as_tensor(_np.asarray(rec["responses"], dtype=_np.float64))
    out = {"params": int(rec["params"]), "shape": [int(v) for v in y.shape]}
    ranks = []
    for c in range(min(cin, r.shape[0]) if r.dim() == 4 else 0):
        sv = _torch.linalg.svdvals(r[c].reshape(r.shape[1], -1))
        ranks.append(int((sv > 1e-4 * sv[0]).sum()) if float(sv[0]) > 0 else 0)
    out["rank"] = ranks
    same = 0
    if r.dim() == 4 and list(r.shape[:1]) == [cin] and r.shape[2:] == (2 * k + 1, 2 * k + 1) \
            and list(y.shape) == [x.shape[0], r.shape[1], x.shape[2], x.shape[3]]:
        wt = r[:, :, p + 1:p + k + 1, p + 1:p + k + 1].transpose(0, 1).flip(-1, -2)
        ref = _torch.nn.functional.conv2d(x, wt, padding=p)
        err = float((y - ref).abs().max()) / (float(ref.abs().max()) + 1e-12)
        same = int(err < 1e-4)
    out["same_conv"] = same
    return out


def analyse_module(reply, probe) -> list:
    """Grader side: raw kernel data -> params, shape, per-channel response rank, same-conv flag."""
    return [_analyse_case(rec, case) for rec, case in zip(reply, probe.inputs["cases"])] if isinstance(reply, list) else reply


PUBLIC_PROBE = (MODULE_RUN + "\n" + __import__("inspect").getsource(_analyse_case)
                + "\nresult = [_analyse_case(_r, _c) for _r, _c in zip(result, inputs['cases'])]\n")


def module_reference(cases: list[dict], *, standard: bool = False, bias: bool = False,
                     pointwise_first: bool = False) -> list[dict]:
    """The reply a correct module gives (switches: the parameter counts of classic wrong modules)."""
    out = []
    for c in cases:
        cin, cout, k = c["cin"], c["cout"], c["k"]
        if standard:
            params = k * k * cin * cout
        elif pointwise_first:
            params = cin * cout + k * k * cout
        else:
            params = k * k * cin + cin * cout + ((cin + cout) if bias else 0)
        n, _, h, w = np.shape(c["x"])
        out.append({"params": params, "shape": [int(n), cout, int(h), int(w)], "rank": [1] * cin, "same_conv": 1})
    return out if not (standard or bias or pointwise_first) else [{"params": o["params"]} for o in out]


MODEL_PRINCIPLE = {
    "zh": ("深度可分离卷积把标准卷积拆分为两步,将空间特征提取与通道融合解耦:(1) 深度卷积(depthwise):对每个输入通道"
           "单独使用一个 K×K 卷积核,只做空间滤波,不混合通道,参数量 K²·C_in;(2) 逐点卷积(pointwise,1×1 卷积):用 1×1 卷积"
           "在通道维度上做线性组合,把 C_in 个通道映射为 C_out 个,参数量 C_in·C_out。标准卷积的 K²·C_in·C_out 变为 "
           "K²·C_in + C_in·C_out,参数量和计算量都降为原来的约 1/C_out + 1/K²。"),
    "en": ("A depthwise separable convolution splits a standard convolution into two steps, decoupling spatial filtering "
           "from channel mixing: (1) a depthwise convolution applies one K×K filter to each input channel separately "
           "(no mixing across channels, K²·C_in parameters); (2) a pointwise 1×1 convolution combines the channels "
           "linearly, mapping C_in to C_out channels (C_in·C_out parameters). K²·C_in·C_out becomes "
           "K²·C_in + C_in·C_out, so parameters and computation are reduced to about 1/C_out + 1/K² of the standard conv."),
}

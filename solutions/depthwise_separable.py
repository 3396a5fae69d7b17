"""Reference for the depthwise-separable problem.

Convention (stated in the notebook): no biases anywhere (bias=False), stride 1, padding K//2, so the
output is H x W. MACs count multiply-accumulates (N = 1); torch's FlopCounterMode reports 2 x MACs for
a convolution, grouped ones included. Parameters are counted on real modules."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

STANDARD_FORMULA = "K**2*C_in*C_out"
SEPARABLE_FORMULA = "K**2*C_in + C_in*C_out"
COST_FORMULA = "H_out*W_out*(K**2*C_in + C_in*C_out)"
RATIO_FORMULA = "1/C_out + 1/K**2"


class DepthwiseSeparableConv(nn.Module):
    """The reference module: a depthwise K x K conv (groups = C_in) followed by a pointwise 1 x 1 conv.
    Wrong variants: `bias` on both convs, `pointwise_first` (1 x 1 to C_out, then a depthwise K x K on C_out)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = False,
                 pointwise_first: bool = False):
        super().__init__()
        mid = out_channels if pointwise_first else in_channels
        self.pointwise_first = pointwise_first
        self.depthwise = nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=bias)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x):
        if self.pointwise_first:
            return self.depthwise(self.pointwise(x))
        return self.pointwise(self.depthwise(x))


def module_variant(in_channels: int, out_channels: int, kernel_size: int, *, standard: bool = False,
                   **switches) -> nn.Module:
    """The reference, a known wrong variant of it, or (`standard`) the plain K x K convolution it replaces."""
    if standard:
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    return DepthwiseSeparableConv(in_channels, out_channels, kernel_size, **switches)


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

def module_configs(rng) -> list[tuple[list[int], tuple[int, int, int, int]]]:
    """Hidden test sizes: one case per kernel size, C_out != C_in; (config, input shape)."""
    out = []
    for k in rng.sample([3, 5, 7], 3):
        cin = rng.randint(2, 9)
        cout = rng.choice([c for c in range(2, 17) if c != cin])
        out.append(([cin, cout, k], (rng.randint(1, 2), cin, rng.randint(k, k + 9), rng.randint(k, k + 9))))
    return out


MODEL_PRINCIPLE = {
    "zh": ("深度可分离卷积把标准卷积拆分为两步，将空间特征提取与通道融合解耦:(1) 深度卷积（depthwise）：对每个输入通道"
           "单独使用一个 K×K 卷积核，只做空间滤波，不混合通道，参数量 K²·C_in;(2) 逐点卷积（pointwise,1×1 卷积）：用 1×1 卷积"
           "在通道维度上做线性组合，把 C_in 个通道映射为 C_out 个，参数量 C_in·C_out。标准卷积的 K²·C_in·C_out 变为 "
           "K²·C_in + C_in·C_out,参数量和计算量都降为原来的约 1/C_out + 1/K²。"),
    "en": ("A depthwise separable convolution splits a standard convolution into two steps, decoupling spatial filtering "
           "from channel mixing: (1) a depthwise convolution applies one K×K filter to each input channel separately "
           "(no mixing across channels, K²·C_in parameters); (2) a pointwise 1×1 convolution combines the channels "
           "linearly, mapping C_in to C_out channels (C_in·C_out parameters). K²·C_in·C_out becomes "
           "K²·C_in + C_in·C_out, so parameters and computation are reduced to about 1/C_out + 1/K² of the standard conv."),
}

"""Reference for the conv-cost problem: parameters, output size, MACs and FLOPs of one nn.Conv2d.

Convention (stated in the notebook): parameters include the bias; MACs count the multiply-accumulates
of the convolution only (N=1, bias additions not counted); FLOPs = 2 x MACs, which is what
torch.utils.flop_counter.FlopCounterMode reports for a convolution. Torch is the truth: parameters
are counted on a real nn.Conv2d and FLOPs measured on meta tensors (shapes only, no arithmetic)."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@lru_cache(maxsize=4096)
def conv_stats(c_in: int, c_out: int, k: int, stride: int, padding: int, h: int, w: int, bias: bool = True) -> dict:
    """{"params", "out_hw": [H_out, W_out], "flops", "macs"} of Conv2d(c_in, c_out, k, stride, padding)
    on a 1 x c_in x h x w input."""
    with torch.device("meta"):
        conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, bias=bias)
        x = torch.zeros(1, c_in, h, w)
        with FlopCounterMode(display=False) as counter:
            y = conv(x)
    flops = int(counter.get_total_flops())
    return {"params": int(sum(p.numel() for p in conv.parameters())), "out_hw": [int(y.shape[2]), int(y.shape[3])],
            "flops": flops, "macs": flops // 2}


def out_size(n: int, k: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - k) // stride + 1


def params_formula(bias: bool = True) -> str:
    return "(K**2*C_in + 1)*C_out" if bias else "K**2*C_in*C_out"


def solve(p: dict) -> dict:
    """All reference answers of one variant."""
    big = conv_stats(p["c_in"], p["c_out"], p["k"], p["stride"], p["padding"], p["h"], p["w"])
    small = conv_stats(p["c_in"], p["c_out"], 1, p["stride"], p["padding1x1"], p["h"], p["w"])
    assert big["out_hw"] == small["out_hw"], "the 1x1 replacement must keep the output size"
    return {
        "conv_out_hw": big["out_hw"], "conv_params": big["params"], "conv_macs": big["macs"],
        "conv_flops": big["flops"], "conv1x1_params": small["params"], "conv1x1_flops": small["flops"],
        "conv_param_ratio": big["params"] / small["params"], "conv_flops_ratio": big["flops"] / small["flops"],
        "conv_params_formula": params_formula(),
    }


MODEL_ROLE_1X1 = ("1×1 卷积 (1x1 convolution)：在不改变特征图宽高的情况下改变通道数，实现降维/升维 (reduce or increase the "
                  "number of channels, e.g. a bottleneck that cuts cost)；对每个位置做跨通道的线性组合，融合通道间信息 "
                  "(cross-channel mixing)；后接 ReLU 等激活可增加非线性 (adds nonlinearity without changing the receptive field).")

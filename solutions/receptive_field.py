"""Reference for the receptive-field problem. A layer is (kernel, stride, padding, dilation)."""
from __future__ import annotations

import torch
from torch import nn


def receptive_field(layers, *, use_stride: bool = True, use_dilation: bool = True) -> tuple[int, int]:
    """R_l = R_{l-1} + (K_eff - 1) * J_{l-1},  J_l = J_{l-1} * S_l,  R_0 = J_0 = 1, K_eff = d(K-1)+1.
    The keyword switches produce the classic wrong answers, for feedback."""
    r, j = 1, 1
    for k, s, _p, d in layers:
        k_eff = (d if use_dilation else 1) * (k - 1) + 1
        r += (k_eff - 1) * j
        if use_stride:
            j *= s
    return r, j


def output_size(size: int, layers, *, use_padding: bool = True, use_dilation: bool = True) -> int:
    for k, s, p, d in layers:
        k_eff = (d if use_dilation else 1) * (k - 1) + 1
        size = (size + 2 * (p if use_padding else 0) - k_eff) // s + 1
    return size


def build_torch_stack(layers, kinds) -> nn.Sequential:
    modules = []
    for (k, s, p, d), kind in zip(layers, kinds):
        if kind == "pool":
            modules.append(nn.MaxPool2d(k, stride=s, padding=p, dilation=d))
        else:
            modules.append(nn.Conv2d(1, 1, k, stride=s, padding=p, dilation=d))
    return nn.Sequential(*modules)


def torch_output_size(size: int, layers, kinds) -> int:
    """The output size as torch computes it: the truth the formula must agree with. On the meta device:
    torch's own shape rules, without allocating or computing anything."""
    with torch.no_grad(), torch.device("meta"):
        return int(build_torch_stack(layers, kinds)(torch.zeros(1, 1, size, size)).shape[-1])

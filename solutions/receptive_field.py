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


def receptive_field_table(layers, *, use_stride: bool = True, jump_after_layer: bool = False) -> list[list[int]]:
    """The computation shown layer by layer: [[R_1, J_1], [R_2, J_2], ...] (dilation 1). Switches: the stride
    ignored; the layer's own jump J_l used where J_{l-1} belongs."""
    r, j, rows = 1, 1, []
    for k, s, _p, _d in layers:
        new_j = j * s if use_stride else j
        r += (k - 1) * (new_j if jump_after_layer else j)
        j = new_j
        rows.append([r, j])
    return rows


MODEL_ANSWER_CONCEPT = (
    "感受野 (receptive field) 是输出特征图上的一个像素（神经元）在原始输入图像上能\"看到\"的区域，即会影响它取值的输入范围 "
    "(the region of the input that affects the unit)。感受野小的浅层单元只看到局部，提取边缘、纹理等局部细节特征 "
    "(local features such as edges and textures)；随着网络加深，卷积、池化和步幅的作用逐层累积，感受野逐层增大 "
    "(it grows with depth)，深层单元能综合更大范围的上下文，提取物体形状、语义等全局的高层特征 (global, semantic features)。"
    "感受野太小就看不到完整的目标，所以设计网络时要让最后一层的感受野足以覆盖要识别的目标。")


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

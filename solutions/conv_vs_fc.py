"""Reference for the conv-vs-fc problem: parameters of a fully connected layer, a locally connected layer
and a convolution on the same image, all with biases (one bias per output unit for the FC and locally
connected layers, one per output channel for the convolution). nn.Linear and nn.Conv2d are counted on
meta tensors; the locally connected layer (no torch module) is counted from its weight shapes."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn


def _numel(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


@lru_cache(maxsize=4096)
def solve_numbers(c: int, h: int, w: int, hidden: int, k: int, c_out: int) -> dict:
    with torch.device("meta"):
        fc = _numel(nn.Linear(c * h * w, hidden))
        conv = nn.Conv2d(c, c_out, k, padding=k // 2)
        out = conv(torch.zeros(1, c, h, w))
        conv_params = _numel(conv)
        out_units = int(out[0].numel())            # C_out x H x W ("same" padding)
        fc_same = _numel(nn.Linear(c * h * w, out_units))
    # locally connected: the conv's windows, but separate weights (and bias) at every output position
    positions = int(out.shape[2] * out.shape[3])
    local = positions * (c_out * c * k * k) + out_units
    return {"fcconv_fc_params": fc, "fcconv_conv_params": conv_params, "fcconv_fc_same_params": fc_same,
            "fcconv_local_params": local, "fcconv_sharing_ratio": local / conv_params,
            "fcconv_fc_conv_ratio": fc_same / conv_params}


def solve(p: dict) -> dict:
    return solve_numbers(p["c"], p["h"], p["w"], p["hidden"], p["k"], p["c_out"])


# Multiple-choice items: option 0 is the right one; each student sees them in their own order.
CHOICES = {
    "fcconv_choice_pool": {
        "title": {"en": "Multiple choice: downsampling without parameters", "zh": "选择题：无参数的下采样层"},
        "question": {"zh": "哪一种层能减小特征图的空间尺寸（下采样），且本身没有可学习参数？",
                     "en": "Which layer reduces the spatial size of a feature map (downsampling) and has no learnable parameters?"},
        "options": [
            {"zh": "2×2、步幅 2 的最大池化层", "en": "a 2×2 max-pooling layer with stride 2"},
            {"zh": "全连接层", "en": "a fully connected layer"},
            {"zh": "3×3、步幅 1、填充 1 的卷积层", "en": "a 3×3 convolution with stride 1 and padding 1"},
            {"zh": "ReLU 激活函数", "en": "a ReLU activation"},
        ],
        "notes": [None, "CHOICE_FC_LAYER", "CHOICE_SAME_CONV", "CHOICE_RELU"],
        "feedback": [None,
                     {"en": "A fully connected layer has a weight per input-output pair and does not downsample a map.",
                      "zh": "全连接层每对输入输出都有权重，也不是对特征图做下采样。"},
                     {"en": "With stride 1 and padding 1 a 3×3 conv keeps the size, and it has weights.",
                      "zh": "步幅 1、填充 1 的 3×3 卷积保持尺寸不变，而且有权重。"},
                     {"en": "ReLU has no parameters but keeps the size of the map.", "zh": "ReLU 没有参数，但不改变特征图尺寸。"}],
    },
    "fcconv_choice_sharing": {
        "title": {"en": "Multiple choice: why conv parameters do not depend on H×W", "zh": "选择题：卷积参数量与 H×W 无关的原因"},
        "question": {"zh": "卷积层的参数量与输入图像的高和宽无关。这主要归功于哪一种机制？",
                     "en": "The parameter count of a convolution layer does not depend on the input's height and width. Which mechanism is mainly responsible?"},
        "options": [
            {"zh": "参数共享（同一个卷积核在所有位置上重复使用）", "en": "weight sharing (the same kernel is reused at every position)"},
            {"zh": "局部连接（每个输出只连接输入的一个局部区域）", "en": "local connectivity (each output sees only a local region of the input)"},
            {"zh": "池化", "en": "pooling"},
            {"zh": "Dropout", "en": "dropout"},
        ],
        "notes": [None, "CHOICE_LOCAL_CONNECTIVITY", "CHOICE_POOLING", "CHOICE_DROPOUT"],
        "feedback": [None,
                     {"en": "Local connectivity alone (a locally connected layer) still has separate weights at each position, so its count grows with H×W.",
                      "zh": "只有局部连接（局部连接层）时每个位置仍有各自的权重，参数量随 H×W 增长。"},
                     {"en": "Pooling is a separate layer; it does not decide a conv layer's weights.", "zh": "池化是另一种层，与卷积层的权重数量无关。"},
                     {"en": "Dropout changes training, not the number of weights.", "zh": "Dropout 影响训练过程，不改变权重数量。"}],
    },
}
MODEL_ROLES = ("卷积层通过局部连接和参数共享提取局部特征（边缘、纹理等），逐层得到更抽象的特征；池化层对特征图下采样，"
               "减小空间尺寸和计算量，并增强对小平移的不变性（鲁棒性）；全连接层把前面提取的特征整合起来，映射到输出，完成分类或回归。")
MODEL_SHARING = ("全连接层每个神经元与上一层所有神经元相连（全局连接），权重互不共享；卷积层每个输出只与输入的局部区域相连"
                 "（局部连接），同一个卷积核在所有空间位置上共享参数。参数共享使参数量与图像尺寸无关，大大减少参数量和计算复杂度；"
                 "参数少限制了模型复杂度，降低过拟合风险，同时带来平移等变性，提高泛化能力。")

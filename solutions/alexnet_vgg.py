"""Reference for the alexnet-vgg problem: stacked 3x3 convolutions vs one large kernel.

Convention (stated in the notebook): every conv has a bias; the first conv of a stack maps C_in -> C,
the others C -> C; "same" padding (K//2), stride 1, so every output is C x H x W. FLOPs = 2 x MACs of the
convolutions (bias additions not counted), as torch.utils.flop_counter.FlopCounterMode reports them."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from solutions.receptive_field import receptive_field


def stack(c_in: int, c: int, n: int, k: int = 3) -> nn.Sequential:
    """n convs k x k (C_in -> C, then C -> C), ReLU after each, as in VGG."""
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(c_in if i == 0 else c, c, k, padding=k // 2), nn.ReLU()]
    return nn.Sequential(*layers)


def _measure(module: nn.Module, c_in: int, h: int, w: int) -> tuple[int, int]:
    with FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, c_in, h, w, device="meta"))
    return int(sum(p.numel() for p in module.parameters())), int(counter.get_total_flops())


@lru_cache(maxsize=4096)
def solve_numbers(c_in: int, c: int, h: int, w: int) -> dict:
    with torch.device("meta"):
        two3, three3, one5, one7 = stack(c_in, c, 2), stack(c_in, c, 3), stack(c_in, c, 1, 5), stack(c_in, c, 1, 7)
    p_two3, _ = _measure(two3, c_in, h, w)
    p_three3, f_three3 = _measure(three3, c_in, h, w)
    p_one5, _ = _measure(one5, c_in, h, w)
    p_one7, f_one7 = _measure(one7, c_in, h, w)
    return {"vgg_two3_params": p_two3, "vgg_one5_params": p_one5, "vgg_three3_params": p_three3,
            "vgg_one7_params": p_one7, "vgg_ratio5": p_two3 / p_one5, "vgg_ratio7": p_three3 / p_one7,
            "vgg_three3_flops": f_three3, "vgg_one7_flops": f_one7,
            "vgg_rf": [receptive_field([(3, 1, 1, 1)] * 2)[0], receptive_field([(3, 1, 1, 1)] * 3)[0]]}


def solve(p: dict) -> dict:
    return solve_numbers(p["c_in"], p["c"], p["h"], p["w"])


CHOICES = {
    "vgg_choice_stack": {
        "title": {"en": "Multiple choice: three 3×3 instead of one 7×7", "zh": "选择题：三个 3×3 代替一个 7×7"},
        "question": {"zh": "VGG 用三个 3×3 卷积层代替一个 7×7 卷积层，主要好处是什么？",
                     "en": "VGG replaces one 7×7 conv layer by three stacked 3×3 conv layers. What is the main benefit?"},
        "options": [
            {"zh": "感受野同为 7×7，但参数更少，且多了两个非线性激活", "en": "the same 7×7 receptive field with fewer parameters and two more nonlinearities"},
            {"zh": "感受野比 7×7 更大", "en": "a receptive field larger than 7×7"},
            {"zh": "层数更少，因此推理更快", "en": "fewer layers, so inference is faster"},
            {"zh": "不再需要填充，输出尺寸自动保持不变", "en": "no padding is needed any more and the output size stays the same by itself"},
        ],
        "notes": [None, "CHOICE_LARGER_RF", "CHOICE_FEWER_LAYERS", "CHOICE_NO_PADDING"],
        "feedback": [None,
                     {"en": "Three 3×3 layers see exactly 7×7 (R = 1 + 3·2).", "zh": "三层 3×3 的感受野正好是 7×7(R = 1 + 3·2)。"},
                     {"en": "The stack has MORE layers (three instead of one).", "zh": "堆叠后层数更多（三层而不是一层）。"},
                     {"en": "Each 3×3 layer still needs padding 1 to keep the size.", "zh": "每个 3×3 层仍需要填充 1 才能保持尺寸。"}],
    },
    "alexnet_choice_relu": {
        "title": {"en": "Multiple choice: why ReLU sped up AlexNet", "zh": "选择题:ReLU 为何加快训练"},
        "question": {"zh": "AlexNet 用 ReLU 代替 sigmoid/tanh,为什么能加快训练？",
                     "en": "AlexNet used ReLU instead of sigmoid/tanh. Why did this speed up training?"},
        "options": [
            {"zh": "ReLU 在正区间不饱和，梯度不会随层数迅速消失，且计算简单", "en": "ReLU does not saturate for positive inputs, so gradients do not vanish quickly, and it is cheap to compute"},
            {"zh": "ReLU 的输出被限制在 (0, 1) 之间，训练更稳定", "en": "ReLU's output is bounded in (0, 1), which stabilises training"},
            {"zh": "ReLU 减少了网络的参数量", "en": "ReLU reduces the number of parameters of the network"},
            {"zh": "ReLU 对输入做了归一化，相当于批归一化", "en": "ReLU normalises its inputs, like batch normalisation"},
        ],
        "notes": [None, "CHOICE_BOUNDED", "CHOICE_FEWER_PARAMS", "CHOICE_NORMALISES"],
        "feedback": [None,
                     {"en": "That describes sigmoid; ReLU is unbounded above.", "zh": "这是 sigmoid 的性质;ReLU 在正方向无上界。"},
                     {"en": "An activation has no parameters; it does not change the count.", "zh": "激活函数没有参数，不改变参数量。"},
                     {"en": "ReLU is max(0, x); it does not normalise.", "zh": "ReLU 即 max(0, x)，不做归一化。"}],
    },
}

MODEL_ALEXNET = ("AlexNet 的创新:(1) 使用 ReLU 激活，不饱和、缓解梯度消失，收敛更快;(2) 在全连接层使用 Dropout,"
                 "减少神经元的共适应，降低过拟合;(3) 用 GPU 并行训练，大大加快训练速度；此外还有重叠池化、局部响应归一化(LRN)"
                 "和数据增强。")
MODEL_VGG = ("VGG 的创新：用多个小的 3×3 卷积核堆叠代替大卷积核，在相同感受野下参数更少、非线性更多；通过加深网络（16/19 层）"
             "提升性能；结构规则统一，重复使用“卷积 + 池化”模块，易于实现和迁移。")

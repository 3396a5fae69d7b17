"""Reference for the weight-initialisation problem: Xavier and He variances, an init function, and the
activation-scale experiment through a deep ReLU MLP (exactly reproducible procedure).

Keyword switches produce the classic wrong variants for feedback."""
from __future__ import annotations

import math

import torch
from torch import nn


def xavier_var(n_in: int, n_out: int) -> float:
    return 2.0 / (n_in + n_out)


def he_var(n_in: int, n_out: int) -> float:
    return 2.0 / n_in


VARIANCES = {"xavier": xavier_var, "he": he_var}


def target_var(scheme: str, n_in: int, n_out: int) -> float:
    return VARIANCES[scheme](n_in, n_out)


def init_weights(model: nn.Module, scheme: str) -> nn.Module:
    """Every nn.Linear: weight ~ N(0, Xavier 2/(fan_in+fan_out) or He 2/fan_in), bias = 0."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def _init(linear: nn.Linear, scheme: str, mode: str) -> None:
    if scheme == "xavier":
        nn.init.xavier_normal_(linear.weight)
    else:
        nn.init.kaiming_normal_(linear.weight, mode=mode, nonlinearity="relu")


def activation_stds(widths, scheme: str, seed: int, *, batch: int = 256, mode: str = "fan_in", relu: bool = True,
                    zero_bias: bool = True, layers_first: bool = False, pre_activation: bool = False) -> list[float]:
    """torch.manual_seed(seed); x = torch.randn(batch, widths[0]); then for each layer in order: create
    nn.Linear(widths[i], widths[i+1]), initialise its weight (xavier_normal_ or kaiming_normal_(mode='fan_in',
    nonlinearity='relu')), zero its bias, h = relu(linear(h)), record h.std().
    Switches: he with another `mode`, no ReLU, default bias kept, all layers created before any is
    initialised, std recorded before the ReLU."""
    torch.manual_seed(seed)
    h = torch.randn(batch, widths[0])
    pairs = list(zip(widths[:-1], widths[1:]))
    made = [nn.Linear(a, b) for a, b in pairs] if layers_first else None
    stds = []
    with torch.no_grad():
        for i, (a, b) in enumerate(pairs):
            linear = made[i] if layers_first else nn.Linear(a, b)
            _init(linear, scheme, mode)
            if zero_bias:
                nn.init.zeros_(linear.bias)
            z = linear(h)
            h = torch.relu(z) if relu else z
            stds.append(float((z if pre_activation else h).std()))
    return stds


def sample_var_rel_std(n: int) -> float:
    """The relative standard deviation of the sample variance of n normal draws: sqrt(2/(n-1))."""
    return math.sqrt(2.0 / (n - 1))


MODEL_ANSWER_WHY = (
    "全零初始化 (all-zero init): 同一层的所有神经元计算完全相同的输出, 反向传播时得到相同的梯度 (the same gradient) 并做相同的更新, "
    "对称性 (symmetry) 永远无法打破, 整层退化成一个神经元. 较大的随机值 (large random weights): 每层把激活值和梯度的方差放大, "
    "经过多层后前向激活和反向梯度指数增长, 出现梯度爆炸 (exploding gradients), sigmoid/tanh 还会饱和; 反之随机值过小则方差逐层缩小, "
    "出现梯度消失 (vanishing gradients). 所以要按扇入/扇出选择方差 (Xavier, He), 让各层方差保持稳定.")

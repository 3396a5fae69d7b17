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


def _init(linear: nn.Linear, scheme: str, mode: str, generator: torch.Generator) -> None:
    if scheme == "xavier":
        nn.init.xavier_normal_(linear.weight, generator=generator)
    else:
        nn.init.kaiming_normal_(linear.weight, mode=mode, nonlinearity="relu", generator=generator)


def _new_linear(n_in: int, n_out: int, generator: torch.Generator) -> nn.Linear:
    """nn.Linear(n_in, n_out) with its default init (nn.Linear.reset_parameters: weight by kaiming_uniform_
    with a = sqrt(5), then bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in))), drawn from `generator` in the same order:
    the numbers a student's nn.Linear draws from the global generator, without touching it."""
    linear = nn.utils.skip_init(nn.Linear, n_in, n_out)
    with torch.no_grad():
        nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(n_in) if n_in > 0 else 0
        nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
    return linear


def activation_stds(widths, scheme: str, seed: int, *, batch: int = 256, mode: str = "fan_in", relu: bool = True,
                    zero_bias: bool = True, layers_first: bool = False, pre_activation: bool = False) -> list[float]:
    """torch.manual_seed(seed); x = torch.randn(batch, widths[0]); then for each layer in order: create
    nn.Linear(widths[i], widths[i+1]), initialise its weight (xavier_normal_ or kaiming_normal_(mode='fan_in',
    nonlinearity='relu')), zero its bias, h = relu(linear(h)), record h.std().
    Switches: he with another `mode`, no ReLU, default bias kept, all layers created before any is
    initialised, std recorded before the ReLU.

    The student's steps draw from torch's global generator after torch.manual_seed(seed); here every draw,
    in the same order, comes from a private generator seeded with the same seed, which gives the same numbers
    and leaves the global generator alone (grader lanes are threads of one process: a global seed and draws
    would interleave with another lane's)."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(batch, widths[0], generator=gen)
    pairs = list(zip(widths[:-1], widths[1:]))
    made = [_new_linear(a, b, gen) for a, b in pairs] if layers_first else None
    stds = []
    with torch.no_grad():
        for i, (a, b) in enumerate(pairs):
            linear = made[i] if layers_first else _new_linear(a, b, gen)
            _init(linear, scheme, mode, gen)
            if zero_bias:
                nn.init.zeros_(linear.bias)
            z = linear(h)
            h = torch.relu(z) if relu else z
            stds.append(float((z if pre_activation else h).std()))
    return stds


MODEL_ANSWER_WHY = (
    "全零初始化 (all-zero init)：同一层的所有神经元计算完全相同的输出，反向传播时得到相同的梯度 (the same gradient) 并做相同的更新，"
    "对称性 (symmetry) 永远无法打破，整层退化成一个神经元. 较大的随机值 (large random weights)：每层把激活值和梯度的方差放大，"
    "经过多层后前向激活和反向梯度指数增长，出现梯度爆炸 (exploding gradients), sigmoid/tanh 还会饱和；反之随机值过小则方差逐层缩小，"
    "出现梯度消失 (vanishing gradients). 所以要按扇入/扇出选择方差 (Xavier, He)，让各层方差保持稳定.")


MODEL_ANSWER_COMPARE = (
    "Xavier (Glorot) 初始化的设计思路：让前向的激活值和反向的梯度都保持方差不变，即 n_in·Var(W) = 1 与 n_out·Var(W) = 1，"
    "两者取折中 (a compromise between fan-in and fan-out)，Var(W) = 2/(n_in + n_out)；它假设激活函数关于 0 对称、在 0 附近近似线性"
    "（如 tanh）. ReLU 把负半轴截断为 0，只保留信号二阶矩的一半 (ReLU zeroes half of its inputs)，所以在 ReLU 网络中用 Xavier 时，"
    "每经过一层激活值的标准差约乘以 1/√2 ≈ 0.71，激活和梯度逐层减小，深层时出现梯度消失 (vanishing). He (Kaiming) 初始化针对 ReLU "
    "的这种非对称性，按扇入把方差加倍为 2/n_in 来补偿丢失的一半 (doubles the variance to compensate)，使各层激活值和梯度的方差"
    "保持稳定 (stable)，因此更适合 ReLU 网络的梯度传播.")

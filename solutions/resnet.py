"""Reference ResNet-18/34 (torchvision layout, written here: torchvision is not a dependency).

conv7x7/2 (no bias) + BN + ReLU + maxpool3x3/2, four stages of BasicBlocks with 64, 128, 256, 512
channels ([2,2,2,2] for ResNet-18, [3,4,6,3] for ResNet-34; the first block of stages 2-4 has stride 2),
adaptive average pooling and a fully connected layer. A block's shortcut is a 1x1 conv (no bias) + BN
when the stride is not 1 or the channel count changes, the identity otherwise.
Keyword switches build the classic wrong variants, whose parameter counts and FLOPs give feedback."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """shortcut: "proj" (1x1 conv + BN when needed, the reference), "conv" (1x1 conv without BN),
    "always" (1x1 conv + BN in every block), "free" (parameter-free: subsample and zero-pad channels),
    "none" (no shortcut at all). The first 3x3 conv carries the stride (torchvision); `stride_in_second`
    moves it to the second. `order` is when the shortcut is computed: "after" the main branch (this
    reference), "before" it or "between" its two convolutions, all right. Wrong variants: `add=False`
    computes the shortcut but never adds it; `relu="before_add"` returns ReLU(F(x)) + x, `relu="none"`
    F(x) + x."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, bias: bool = False,
                 shortcut: str = "proj", stride_in_second: bool = False, order: str = "after", add: bool = True,
                 relu: str = "after_add"):
        super().__init__()
        s1, s2 = (1, stride) if stride_in_second else (stride, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=s1, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=s2, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(out_channels)
        needed = stride != 1 or in_channels != out_channels
        self.stride, self.extra = stride, out_channels - in_channels
        self.shortcut_kind, self.order, self.add, self.relu = shortcut, order, add, relu
        self.downsample = None
        if (needed and shortcut in ("proj", "conv")) or shortcut == "always":
            layers = [nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)]
            if shortcut != "conv":
                layers.append(nn.BatchNorm2d(out_channels))
            self.downsample = nn.Sequential(*layers)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.shortcut_kind == "none":
            return None
        if self.downsample is not None:
            return self.downsample(x)
        identity = x[:, :, ::self.stride, ::self.stride]
        if self.extra > 0:
            identity = F.pad(identity, (0, 0, 0, 0, 0, self.extra))
        return identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self._shortcut(x) if self.order == "before" else None
        out = F.relu(self.bn1(self.conv1(x)))
        if self.order == "between":
            identity = self._shortcut(x)
        out = self.bn2(self.conv2(out))
        if self.order == "after":
            identity = self._shortcut(x)
        if identity is None or not self.add:
            return F.relu(out)
        if self.relu == "before_add":
            return F.relu(out) + identity
        if self.relu == "none":
            return out + identity
        return F.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layout, num_classes: int, in_channels: int = 3, *, maxpool: bool = True, **block_switches):
        super().__init__()
        bias = block_switches.get("bias", False)
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        stages, cin = [], 64
        for i, (n, width) in enumerate(zip(layout, WIDTHS)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1, **block_switches))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def make_resnet(depth: int, num_classes: int, in_channels: int = 3, *, other_layout: bool = False,
                **switches) -> ResNet:
    """`other_layout`: the wrong variant that uses the other depth's blocks per stage."""
    layout = LAYOUTS[{18: 34, 34: 18}[depth] if other_layout else depth]
    return ResNet(layout, num_classes, in_channels, **switches)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def measure(depth: int, num_classes: int, in_channels: int, spatial: int, batch: int = 2,
            switches: tuple = (), flops: bool = True) -> dict:
    """Output shape, parameter count and forward FLOPs (FlopCounterMode: 2 per multiply-add of the convs
    and the fc) of the reference, or of a wrong variant given by `switches` ((key, value) pairs), built
    on the meta device (no weights are initialised, nothing is computed). flops=False skips the forward."""
    with torch.device("meta"):
        model = make_resnet(depth, num_classes, in_channels, **dict(switches)).eval()
        out = {"params": count_params(model)}
        if flops:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                y = model(torch.zeros(batch, in_channels, spatial, spatial))
            out.update(shape=list(y.shape), flops=int(counter.get_total_flops()))
    return out


@lru_cache(maxsize=256)
def _affine(key: str, depth: int, spatial: int, batch: int, switches: tuple) -> tuple[int, int, int]:
    """For a fixed depth, input size and batch, parameters and FLOPs are affine in the input channels c
    (only the stem conv reads them) and in the class count k (only the fc writes them), with no c·k
    term: measure three configurations and keep the coefficients."""
    base, dc, dk = (measure(depth, k, c, spatial, batch, switches, flops=key == "flops")[key]
                    for c, k in ((1, 1), (2, 1), (1, 2)))
    return base, dc - base, dk - base


def model_value(key: str, depth: int, num_classes: int, in_channels: int, spatial: int = 32, batch: int = 2,
                switches: tuple = ()) -> int:
    """measure(...)[key] ("params" or "flops") for any channel and class count, from three measurements."""
    if key == "params":
        spatial, batch = 0, 0  # parameters depend on neither
    a, b, e = _affine(key, depth, spatial, batch, tuple(switches))
    return a + b * (in_channels - 1) + e * (num_classes - 1)


def model_facts(depth: int, num_classes: int, in_channels: int, spatial: int, batch: int = 2,
                switches: tuple = ()) -> dict:
    return {"shape": [batch, num_classes],
            **{key: model_value(key, depth, num_classes, in_channels, spatial, batch, switches)
               for key in ("params", "flops")}}


def chain_gradient(k: int) -> str:
    """d y_k / d x for y_i = F_i(y_{i-1}) + y_{i-1}, as a product of (dF_i + 1), in symbols d1..dk."""
    return "*".join(f"(d{i} + 1)" for i in range(1, k + 1))


MODEL_ANSWER_RESIDUAL = (
    "残差连接 (residual connection) 是在几层卷积的输入和输出之间加一条恒等捷径 (identity shortcut)，让输出等于 F(x) + x："
    "这几层只需学习残差 F(x) = H(x) − x，而不必直接拟合整个映射 H(x)；最优映射接近恒等时只要让 F(x) ≈ 0，"
    "比让一叠非线性层拟合恒等映射容易得多，这缓解了深层网络的退化 (degradation) 问题。反向传播时 ∂y/∂x = ∂F/∂x + 1，"
    "经过 k 个块的梯度是 (1 + d_1)(1 + d_2)…(1 + d_k)，展开后含有常数项 1：梯度可以沿捷径直接传到浅层 "
    "(directly to earlier layers)，即使每个 d_i 都很小也不会消失 (does not vanish)，所以几百层甚至上千层的网络也能训练。")

# The BasicBlock as a Mermaid flowchart (Jupyter renders ```mermaid blocks in Markdown): both shortcuts.
MODEL_DIAGRAM = """```mermaid
flowchart TB
    subgraph identity["BasicBlock, identity shortcut (stride 1, C_in = C_out)"]
        x1["x"] --> c1["3×3 conv, stride 1, no bias"] --> b1["BN"] --> r1["ReLU"] --> c2["3×3 conv, stride 1"] --> b2["BN: F(x)"] --> a1(("+ add"))
        x1 -- "identity shortcut" --> a1
        a1 --> r2["ReLU"] --> y1["y = ReLU(F(x) + x)"]
    end
    subgraph projection["BasicBlock, projection shortcut (stride 2 or C_in ≠ C_out)"]
        x2["x"] --> d1["3×3 conv, stride 2, no bias"] --> e1["BN"] --> s1["ReLU"] --> d2["3×3 conv, stride 1"] --> e2["BN: F(x)"] --> a2(("+ add"))
        x2 -- "projection shortcut" --> p1["1×1 conv, stride 2"] --> p2["BN"] --> a2
        a2 --> s2["ReLU"] --> y2["y = ReLU(F(x) + W_s x)"]
    end
```"""

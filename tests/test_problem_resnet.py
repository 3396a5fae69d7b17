"""resnet: residual gradients (formulas), and BasicBlock, the identity property and ResNet-18/34 graded by
behaviour (the grader sets every parameter; outputs and gradients are compared with the reference's)."""
from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from hwkit.bank import get_problem
from solutions.resnet import measure, model_facts
from tests.support import grade_probe, append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, grade_one, make_course, release_notebook, solution_notebook

PROBLEM = get_problem("resnet")
PART_IDS = ["resnet_dydx", "resnet_chain_grad", "resnet_block", "resnet_identity", "resnet_model", "resnet_residual",
            "resnet_diagram"]


def test_sampling_200_seeds_valid_and_distinct():
    notes, chains_seen = set(), set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        assert params["depth"] in (18, 34) and params["num_classes"] >= 2 and params["in_channels"] >= 1
        answers = PROBLEM.answers(params)
        json.dumps(answers)
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        new_chain = params["chain_k"] not in chains_seen
        chains_seen.add(params["chain_k"])
        for part in parts:
            if part.id in ("resnet_block", "resnet_model") and seed >= 3:
                continue  # these build modules; a few seeds cover them (their mistakes too)
            if part.kind == "formula" and not new_chain:
                continue  # each symbolic comparison forks a process; once per chain length is enough
            assert_part_consistent(part, seed)
    assert len(notes) == 200


def test_reference_network_is_torchvision_resnet():
    """torchvision's published parameter counts and FLOPs (1.82 / 3.67 GMACs at 224x224) for 3 -> 1000 classes,
    and the affine shortcut in model_facts agrees with building the network."""
    r18, r34 = measure(18, 1000, 3, 224, 1), measure(34, 1000, 3, 224, 1)
    assert r18["params"] == 11_689_512 and r34["params"] == 21_797_672
    assert round(r18["flops"] / 2e9, 2) == 1.81 and round(r34["flops"] / 2e9, 2) == 3.66
    for cfg in ((18, 7, 5, 32), (34, 1234, 11, 48)):
        assert model_facts(*cfg) == measure(*cfg)
    assert model_facts(34, 10, 3, 32, switches=(("bias", True),)) == measure(34, 10, 3, 32, switches=(("bias", True),))


BLOCK_OK = '''
class _GoodBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, bias=False, stride_second=False):
        super().__init__()
        s1, s2 = (1, stride) if stride_second else (stride, 1)
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, s1, 1, bias=bias), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, s2, 1, bias=bias), nn.BatchNorm2d(cout)
        self.sc = nn.Identity()
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=bias), nn.BatchNorm2d(cout))
    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.sc(x))

def _net(block, layout, classes, cin, bias=False, maxpool=True, **kw):
    layers = [nn.Conv2d(cin, 64, 7, 2, 3, bias=bias), nn.BatchNorm2d(64), nn.ReLU()]
    if maxpool:
        layers.append(nn.MaxPool2d(3, 2, 1))
    c = 64
    for i, (n, w) in enumerate(zip(layout, [64, 128, 256, 512])):
        for j in range(n):
            layers.append(block(c, w, 2 if i and not j else 1, **kw))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes))
'''

WRONG_1 = BLOCK_OK + '''
class BasicBlock(_GoodBlock):            # conv biases everywhere
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride, bias=True)

def make_resnet(depth, num_classes, in_channels=3):
    return _net(BasicBlock, {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], num_classes, in_channels, bias=True)

resnet_dydx = "dF"
resnet_chain_grad = "*".join("d%d" % i for i in range(1, {k} + 1))
resnet_residual = "ResNet is a network with very many layers that works well."
resnet_diagram = "conv -> relu -> conv -> relu"
'''

WRONG_2 = BLOCK_OK + '''
class BasicBlock(_GoodBlock):            # ReLU before the addition
    def forward(self, x):
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))) + self.sc(x)

def make_resnet(depth, num_classes, in_channels=3):   # layouts swapped
    return _net(_GoodBlock, {34: [2, 2, 2, 2], 18: [3, 4, 6, 3]}[depth], num_classes, in_channels)

resnet_dydx = "2*dF"
resnet_chain_grad = " + ".join("d%d" % i for i in range(1, {k} + 1)) + " + 1"
resnet_diagram = "x -> [3x3 conv] -> [BN] -> [ReLU] -> [3x3 conv] -> [BN] -> [ReLU] -> y"
'''

WRONG_3 = BLOCK_OK + '''
class BasicBlock(nn.Module):             # projection shortcut without BatchNorm
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.inner = _GoodBlock(cin, cout, stride)
        if not isinstance(self.inner.sc, nn.Identity):
            self.inner.sc = nn.Conv2d(cin, cout, 1, stride, bias=False)
    def forward(self, x):
        return self.inner(x)

def make_resnet(depth, num_classes, in_channels=3):   # no max-pool in the stem
    return _net(_GoodBlock, {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], num_classes, in_channels, maxpool=False)
'''

WRONG_4 = BLOCK_OK + '''
import torch.nn.functional as F

class BasicBlock(nn.Module):             # no shortcut at all: a plain two-conv block
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                               nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        return F.relu(self.f(x))

def make_resnet(depth, num_classes, in_channels=3):
    return _net(BasicBlock, {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth], num_classes, in_channels)
'''

# A correct implementation in another style: residual/shortcut Sequentials, a ModuleList network class,
# functional pooling; equivalent formulas written differently.
ALTERNATIVE = '''
import torch.nn.functional as F

class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels))
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        return F.relu(self.residual(x) + self.shortcut(x))


class ResNetAlt(nn.Module):
    def __init__(self, counts, num_classes, in_channels):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU())
        self.blocks = nn.ModuleList()
        c = 64
        for stage, n in enumerate(counts):
            w = 64 * 2 ** stage
            for j in range(n):
                self.blocks.append(BasicBlock(c, w, 2 if stage > 0 and j == 0 else 1))
                c = w
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 3, 2, 1)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)))


def make_resnet(depth, num_classes, in_channels=3):
    return ResNetAlt((2, 2, 2, 2) if depth == 18 else (3, 4, 6, 3), num_classes, in_channels)

resnet_dydx = "1 + dF"
import itertools
resnet_chain_grad = " + ".join(["1"] + ["*".join(c) for r in range(1, {k} + 1)
                                        for c in itertools.combinations(["d%d" % i for i in range(1, {k} + 1)], r)])
resnet_residual = ("A residual connection adds the block's input to its output through an identity shortcut, y = F(x) + x, "
                   "so the layers only learn the residual. The derivative is dF + 1: the gradient flows directly back to "
                   "earlier layers through the shortcut, so it does not vanish even if dF is tiny. Learning F(x) close to "
                   "zero is easy, which also stops the degradation of very deep plain networks.")
resnet_diagram = \"\"\"
x --> 3x3 conv (stride s) --> BN --> ReLU --> 3x3 conv --> BN --> (+) --> ReLU --> y
|                                                                  ^
+---- identity shortcut, or 1x1 conv + BN (projection) when the shape changes ----+
\"\"\"
'''


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["resnet"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["resnet"]["params"]
    k = params["chain_k"]

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) plausible wrong answers, with their notes (None: that part is right in this round)
    rounds = [
        (WRONG_1, {"resnet_block": "RESNET_BIAS_IN_CONV", "resnet_model": "RESNET_BIAS_IN_CONV",
                   "resnet_dydx": "RESNET_GRAD_NO_IDENTITY", "resnet_chain_grad": "RESNET_CHAIN_NO_IDENTITY",
                   "resnet_identity": None, "resnet_residual": "WRITTEN_MISSING_SHORTCUT",
                   "resnet_diagram": "WRITTEN_MISSING_KERNEL_3X3"}),
        (WRONG_2, {"resnet_identity": "RESNET_RELU_PLACEMENT", "resnet_model": "RESNET_WRONG_BLOCKS",
                   "resnet_dydx": "FORMULA_NOT_EQUIVALENT", "resnet_chain_grad": "RESNET_CHAIN_ADDED",
                   "resnet_block": "RESNET_RELU_PLACEMENT", "resnet_diagram": "WRITTEN_MISSING_SHORTCUT"}),
        (WRONG_3, {"resnet_block": "RESNET_SHORTCUT_NO_BN", "resnet_model": "RESNET_NO_MAXPOOL"}),
        (WRONG_4, {"resnet_block": "RESNET_NO_SHORTCUT", "resnet_identity": "RESNET_NO_SHORTCUT",
                   "resnet_model": "RESNET_NO_SHORTCUT"}),
    ]
    for source, expected in rounds:
        results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), source.replace("{k}", str(k))))
        for pid, note in expected.items():
            r = results[pid]
            if note is None:
                assert r.score == r.max_points, (pid, r.note, r.feedback)
            else:
                assert r.score < r.max_points and r.note == note, (pid, r.note, r.feedback)

    # (4) a correct implementation in another style earns full marks
    results = grade_one(root, "s001", append_cell(release_notebook(root, "s001"), ALTERNATIVE.replace("{k}", str(k))))
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)


STYLES = BLOCK_OK + """
import torch.nn.functional as F

class ShortcutFirst(nn.Module):          # the solution notebook's style: the shortcut computed first
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        identity = x if self.down is None else self.down(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return F.relu(out)

class Between(ShortcutFirst):           # the shortcut computed between the two convolutions
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        identity = x if self.down is None else self.down(x)
        return F.relu(self.bn2(self.conv2(out)) + identity)

class RawHead(nn.Module):               # a network whose head is a raw (in, out) weight: x @ W + b
    def __init__(self, layout, classes, cin):
        super().__init__()
        self.body = _net(_GoodBlock, layout, 1, cin)[:-3]
        self.W = nn.Parameter(torch.zeros(512, classes))
        self.b = nn.Parameter(torch.zeros(classes))
    def forward(self, x):
        return self.body(x).mean(dim=(2, 3)) @ self.W + self.b

class NoAdd(_GoodBlock):                # the shortcut computed but never added
    def forward(self, x):
        self.sc(x)
        return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))

class StrideSecond(_GoodBlock):         # the stride on the second 3x3 conv
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride, stride_second=True)

class Blob(nn.Module):                  # no convolution at all: a parameter blob and an output of the right shape
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.blob, self.cout, self.stride = nn.Parameter(torch.zeros(9 * cin * cout)), cout, stride
    def forward(self, x):
        return torch.zeros(x.shape[0], self.cout, x.shape[2] // self.stride, x.shape[3] // self.stride) + 0 * self.blob.sum()

LAYOUTS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
"""


@pytest.fixture(scope="module")
def styles():
    ns = {"nn": nn, "torch": torch}
    exec(STYLES, ns)
    return ns


@pytest.mark.parametrize("block, note", [
    ("_GoodBlock", "CORRECT"), ("ShortcutFirst", "CORRECT"), ("Between", "CORRECT"),
    ("NoAdd", "RESNET_NO_SHORTCUT"), ("StrideSecond", "RESNET_STRIDE_IN_SECOND_CONV"), ("Blob", "MODULE_WRONG_PARAMETERS"),
])
def test_blocks_graded_by_behaviour(styles, block, note):
    """Without a kernel: blocks in every right style earn full marks; a block that only looks right does not."""
    part = next(p for p in PROBLEM.parts(PROBLEM.sample(random.Random(2))) if p.id == "resnet_block")
    probe = part.probe(random.Random(9))
    outcome = grade_probe(part, probe, {"BasicBlock": styles[block]})
    assert outcome.note == note and (outcome.fraction == 1.0) == (note == "CORRECT"), outcome


@pytest.mark.parametrize("block, note", [("ShortcutFirst", "CORRECT"), ("NoAdd", "RESNET_NO_SHORTCUT"),
                                         ("Blob", "MODULE_WRONG_PARAMETERS")])
def test_identity_property_needs_a_real_block(styles, block, note):
    """Switching the residual branch off must leave ReLU(x): a block that never adds its shortcut, or a blob that
    returns zeros, earns nothing, even though ReLU(x) alone would be easy to return for the switched-off case."""
    part = next(p for p in PROBLEM.parts(PROBLEM.sample(random.Random(2))) if p.id == "resnet_identity")
    outcome = grade_probe(part, part.probe(random.Random(4)), {"BasicBlock": styles[block]})
    assert outcome.note == note and (outcome.fraction == 1.0) == (note == "CORRECT"), outcome


def test_networks_graded_by_behaviour(styles):
    """A whole network: another style (a raw transposed head) earns full marks; the stride on the wrong conv is named."""
    params = {"depth": 18, "num_classes": 10, "in_channels": 3, "chain_k": 2}
    part = next(p for p in PROBLEM.parts(params) if p.id == "resnet_model")
    probe = part.probe(random.Random(1))
    raw_head = lambda depth, classes, cin=3: styles["RawHead"](styles["LAYOUTS"][depth], classes, cin)  # noqa: E731
    assert grade_probe(part, probe, {"make_resnet": raw_head}).fraction == 1.0
    stride_second = lambda depth, classes, cin=3: styles["_net"](styles["StrideSecond"], styles["LAYOUTS"][depth], classes, cin)  # noqa: E731
    outcome = grade_probe(part, probe, {"make_resnet": stride_second})
    assert outcome.fraction < 1 and outcome.note == "RESNET_STRIDE_IN_SECOND_CONV"

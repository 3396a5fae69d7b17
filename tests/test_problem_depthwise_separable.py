"""depthwise-separable: principle, formulas, numbers and the module (probed by behaviour)."""
from __future__ import annotations

import json
import random

import torch
from torch import nn

from hwkit.bank import get_problem
from solutions.depthwise_separable import DepthwiseSeparableConv
from tests.support import grade_probe, append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, solution_notebook

PROBLEM = get_problem("depthwise-separable")
PART_IDS = ["ds_principle", "ds_standard_formula", "ds_separable_formula", "ds_cost_formula", "ds_ratio_formula",
            "ds_standard_params", "ds_separable_params", "ds_param_ratio", "ds_standard_macs", "ds_separable_macs",
            "ds_module"]

MODULELIST_LINEAR = '''
class DepthwiseSeparableConv(nn.Module):
    """Alternative: one single-channel conv per input channel, nn.Linear as the pointwise step."""
    def __init__(self, cin, cout, k):
        super().__init__()
        self.per_channel = nn.ModuleList(nn.Conv2d(1, 1, k, padding=k // 2, bias=False) for _ in range(cin))
        self.mix = nn.Linear(cin, cout, bias=False)

    def forward(self, x):
        y = torch.cat([conv(x[:, i:i + 1]) for i, conv in enumerate(self.per_channel)], dim=1)
        return self.mix(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
'''

FUNCTIONAL_PARAMS = '''
import torch.nn.functional as F
class DepthwiseSeparableConv(nn.Module):
    """Alternative: raw parameters of other shapes and F.conv2d / einsum."""
    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.k = kernel_size
        self.spatial = nn.Parameter(torch.randn(in_channels, kernel_size, kernel_size))
        self.channel_mix = nn.Parameter(torch.randn(in_channels, out_channels))

    def forward(self, x):
        y = F.conv2d(x, self.spatial.unsqueeze(1), padding=self.k // 2, groups=x.shape[1])
        return torch.einsum("nchw,co->nohw", y, self.channel_mix)
'''

STANDARD_CONV = '''
class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)

    def forward(self, x):
        return self.conv(x)
'''

WITH_BIAS = '''
class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, k, padding=k // 2, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.pw(self.dw(x))
'''

POINTWISE_FIRST = '''
class DepthwiseSeparableConv(nn.Module):
    def __init__(self, cin, cout, k):
        super().__init__()
        self.pw = nn.Conv2d(cin, cout, 1, bias=False)
        self.dw = nn.Conv2d(cout, cout, k, padding=k // 2, groups=cout, bias=False)

    def forward(self, x):
        return self.dw(self.pw(x))
'''


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        ref = PROBLEM.answers(params)
        k, cin, cout, h, w = (params[x] for x in ("k", "c_in", "c_out", "h", "w"))
        assert ref["ds_separable_params"] == k * k * cin + cin * cout
        assert ref["ds_standard_params"] == k * k * cin * cout
        assert ref["ds_separable_macs"] == h * w * (k * k * cin + cin * cout)
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            if part.kind == "formula" and seed % 20:
                continue  # formula references are constants; check them on a few seeds (each check forks)
            assert_part_consistent(part, seed, mistakes=False)
    assert len(notes) == 200


def test_module_graded_by_behaviour_in_any_style():
    """The module part without a kernel: the reference, other correct styles (a ModuleList with nn.Linear, raw
    parameters of other shapes) earn full marks; the classic wrong modules are named."""
    part = next(p for p in PROBLEM.parts(PROBLEM.sample(random.Random(1))) if p.id == "ds_module")
    probe = part.probe(random.Random(5))

    def grade(source: str):
        ns = {"nn": nn, "torch": torch}
        exec(source, ns)
        return grade_probe(part, probe, ns)

    assert grade_probe(part, probe, {"DepthwiseSeparableConv": DepthwiseSeparableConv}).fraction == 1.0
    assert grade(MODULELIST_LINEAR).fraction == 1.0
    assert grade(FUNCTIONAL_PARAMS).fraction == 1.0
    for source, note in ((STANDARD_CONV, "DSCONV_NO_GROUPS"), (WITH_BIAS, "DSCONV_WITH_BIAS"),
                         (POINTWISE_FIRST, "DSCONV_POINTWISE_FIRST")):
        outcome = grade(source)
        assert outcome.fraction < 1.0 and outcome.note == note, (note, outcome)


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["depthwise-separable"], students=["s001"])

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (4) an alternative module (ModuleList + Linear) earns full marks; (3) wrong answers, round 1
    nb = append_cell(solution_notebook(root, "s001"), MODULELIST_LINEAR + (
        "ds_principle = 'It is faster.'\n"
        "ds_standard_formula = 'K**2*C_in*C_out + C_out'\n"
        "ds_separable_formula = 'K**2*C_in*C_out'\n"
        "ds_cost_formula = 'K**2*C_in + C_in*C_out'\n"
        "ds_ratio_formula = 'K**2*C_out/(K**2 + C_out)'\n"
        "ds_standard_params = ds_standard_params + ds_c_out\n"
        "ds_separable_params = ds_k**2 * ds_c_in * ds_c_out\n"
        "ds_param_ratio = 1 / ds_param_ratio\n"
        "ds_standard_macs = 2 * ds_standard_macs\n"
        "ds_separable_macs = ds_k**2 * ds_c_in + ds_c_in * ds_c_out\n"))
    results = grade_one(root, "s001", nb)
    assert results["ds_module"].score == results["ds_module"].max_points, results["ds_module"]
    expected = {"ds_principle": "WRITTEN_TOO_SHORT", "ds_standard_formula": "FORMULA_WITH_BIAS",
                "ds_separable_formula": "DSCONV_NO_GROUPS", "ds_cost_formula": "COST_NO_SPATIAL",
                "ds_ratio_formula": "RATIO_INVERTED", "ds_standard_params": "CONV_WITH_BIAS",
                "ds_separable_params": "DSCONV_NO_GROUPS", "ds_param_ratio": "RATIO_INVERTED",
                "ds_standard_macs": "MACS_GAVE_FLOPS", "ds_separable_macs": "MACS_NO_SPATIAL"}
    assert_wrong_with_notes(results, expected)

    # round 2: a standard conv as the module, other wrong formulas and numbers
    nb = append_cell(solution_notebook(root, "s001"), STANDARD_CONV + (
        "ds_principle = 'Depthwise conv on each channel, then fewer parameters.'\n"
        "ds_standard_formula = 'K**2*C_out'\n"
        "ds_separable_formula = 'K**2*C_out + C_in*C_out'\n"
        "ds_cost_formula = '2*H_out*W_out*(K**2*C_in + C_in*C_out)'\n"
        "ds_ratio_formula = 'C_in'\n"
        "ds_separable_params = ds_separable_params + ds_c_in + ds_c_out\n"
        "ds_separable_macs = 2 * ds_separable_macs\n"))
    results = grade_one(root, "s001", nb)
    expected = {"ds_module": "DSCONV_NO_GROUPS", "ds_principle": "WRITTEN_MISSING_POINTWISE",
                "ds_standard_formula": "FORMULA_NO_CIN", "ds_separable_formula": "DS_DEPTHWISE_PER_OUTPUT",
                "ds_cost_formula": "COST_GAVE_FLOPS", "ds_ratio_formula": "FORMULA_NOT_EQUIVALENT",
                "ds_separable_params": "DS_WITH_BIAS", "ds_separable_macs": "MACS_GAVE_FLOPS"}
    assert_wrong_with_notes(results, expected)
    assert results["ds_module"].score == 0   # the right output shape from another architecture earns nothing

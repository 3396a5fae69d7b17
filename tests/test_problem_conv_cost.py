"""conv-cost: parameters, MACs/FLOPs of a conv layer and its 1x1 replacement, the formula, the 1x1 role."""
from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from hwkit.bank import get_problem
from hwkit.probes import as_reply
from tests.support import append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, solution_notebook

PROBLEM = get_problem("conv-cost")
PART_IDS = ["conv_out_hw", "conv_params", "conv_macs", "conv_flops", "conv1x1_params", "conv1x1_flops",
            "conv_param_ratio", "conv_flops_ratio", "conv_params_formula", "conv1x1_role"]


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        ref = PROBLEM.answers(params)
        # the 1x1 replacement really keeps the output size (checked with real modules)
        x = torch.zeros(1, params["c_in"], params["h"], params["w"])
        big = nn.Conv2d(params["c_in"], params["c_out"], params["k"], stride=params["stride"], padding=params["padding"])
        small = nn.Conv2d(params["c_in"], params["c_out"], 1, stride=params["stride"], padding=params["padding1x1"])
        with torch.device("meta"):
            assert big.to("meta")(x.to("meta")).shape == small.to("meta")(x.to("meta")).shape
        assert ref["conv_params"] == (params["k"] ** 2 * params["c_in"] + 1) * params["c_out"]
        assert ref["conv_flops"] == 2 * ref["conv_macs"]
        assert ref["conv_flops_ratio"] == pytest.approx(params["k"] ** 2)
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            if part.kind == "formula" and seed % 20:
                continue  # the formula reference is a constant; check it on a few seeds (each check forks)
            assert_part_consistent(part, seed, mistakes=part.kind != "formula")
    assert len(notes) == 200


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["conv-cost"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["conv-cost"]["params"]
    s = params["stride"]

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) two rounds of plausible wrong answers (each part is scored alone, so one notebook carries many)
    nb = append_cell(solution_notebook(root, "s001"), (
        "conv_out_hw = ((conv_h - conv_k) // conv_stride + 1, (conv_w - conv_k) // conv_stride + 1)\n"
        "conv_params = conv_k**2 * conv_c_in * conv_c_out\n"
        "conv_macs = 2 * conv_macs\n"
        "conv_flops = conv_flops // 2\n"
        "conv1x1_params = conv_c_in * conv_c_out\n"
        "conv1x1_flops = conv1x1_flops // 2\n"
        "conv_param_ratio = float(conv_k**2)\n"
        "conv_flops_ratio = 1 / conv_flops_ratio\n"
        "conv_params_formula = 'K**2*C_in*C_out'\n"
        "conv1x1_role = 'It makes the network faster to train, I think.'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"conv_out_hw": "OUT_IGNORED_PADDING", "conv_params": "CONV_NO_BIAS", "conv_macs": "MACS_GAVE_FLOPS",
                "conv_flops": "FLOPS_GAVE_MACS", "conv1x1_params": "CONV_NO_BIAS", "conv1x1_flops": "FLOPS_GAVE_MACS",
                "conv_param_ratio": "RATIO_NO_BIAS", "conv_flops_ratio": "RATIO_INVERTED",
                "conv_params_formula": "FORMULA_NO_BIAS"}
    assert_wrong_with_notes(results, expected)
    assert results["conv1x1_role"].score < results["conv1x1_role"].max_points
    assert results["conv1x1_role"].note.startswith("WRITTEN_MISSING")

    nb = append_cell(solution_notebook(root, "s001"), (
        "conv1x1_params = conv_params\n"
        "conv_flops = conv_flops + conv_c_out * conv_out_hw[0] * conv_out_hw[1]\n"
        "conv_out_hw = ((conv_h + 2 * conv_padding - conv_k) + 1, (conv_w + 2 * conv_padding - conv_k) + 1)\n"
        "conv_params = (conv_k**2 + 1) * conv_c_out\n"
        "conv_macs = conv_h * conv_w * conv_c_out * conv_c_in * conv_k**2\n"
        "conv1x1_flops = 2 * conv_h * conv_w * conv_c_in * conv_c_out + 1\n"
        "conv_param_ratio = 1 / conv_param_ratio\n"
        "conv_flops_ratio = 'nine'\n"
        "conv_params_formula = '(K**2 + 1)*C_in*C_out'\n"
        "conv1x1_role = 'short'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"conv_params": "CONV_NO_CIN", "conv1x1_params": "CONV1X1_KEPT_K",
                "conv_param_ratio": "RATIO_INVERTED", "conv_flops_ratio": "NOT_A_NUMBER",
                "conv_params_formula": "FORMULA_BIAS_PER_INPUT", "conv1x1_role": "WRITTEN_TOO_SHORT",
                "conv1x1_flops": "WRONG_VALUE", "conv_flops": "FLOPS_COUNTED_BIAS"}
    if s > 1:
        expected.update({"conv_out_hw": "OUT_IGNORED_STRIDE", "conv_macs": "MACS_INPUT_SIZE"})
    assert_wrong_with_notes(results, expected)


def test_alternative_answers_are_accepted(tmp_path):
    """Answers in other forms: torch-counted values, numpy ints, a list, an equivalent formula, Chinese text."""
    from hwkit.checks import Reply, grade_reply

    params = PROBLEM.sample(random.Random(7))
    ref = PROBLEM.answers(params)
    parts = {p.id: p for p in PROBLEM.parts(params)}
    import numpy as np
    alts = {"conv_out_hw": np.array(ref["conv_out_hw"]), "conv_params": np.int64(ref["conv_params"]),
            "conv_macs": float(ref["conv_macs"]), "conv_flops": str(ref["conv_flops"]),
            "conv_param_ratio": round(ref["conv_param_ratio"], 3), "conv_flops_ratio": params["k"] ** 2,
            "conv_params_formula": "C_out*C_in*K*K + C_out",
            "conv1x1_role": "1×1 卷积可以降维或升维,实现跨通道的信息融合,并配合 ReLU 增加非线性。"}
    for pid, value in alts.items():
        part = parts[pid]
        probe = part.probe(random.Random(0))
        assert grade_reply(part, Reply(True, as_reply(value)), probe).fraction == 1.0, pid

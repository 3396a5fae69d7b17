"""alexnet-vgg: stacked 3x3 convs vs 5x5 / 7x7 (parameters, receptive field, FLOPs), written parts, choices."""
from __future__ import annotations

import json
import random
from collections import Counter

import torch

from hwkit.bank import get_problem
from hwkit.checks import Reply, grade_reply
from hwkit.choices import LETTERS
from solutions.alexnet_vgg import stack
from tests.support import append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, solution_notebook

PROBLEM = get_problem("alexnet-vgg")
PART_IDS = ["vgg_two3_params", "vgg_one5_params", "vgg_three3_params", "vgg_one7_params", "vgg_rf", "vgg_ratio5",
            "vgg_ratio7", "vgg_three3_flops", "vgg_one7_flops", "alexnet_innovations", "vgg_innovations",
            "vgg_choice_stack", "alexnet_choice_relu"]


def test_sampling_200_seeds_valid_and_distinct():
    notes, letters = set(), Counter()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        ref = PROBLEM.answers(params)
        ci, c, h, w = (params[x] for x in ("c_in", "c", "h", "w"))
        assert ref["vgg_three3_params"] == 9 * ci * c + c + 2 * (9 * c * c + c)
        assert ref["vgg_one7_params"] == 49 * ci * c + c
        assert ref["vgg_rf"] == [5, 7]
        assert ref["vgg_one7_flops"] == 2 * h * w * 49 * ci * c
        letters[ref["vgg_choice_stack"]] += 1
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            assert_part_consistent(part, seed)
    assert len(notes) == 200
    assert set(letters) == set("ABCD")


def test_stacks_keep_the_size_and_receptive_field():
    """The three-layer stack really sees a 7x7 window (impulse response), like the 7x7 conv."""
    s = stack(1, 1, 3)
    with torch.no_grad():
        for m in s:
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0)
                m.bias.zero_()
        x = torch.zeros(1, 1, 15, 15)
        x[0, 0, 7, 7] = 1
        y = s(x)
    assert y.shape == x.shape and int((y[0, 0] != 0).sum()) == 49


def test_written_answers():
    params = PROBLEM.sample(random.Random(3))
    parts = {p.id: p for p in PROBLEM.parts(params)}
    text = ("ReLU instead of tanh avoids saturation so it converges faster; dropout against overfitting; "
            "two GPUs for training.")
    outcome = grade_reply(parts["alexnet_innovations"], Reply(True, text), None)
    assert outcome.fraction == 1.0 and outcome.needs_review
    outcome = grade_reply(parts["vgg_innovations"], Reply(True, "VGG 使用 3x3 卷积, 网络更深, 结构统一。"), None)
    assert outcome.fraction == 1.0


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["alexnet-vgg"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["alexnet-vgg"]["params"]
    letter = {name: [LETTERS[order.index(i)] for i in range(4)] for name, order in params["orders"].items()}

    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    nb = append_cell(solution_notebook(root, "s001"), (
        "vgg_two3_params = 2 * vgg_conv_params(vgg_c_in, vgg_c, 3)\n"
        "vgg_one5_params = 25 * vgg_c_in * vgg_c\n"
        "vgg_three3_params = 9 * vgg_c_in * vgg_c + 2 * 9 * vgg_c * vgg_c\n"
        "vgg_one7_params = 50 * vgg_c\n"
        "vgg_rf = [6, 9]\n"
        "vgg_ratio5 = 1 / vgg_ratio5\n"
        "vgg_ratio7 = 27 / 49\n"
        "vgg_three3_flops = vgg_three3_flops // 2\n"
        "vgg_one7_flops = vgg_one7_flops + vgg_h * vgg_w * vgg_c\n"
        "alexnet_innovations = 'AlexNet used ReLU and dropout and was deeper.'\n"
        "vgg_innovations = 'VGG is deeper.'\n"
        f"vgg_choice_stack = '{letter['vgg_choice_stack'][1]}'\n"
        f"alexnet_choice_relu = '{letter['alexnet_choice_relu'][2]}.'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"vgg_two3_params": "STACK_ALL_CIN", "vgg_one5_params": "CONV_NO_BIAS",
                "vgg_three3_params": "CONV_NO_BIAS", "vgg_one7_params": "CONV_NO_CIN", "vgg_rf": "RF_SUMMED_KERNELS",
                "vgg_ratio5": "RATIO_INVERTED",
                "vgg_three3_flops": "FLOPS_GAVE_MACS", "vgg_one7_flops": "FLOPS_COUNTED_BIAS",
                "alexnet_innovations": "WRITTEN_MISSING_GPU", "vgg_innovations": "WRITTEN_TOO_SHORT",
                "vgg_choice_stack": "CHOICE_LARGER_RF", "alexnet_choice_relu": "CHOICE_FEWER_PARAMS"}
    ref = PROBLEM.answers(params)
    if abs(ref["vgg_ratio7"] / (27 / 49) - 1) > 2e-3:
        expected["vgg_ratio7"] = "RATIO_SQUARE_CHANNELS"
    assert_wrong_with_notes(results, expected)
    assert 0 < results["alexnet_innovations"].score

    nb = append_cell(solution_notebook(root, "s001"), (
        "vgg_two3_params = 2 * vgg_conv_params(vgg_c, vgg_c, 3)\n"
        "vgg_three3_params = 3 * vgg_conv_params(vgg_c_in, vgg_c, 3)\n"
        "vgg_rf = (3, 3)\n"
        "vgg_ratio5 = 18 / 25\n"
        "vgg_ratio7 = 1 / vgg_ratio7\n"
        "vgg_one7_flops = vgg_one7_flops // 2\n"
        f"vgg_choice_stack = '{letter['vgg_choice_stack'][3]}'\n"
        "alexnet_choice_relu = 'E'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"vgg_rf": "RF_SINGLE_LAYER", "vgg_ratio7": "RATIO_INVERTED", "vgg_one7_flops": "FLOPS_GAVE_MACS",
                "vgg_choice_stack": "CHOICE_NO_PADDING", "alexnet_choice_relu": "WRONG_CHOICE"}
    ref = PROBLEM.answers(params)
    if params["c_in"] != params["c"]:  # with C_in = C these mistakes give the right numbers
        expected.update({"vgg_two3_params": "STACK_ALL_C", "vgg_three3_params": "STACK_ALL_CIN"})
    if abs(ref["vgg_ratio5"] / (18 / 25) - 1) > 2e-3:  # C_in close to C: 18/25 is within the tolerance
        expected["vgg_ratio5"] = "RATIO_SQUARE_CHANNELS"
    assert_wrong_with_notes(results, expected)

"""conv-vs-fc: FC vs locally connected vs conv parameter counts, the sharing saving, written parts, choices."""
from __future__ import annotations

import json
import random
from collections import Counter

from hwkit.bank import get_problem
from hwkit.checks import Reply, grade_reply
from tests.support import append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, assert_wrong_with_notes, grade_one, make_course, solution_notebook

PROBLEM = get_problem("conv-vs-fc")
PART_IDS = ["fcconv_fc_params", "fcconv_conv_params", "fcconv_fc_same_params", "fcconv_local_params",
            "fcconv_sharing_ratio", "fcconv_fc_conv_ratio", "fcconv_roles", "fcconv_sharing",
            "fcconv_choice_pool", "fcconv_choice_sharing"]


def test_sampling_200_seeds_valid_and_distinct():
    notes, letters = set(), Counter()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        ref = PROBLEM.answers(params)
        c, h, w, d, k, co = (params[x] for x in ("c", "h", "w", "hidden", "k", "c_out"))
        assert ref["fcconv_fc_params"] == c * h * w * d + d
        assert ref["fcconv_conv_params"] == k * k * c * co + co
        assert ref["fcconv_local_params"] == h * w * co * (k * k * c + 1)
        assert ref["fcconv_fc_same_params"] < 2**53
        letters[ref["fcconv_choice_sharing"]] += 1
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            assert_part_consistent(part, seed)
    assert len(notes) == 200
    assert set(letters) == set("ABCD")  # the right option moves between students


def test_written_answers_in_english_and_chinese():
    params = PROBLEM.sample(random.Random(3))
    parts = {p.id: p for p in PROBLEM.parts(params)}
    good = {"fcconv_roles": "Convolutions extract features such as edges; pooling downsamples the maps and gives some "
                            "translation invariance; the fully connected layer combines features for classification.",
            "fcconv_sharing": "全连接是全局连接;卷积是局部连接,并且同一个卷积核在各位置权值共享,所以参数量少得多,也不容易过拟合。"}
    for pid, text in good.items():
        outcome = grade_reply(parts[pid], Reply(True, text), parts[pid].probe(random.Random(0)))
        assert outcome.fraction == 1.0 and outcome.needs_review, (pid, outcome)


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["conv-vs-fc"], students=["s001"], lang="zh")

    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["conv-vs-fc"]["params"]
    from hwkit.choices import LETTERS
    letter = {name: [LETTERS[order.index(i)] for i in range(4)] for name, order in params["orders"].items()}
    nb = append_cell(solution_notebook(root, "s001"), (
        "fcconv_fc_params = fcconv_in * fcconv_hidden\n"
        "fcconv_conv_params = fcconv_k**2 * fcconv_c * fcconv_c_out\n"
        "fcconv_fc_same_params = fcconv_in * fcconv_out + fcconv_c_out\n"
        "fcconv_local_params = fcconv_k**2 * fcconv_c * fcconv_c_out + fcconv_c_out\n"
        "fcconv_sharing_ratio = 1 / fcconv_sharing_ratio\n"
        "fcconv_fc_conv_ratio = (fcconv_in * fcconv_hidden + fcconv_hidden) / (fcconv_k**2 * fcconv_c * fcconv_c_out + fcconv_c_out)\n"
        "fcconv_roles = '卷积层提取特征,全连接层做分类。'\n"
        "fcconv_sharing = 'Convolution uses local connections.'\n"
        f"fcconv_choice_pool = '{letter['fcconv_choice_pool'][3]}'\n"
        f"fcconv_choice_sharing = '({letter['fcconv_choice_sharing'][1].lower()})'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"fcconv_fc_params": "FC_NO_BIAS", "fcconv_conv_params": "CONV_NO_BIAS",
                "fcconv_fc_same_params": "FC_BIAS_PER_CHANNEL", "fcconv_local_params": "LOCAL_SHARED",
                "fcconv_sharing_ratio": "RATIO_INVERTED", "fcconv_fc_conv_ratio": "RATIO_WRONG_FC",
                "fcconv_roles": "WRITTEN_MISSING_DOWNSAMPLING", "fcconv_sharing": "WRITTEN_MISSING_WEIGHT_SHARING",
                "fcconv_choice_pool": "CHOICE_RELU", "fcconv_choice_sharing": "CHOICE_LOCAL_CONNECTIVITY"}
    assert_wrong_with_notes(results, expected)
    assert results["fcconv_roles"].needs_review and 0 < results["fcconv_roles"].score

    nb = append_cell(solution_notebook(root, "s001"), (
        "fcconv_fc_params = fcconv_h * fcconv_w * fcconv_hidden + fcconv_hidden\n"
        "fcconv_conv_params = (fcconv_k**2 + 1) * fcconv_c_out\n"
        "fcconv_fc_same_params = fcconv_in * fcconv_out\n"
        "fcconv_local_params = fcconv_h * fcconv_w * fcconv_c_out * fcconv_k**2 * fcconv_c + fcconv_c_out\n"
        "fcconv_sharing_ratio = 'a lot'\n"
        "fcconv_fc_conv_ratio = 1 / fcconv_fc_conv_ratio\n"
        "fcconv_choice_pool = 'A or B'\n"
        f"fcconv_choice_sharing = '{letter['fcconv_choice_sharing'][3]}'\n"))
    results = grade_one(root, "s001", nb)
    expected = {"fcconv_fc_same_params": "FC_NO_BIAS",
                "fcconv_local_params": "LOCAL_BIAS_PER_CHANNEL", "fcconv_sharing_ratio": "NOT_A_NUMBER",
                "fcconv_fc_conv_ratio": "RATIO_INVERTED", "fcconv_choice_pool": "NOT_A_CHOICE",
                "fcconv_choice_sharing": "CHOICE_DROPOUT"}
    if params["c"] > 1:  # with a grayscale image these two mistakes give the right number
        expected.update({"fcconv_fc_params": "FC_NO_CHANNELS", "fcconv_conv_params": "CONV_NO_CIN"})
    assert_wrong_with_notes(results, expected)

"""A student who explains it right in everyday words gets the same provisional score as one who uses the
textbook's: the rubric's concept lists hold paraphrases in both languages, and text is compared normalised
(case, full/half width, typographic punctuation). A wrong answer still scores low; every score stays flagged."""
import random

import pytest

from hwkit.bank import get_problem
from hwkit.checks import normalise_text


def _part(problem_id: str, part_id: str):
    problem = get_problem(problem_id)
    return next(p for p in problem.parts(problem.sample(random.Random(0))) if p.id == part_id)


PARAPHRASES = [
    ("weight-init", "wi_why", "If every weight starts equal, all neurons learn the same thing because they receive the "
     "same gradient; weights that are too big make activations blow up, too small and the signal dies out."),
    ("weight-init", "wi_why", "权重全相同时每个神经元学到一样的东西,反向传播时得到同样的更新;初值太大数值会发散,太小则越来越小。"),
    ("alexnet-vgg", "alexnet_innovations", "It used rectified linear units, which train more quickly than tanh, randomly "
     "dropped units so the net would not memorise the training set, and ran on two graphics cards."),
    ("alexnet-vgg", "alexnet_innovations", "用线性整流激活函数训练更快,随机丢弃神经元防止死记训练集,并在两块英伟达显卡上训练。"),
    ("alexnet-vgg", "vgg_innovations", "Only tiny 3 by 3 filters, stacked into many layers, with the same structure "
     "in every block."),
    ("conv-cost", "conv1x1_role", "A 1x1 conv can compress or expand the channels, blends them as a weighted sum at "
     "each pixel, and adds an activation after it."),
    ("conv-vs-fc", "fcconv_roles", "Conv layers pick up patterns such as edges, pooling shrinks the map so a small "
     "shift does not matter much, and the dense layers at the end predict the label."),
    ("conv-vs-fc", "fcconv_sharing", "Each output only sees a small patch of nearby pixels and the same filter is "
     "reused everywhere, so the model has far less weights and is less likely to memorise."),
    ("depthwise-separable", "ds_principle", "First every channel on its own gets a KxK filter, then a 1 by 1 conv "
     "mixes them: the job is done in two stages and is far more efficient."),
    ("depthwise-separable", "ds_principle", "ＦＩＲＳＴ　ＥＶＥＲＹ　ＣＨＡＮＮＥＬ　ＯＮ　ＩＴＳ　ＯＷＮ，ＴＨＥＮ　Ａ　１Ｘ１　ＣＯＮＶ；"
     "ＴＷＯ　ＳＴＡＧＥＳ，ＦＥＷＥＲ　ＰＡＲＡＭＥＴＥＲＳ。"),
    ("depthwise-separable", "ds_principle", "先对每个通道单独做空间卷积,再用 1×1 卷积融合通道,分两步完成,参数和计算都更少。"),
]


@pytest.mark.parametrize("problem_id, part_id, answer", PARAPHRASES)
def test_a_right_answer_in_everyday_words_finds_every_concept(problem_id, part_id, answer):
    part = _part(problem_id, part_id)
    outcome = part.check.grade(answer)
    missing = [name for name, words in part.check.concept_hits(answer).items() if not words]
    assert outcome.fraction == 1.0 and not missing, missing
    assert outcome.needs_review                     # still provisional: a person confirms it


@pytest.mark.parametrize("problem_id, part_id, answer", [
    ("depthwise-separable", "ds_principle", "It is a normal convolution with a bigger kernel that sees more context."),
    ("weight-init", "wi_why", "Initialisation does not matter much as long as the learning rate is tuned."),
    ("alexnet-vgg", "alexnet_innovations", "AlexNet used sigmoid units and was trained on a laptop processor."),
])
def test_a_wrong_answer_still_scores_low(problem_id, part_id, answer):
    assert _part(problem_id, part_id).check.grade(answer).fraction <= 0.25


def test_text_is_compared_normalised():
    assert normalise_text("ＲｅＬＵ，“Rectified”\u3000Linear　Unit。") == 'relu,"rectified" linear unit.'

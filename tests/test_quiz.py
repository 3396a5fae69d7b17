"""The quiz bank (templates/quiz_*) and the quiz-review assignment that draws from it."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hwkit.bank import get_problem
from hwkit.checks import Reply, grade_reply
from hwkit.course import load_course
from hwkit.generate import chosen_problems, generate, write_generated
from hwkit.probes import as_reply
from solutions import quiz
from tests.support import append_cell, grade_one, make_course, release_notebook, solution_notebook

ITEMS = ["quiz-conv-output", "quiz-conv2d-shape", "quiz-se-block", "quiz-im2col", "quiz-gd-step",
         "quiz-momentum-adam", "quiz-hessian", "quiz-max-lr", "quiz-softmax-ce", "quiz-backprop", "quiz-gru-lstm",
         "quiz-batchnorm", "quiz-dropout"]


def _variants(pid: str, seeds=range(200)):
    problem = get_problem(pid)
    for seed in seeds:
        params = problem.sample(random.Random(seed))
        yield seed, params, {p.id: p for p in problem.parts(params)}


def _grade(part, value):
    probe = part.probe(random.Random(0))
    return grade_reply(part, Reply(True, as_reply(value)), probe)


# ------------------------------------------------------------------------------------------ sampling

@pytest.mark.parametrize("pid", ITEMS)
def test_200_variants_valid_distinct_and_self_consistent(pid):
    problem = get_problem(pid)
    notes = set()
    for seed, params, parts in _variants(pid):
        assert json.loads(json.dumps(params)) == params
        notes.add(problem.note(params))
        json.dumps(problem.answers(params))
        assert 2 <= sum(p.points for p in parts.values()) <= 4 and 1 <= len(parts) <= 3
        for part in parts.values():
            assert part.id.startswith("q_")
            if part.kind == "formula" and seed >= 10:
                continue   # a constant reference; each formula comparison forks a checker process
            probe = part.probe(random.Random(seed))
            want = part.reference(probe)
            outcome = grade_reply(part, Reply(True, as_reply(want)), probe)
            assert outcome.fraction == 1.0, (pid, seed, part.id, outcome)
            for mistake in part.mistakes(probe):
                if part.kind != "formula":
                    assert not part.check.matches(mistake.value, want), (pid, seed, part.id, mistake.note)
    assert len(notes) == 200, pid


def test_part_ids_unique_across_the_bank():
    ids = [part_id for pid in ITEMS for part_id in get_problem(pid).part_ids()]
    assert len(ids) == len(set(ids))


def test_formulas_agree_with_torch():
    """The hand formulas the statements teach (and the mistakes are built from) agree with torch."""
    for _, params, _ in _variants("quiz-conv-output"):
        assert quiz.stack_output_size(params["input_size"], params["layers"]) == \
            quiz.torch_stack_output_size(params["input_size"], params["layers"], params["kinds"])
        assert quiz.net_output_shape_formula(params["net"]) == quiz.net_output_shape(params["net"])
    for _, p, _ in _variants("quiz-conv2d-shape", range(50)):
        args = (p["cin"], p["cout"], p["kernel"], p["stride"], p["padding"], [p["n"], p["cin"], p["h"], p["w"]])
        assert quiz.conv2d_shape_formula(*args) == quiz.conv2d_shape(*args)
        assert quiz.conv2d_params(p["cin"], p["cout"], p["kernel"]) == p["cout"] * (p["cin"] * p["kernel"][0] * p["kernel"][1] + 1)
    for _, p, _ in _variants("quiz-se-block", range(50)):
        c, r = p["c"], p["r"]
        assert quiz.se_params(c, r) == c * c // r + c // r + c // r * c + c
    for _, p, _ in _variants("quiz-gru-lstm", range(50)):
        for kind in ("lstm", "gru"):
            assert quiz.rnn_params(kind, p["input_size"], p["hidden_size"]) == \
                quiz.rnn_params_formula(kind, p["input_size"], p["hidden_size"])
    for _, p, _ in _variants("quiz-momentum-adam", range(50)):
        args = (p["x0"], p["g1"], p["adam_lr"], p["beta1"], p["beta2"], p["eps"])
        np.testing.assert_allclose(quiz.adam_step(*args), quiz.adam_step_formula(*args), rtol=1e-12)
    for _, p, _ in _variants("quiz-batchnorm", range(50)):
        out = quiz.batchnorm_train(p["x"], p["gamma"], p["beta"], 1e-5, 0.1)
        np.testing.assert_allclose(out["y"], quiz.batchnorm_formula(p["x"], p["gamma"], p["beta"], 1e-5), atol=1e-12)
        np.testing.assert_allclose(out["running_var"], quiz.running_var_formula(p["x"], 0.1), atol=1e-12)
    for _, p, _ in _variants("quiz-backprop", range(50)):
        # sympy's exact gradients against torch autograd in float64
        w1, b1, w2, b2 = (torch.tensor(p[k], dtype=torch.float64, requires_grad=True) for k in ("w1", "b1", "w2", "b2"))
        yhat = torch.sigmoid(w2 * torch.sigmoid(w1 * p["x"] + b1) + b2)
        ((yhat - p["y"]) ** 2).backward()
        g = quiz.backprop_grads(*(p[k] for k in ("x", "w1", "b1", "w2", "b2", "y")))
        assert g["dw1"] == pytest.approx(w1.grad.item(), rel=1e-9, abs=1e-15)
        assert g["dw2"] == pytest.approx(w2.grad.item(), rel=1e-9, abs=1e-15)
    for _, p, _ in _variants("quiz-im2col", range(50)):
        rows, cols = quiz.im2col_shape(p["cin"], p["k"], p["s"], p["p"], p["h"], p["w"])
        conv = nn.Conv2d(p["cin"], p["cout"], p["k"], p["s"], p["p"], device="meta")
        out = conv(torch.zeros(1, p["cin"], p["h"], p["w"], device="meta"))
        assert (rows, cols) == (p["cin"] * p["k"] ** 2, out.shape[2] * out.shape[3])
    for _, p, _ in _variants("quiz-dropout", range(20)):
        assert quiz.dropout_torch_scale(p["p"]) == pytest.approx(1 / (1 - p["p"]), rel=1e-12)
    for _, p, _ in _variants("quiz-hessian"):
        det = p["H"][0][0] * p["H"][1][1] - p["H"][0][1] ** 2
        assert det != 0 and quiz.classify_stationary(p["H"]) in ("min", "max", "saddle")


def test_dropout_reference_leaves_torch_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    quiz.dropout_torch_scale(0.3)
    assert torch.equal(torch.rand(3), expected)


def test_hessian_kinds_and_option_orders_all_occur():
    kinds, orders = set(), set()
    for _, p, _ in _variants("quiz-hessian"):
        kinds.add(quiz.classify_stationary(p["H"]))
        orders.add(tuple(p["options"]))
    assert kinds == {"min", "max", "saddle"} and len(orders) == 24


# ------------------------------------------------------------------------------------------ wrong answers
# Each entry: (problem, part, plausible wrong answer computed here from the parameters, expected note).
# The wrong answer is returned as None where it does not apply to a variant.

def _np(p, key):
    return np.asarray(p[key], dtype=np.float64)


def _no_floor(p):
    size = p["input_size"]
    for k, s, pad in p["layers"]:
        size = (size - k + 2 * pad) / s + 1
    return size


def _ceil_size(p):
    size = p["input_size"]
    for k, s, pad in p["layers"]:
        size = math.ceil((size - k + 2 * pad) / s) + 1
    return size


def _shape_nhwc(p):
    n, c, h, w = quiz.net_output_shape(p["net"])
    return [n, h, w, c]


def _no_pool(p):
    net = p["net"]
    side = lambda x: ((x - net["k1"] + 2 * net["p1"]) + 1 - net["k2"] + 2 * net["p2"]) // net["s2"] + 1  # noqa: E731
    return [net["n"], net["c2"], side(net["h"]), side(net["w"])]


def _conv2d(p, **kw):
    return quiz.conv2d_shape_formula(p["cin"], p["cout"], p["kernel"], p["stride"], p["padding"],
                                     [p["n"], p["cin"], p["h"], p["w"]], **kw)


def _se(p):
    n, c, r = p["n"], p["c"], p["r"]
    return {"squeeze": [n, c], "fc1": [n, c // r], "fc2": [n, c]}


def _im2col(p):
    return quiz.im2col_shape(p["cin"], p["k"], p["s"], p["p"], p["h"], p["w"])


def _gd_grad(p):
    return _np(p, "A") @ _np(p, "x0") - _np(p, "b")


def _ev(p):
    return np.linalg.eigvalsh(_np(p, "H"))


def _letter(p, kind):
    return "ABCD"[p["options"].index(kind)]


def _softmax(p):
    z = _np(p, "logits")
    e = np.exp(z - z.max())
    return e / e.sum()


def _bp(p):
    h = 1 / (1 + math.exp(-(p["w1"] * p["x"] + p["b1"])))
    yhat = 1 / (1 + math.exp(-(p["w2"] * h + p["b2"])))
    return h, yhat, 2 * (yhat - p["y"]) * yhat * (1 - yhat)


def _bn(p, ddof=0, affine=True):
    x = _np(p, "x")
    y = (x - x.mean(0)) / np.sqrt(x.var(0, ddof=ddof) + 1e-5)
    return y * _np(p, "gamma") + _np(p, "beta") if affine else y


def _adam_no_correction(p):
    g = _np(p, "g1")
    m, v = (1 - p["beta1"]) * g, (1 - p["beta2"]) * g * g
    return _np(p, "x0") - p["adam_lr"] * m / (np.sqrt(v) + p["eps"])


def _mom_ema(p):
    b, v = p["beta"], (1 - p["beta"]) * _np(p, "g1")   # v = beta v + (1 - beta) g, from 0
    x1 = _np(p, "x0") - p["lr"] * v
    return x1 - p["lr"] * (b * v + (1 - b) * _np(p, "g2"))


def _lstm_like(p, gates, biases):
    i, h = p["input_size"], p["hidden_size"]
    return gates * (h * i + h * h + biases * h)


WRONG = [
    ("quiz-conv-output", "q_convout_size", _no_floor, "CONV_OUT_NO_FLOOR"),
    ("quiz-conv-output", "q_convout_size", _ceil_size, "CONV_OUT_CEIL"),
    ("quiz-conv-output", "q_convout_shape", _shape_nhwc, "SHAPE_NHWC_ORDER"),
    ("quiz-conv-output", "q_convout_shape", _no_pool, "SHAPE_FORGOT_POOL"),
    ("quiz-conv2d-shape", "q_conv2d_shape", lambda p: _conv2d(p, keep_channels=True), "SHAPE_KEPT_IN_CHANNELS"),
    ("quiz-conv2d-shape", "q_conv2d_shape", lambda p: _conv2d(p, swap_kernel=True), "SHAPE_KERNEL_SWAPPED"),
    ("quiz-conv2d-shape", "q_conv2d_params", lambda p: p["cout"] * p["cin"] * p["kernel"][0] * p["kernel"][1], "CONV_NO_BIAS"),
    ("quiz-conv2d-shape", "q_conv2d_params", lambda p: p["cout"] * (p["kernel"][0] * p["kernel"][1] + 1), "PARAMS_NO_IN_CHANNELS"),
    ("quiz-se-block", "q_se_shapes", lambda p: {**_se(p), "squeeze": [p["n"], p["c"], p["h"], p["w"]]}, "SE_SQUEEZE_NOT_POOLED"),
    ("quiz-se-block", "q_se_shapes", lambda p: {**_se(p), "fc1": [p["n"], p["c"] * p["r"]]}, "SE_FC1_TIMES_R"),
    ("quiz-se-block", "q_se_params", lambda p: 2 * p["c"] * p["c"] // p["r"], "SE_NO_BIAS"),
    ("quiz-se-block", "q_se_params", lambda p: quiz.se_params(p["c"], p["r"]) + p["c"], "SE_COUNTED_SQUEEZE"),
    ("quiz-im2col", "q_im2col_shape", lambda p: _im2col(p)[::-1], "IM2COL_TRANSPOSED"),
    ("quiz-im2col", "q_im2col_shape", lambda p: [p["k"] ** 2, _im2col(p)[1]], "IM2COL_NO_CIN"),
    ("quiz-im2col", "q_im2col_macs", lambda p: 2 * p["cout"] * _im2col(p)[0] * _im2col(p)[1], "MACS_GAVE_FLOPS"),
    ("quiz-im2col", "q_im2col_macs", lambda p: p["cout"] * p["k"] ** 2 * _im2col(p)[1], "MACS_NO_CIN"),
    ("quiz-gd-step", "q_gd_grad", lambda p: _np(p, "A") @ _np(p, "x0"), "GD_FORGOT_B"),
    ("quiz-gd-step", "q_gd_grad", lambda p: 0.5 * _np(p, "A") @ _np(p, "x0") - _np(p, "b"), "GD_KEPT_HALF"),
    ("quiz-gd-step", "q_gd_x1", lambda p: _np(p, "x0") + p["lr"] * _gd_grad(p), "GD_WRONG_SIGN"),
    ("quiz-gd-step", "q_gd_x1", lambda p: _np(p, "x0") - _gd_grad(p), "GD_FORGOT_LR"),
    ("quiz-momentum-adam", "q_mom_x2", lambda p: _np(p, "x0") - p["lr"] * (_np(p, "g1") + _np(p, "g2")), "MOMENTUM_IGNORED"),
    ("quiz-momentum-adam", "q_mom_x2", _mom_ema, "MOMENTUM_DAMPENED"),
    ("quiz-momentum-adam", "q_adam_x1", _adam_no_correction, "ADAM_NO_BIAS_CORRECTION"),
    ("quiz-momentum-adam", "q_adam_x1", lambda p: _np(p, "x0") - p["adam_lr"] / _np(p, "g1"), "ADAM_NO_SQRT"),
    ("quiz-hessian", "q_hess_choice", lambda p: _letter(p, "degenerate"), "HESSIAN_NOT_DEGENERATE"),
    ("quiz-hessian", "q_hess_choice", lambda p: {"min": _letter(p, "max"), "max": _letter(p, "min")}.get(
        quiz.classify_stationary(p["H"])), "HESSIAN_SIGN_REVERSED"),
    ("quiz-hessian", "q_hess_eig", lambda p: _ev(p)[::-1], "HESSIAN_EIG_DESCENDING"),
    ("quiz-hessian", "q_hess_eig", lambda p: sorted([p["H"][0][0], p["H"][1][1]]), "HESSIAN_DIAGONAL_AS_EIG"),
    ("quiz-max-lr", "q_maxlr", lambda p: 2 / _ev(p)[0], "MAXLR_LAMBDA_MIN"),
    ("quiz-max-lr", "q_maxlr", lambda p: 1 / _ev(p)[-1], "MAXLR_NO_FACTOR_2"),
    ("quiz-max-lr", "q_maxlr_best", lambda p: 2 / _ev(p)[-1], "BESTLR_GAVE_MAX"),
    ("quiz-max-lr", "q_maxlr_best", lambda p: 1 / _ev(p)[-1], "BESTLR_ONE_OVER_LMAX"),
    ("quiz-softmax-ce", "q_softmax_probs", lambda p: np.log(_softmax(p)), "SOFTMAX_GAVE_LOG_PROBS"),
    ("quiz-softmax-ce", "q_softmax_probs", lambda p: 1 / (1 + np.exp(-_np(p, "logits"))), "SOFTMAX_SIGMOID"),
    ("quiz-softmax-ce", "q_softmax_ce", lambda p: -math.log10(_softmax(p)[p["target"]]), "CE_LOG10"),
    ("quiz-softmax-ce", "q_softmax_ce", lambda p: math.log(_softmax(p)[p["target"]]), "CE_FORGOT_MINUS"),
    ("quiz-backprop", "q_bp_dw1", lambda p: _bp(p)[2] / 2 * p["w2"] * _bp(p)[0] * (1 - _bp(p)[0]) * p["x"], "BACKPROP_DROPPED_2"),
    ("quiz-backprop", "q_bp_dw1", lambda p: _bp(p)[2] * p["w2"] * p["x"], "BACKPROP_NO_HIDDEN_DERIV"),
    ("quiz-backprop", "q_bp_dw2", lambda p: -_bp(p)[2] * _bp(p)[0], "BACKPROP_SIGN"),
    ("quiz-backprop", "q_bp_dw2", lambda p: 2 * (_bp(p)[1] - p["y"]) * _bp(p)[0], "BACKPROP_NO_SIGMOID_DERIV"),
    ("quiz-gru-lstm", "q_rnn_lstm_params", lambda p: _lstm_like(p, 4, 1), "LSTM_ONE_BIAS"),
    ("quiz-gru-lstm", "q_rnn_lstm_params", lambda p: _lstm_like(p, 3, 2), "LSTM_GATES_OF_GRU"),
    ("quiz-gru-lstm", "q_rnn_gru_params", lambda p: _lstm_like(p, 3, 1), "GRU_ONE_BIAS"),
    ("quiz-gru-lstm", "q_rnn_gru_params", lambda p: _lstm_like(p, 4, 2), "GRU_GATES_OF_LSTM"),
    ("quiz-batchnorm", "q_bn_y", lambda p: _bn(p, ddof=1), "BN_UNBIASED_VAR"),
    ("quiz-batchnorm", "q_bn_y", lambda p: _bn(p, affine=False), "BN_NO_AFFINE"),
    ("quiz-batchnorm", "q_bn_running_var", lambda p: 0.9 + 0.1 * _np(p, "x").var(0), "BN_RUNNING_BIASED_VAR"),
    ("quiz-batchnorm", "q_bn_running_var", lambda p: 0.1 + 0.9 * _np(p, "x").var(0, ddof=1), "BN_MOMENTUM_SWAPPED"),
    ("quiz-dropout", "q_drop_scale", lambda p: 1 / p["p"], "DROPOUT_KEEP_DROP_SWAPPED"),
    ("quiz-dropout", "q_drop_scale", lambda p: 1 - p["p"], "DROPOUT_SCALE_BY_KEEP"),
    ("quiz-dropout", "q_drop_plain_mean", lambda p: p["p"] * p["a"], "DROPOUT_KEEP_DROP_SWAPPED"),
    ("quiz-dropout", "q_drop_plain_mean", lambda p: p["a"], "DROPOUT_ASSUMED_INVERTED"),
    ("quiz-dropout", "q_drop_expect", lambda p: "x - p*x", "DROPOUT_FORGOT_SCALE"),
    ("quiz-dropout", "q_drop_expect", lambda p: "x/(1-p)", "DROPOUT_DOUBLE_SCALE"),
]


@pytest.mark.parametrize("pid,part_id,wrong,note", WRONG, ids=[f"{w[1]}-{w[3]}" for w in WRONG])
def test_plausible_wrong_answer_gets_its_note(pid, part_id, wrong, note):
    seeds = range(3) if part_id == "q_drop_expect" else range(30)
    hits = 0
    for seed, params, parts in _variants(pid, seeds):
        part = parts[part_id]
        value = wrong(params)
        if value is None or part.check.matches(as_reply(value), part.reference(part.probe(random.Random(0)))):
            continue   # does not apply to this variant, or coincides with the right answer
        outcome = _grade(part, value)
        assert outcome.fraction < 1.0 and outcome.note == note, (seed, value, outcome)
        assert outcome.feedback["en"] and outcome.feedback["zh"]
        hits += 1
    assert hits >= len(seeds) // 3, (part_id, note, hits)


def test_every_part_has_at_least_two_wrong_answers_tested():
    tested = {}
    for pid, part_id, _, _ in WRONG:
        tested[part_id] = tested.get(part_id, 0) + 1
    for pid in ITEMS:
        for part_id in get_problem(pid).part_ids():
            assert tested.get(part_id, 0) >= 2, part_id


def test_other_wrong_answers_score_zero_with_a_generic_note():
    _, params, parts = next(_variants("quiz-conv2d-shape", [0]))
    ref = parts["q_conv2d_params"].reference(None)
    assert _grade(parts["q_conv2d_params"], ref + 1).note == "WRONG_VALUE"
    assert _grade(parts["q_conv2d_params"], "many").note == "NOT_AN_INTEGER"
    assert _grade(parts["q_conv2d_shape"], [1, 2, 3]).note == "WRONG_SHAPE"
    _, params, parts = next(_variants("quiz-se-block", [0]))
    outcome = _grade(parts["q_se_shapes"], {**_se(params), "fc2": [1]})
    assert outcome.note == "FC2_WRONG_SHAPE" and outcome.fraction == pytest.approx(2 / 3)
    _, params, parts = next(_variants("quiz-hessian", [0]))
    assert _grade(parts["q_hess_choice"], "maybe").note == "NOT_A_CHOICE"
    _, params, parts = next(_variants("quiz-dropout", [0]))
    assert _grade(parts["q_drop_expect"], "x*q").note == "FORMULA_UNPARSEABLE"
    assert _grade(parts["q_drop_expect"], None).note == "NOT_ANSWERED"


def test_correct_answers_in_other_forms_get_full_marks():
    _, p, parts = next(_variants("quiz-conv-output", [1]))
    out = quiz.small_net(*(p["net"][k] for k in ("cin", "c1", "k1", "p1", "c2", "k2", "s2", "p2")))(
        torch.zeros(p["net"]["n"], p["net"]["cin"], p["net"]["h"], p["net"]["w"], device="meta"))
    assert _grade(parts["q_convout_shape"], out.shape).fraction == 1.0          # torch.Size
    assert _grade(parts["q_convout_shape"], tuple(out.shape)).fraction == 1.0   # a tuple
    assert _grade(parts["q_convout_size"], float(quiz.stack_output_size(p["input_size"], p["layers"]))).fraction == 1.0
    _, p, parts = next(_variants("quiz-gd-step", [2]))
    assert _grade(parts["q_gd_x1"], torch.tensor(parts["q_gd_x1"].reference(None))).fraction == 1.0
    for _, p, parts in _variants("quiz-gd-step", range(10)):   # the gradient is integral: [g1, g2] by hand
        assert _grade(parts["q_gd_grad"], [int(v) for v in _gd_grad(p)]).fraction == 1.0
        assert _grade(parts["q_gd_grad"], _gd_grad(p)).fraction == 1.0
    _, p, parts = next(_variants("quiz-gru-lstm", [3]))
    lstm = sum(t.numel() for t in nn.LSTM(p["input_size"], p["hidden_size"], device="meta").parameters())
    assert _grade(parts["q_rnn_lstm_params"], np.int64(lstm)).fraction == 1.0
    _, p, parts = next(_variants("quiz-hessian", [4]))
    letter = parts["q_hess_choice"].reference(None)
    assert _grade(parts["q_hess_choice"], f"({letter.lower()})").fraction == 1.0
    _, p, parts = next(_variants("quiz-dropout", [5]))
    assert _grade(parts["q_drop_expect"], "x*(1-p)/(1-p)").fraction == 1.0
    assert _grade(parts["q_drop_expect"], "x").fraction == 1.0


# ------------------------------------------------------------------------------------------ float32 students
# No statement of the quiz asks for a precision, so whatever a reasonable student computes must pass: torch's
# default float32 (torch.tensor of Python floats), numpy float64, or float32 numpy. Each entry: a way to compute
# a part's answer in float32; all of them must earn full marks on 2,000 variants.

F32 = torch.float32


def _t(value):
    return torch.tensor(value, dtype=F32)


def _closed_form_eig(p):
    """λ = tr/2 ∓ sqrt((tr/2)² − det), in float32 (cancellation in the small eigenvalue)."""
    H = _t(p["H"])
    half, det = H.trace() / 2, torch.linalg.det(H)
    root = torch.sqrt(half ** 2 - det)
    return torch.stack([half - root, half + root])


def _gd_autograd_sgd(p):
    x = _t(p["x0"]).requires_grad_()
    (0.5 * x @ _t(p["A"]) @ x - _t(p["b"]) @ x).backward()
    torch.optim.SGD([x], lr=p["lr"]).step()
    return x.detach()


def _sgd_momentum(p):
    x = _t(p["x0"]).requires_grad_()
    opt = torch.optim.SGD([x], lr=p["lr"], momentum=p["beta"])
    for g in (p["g1"], p["g2"]):
        x.grad = _t(g)
        opt.step()
    return x.detach()


def _adam(p):
    x = _t(p["x0"]).requires_grad_()
    opt = torch.optim.Adam([x], lr=p["adam_lr"], betas=(p["beta1"], p["beta2"]), eps=p["eps"])
    x.grad = _t(p["g1"])
    opt.step()
    return x.detach()


def _bn_module(p):
    x = _t(p["x"])
    bn = nn.BatchNorm1d(x.shape[1]).train()
    with torch.no_grad():
        bn.weight.copy_(_t(p["gamma"]))
        bn.bias.copy_(_t(p["beta"]))
        return bn(x), bn.running_var.clone()


def _bn_by_hand(p):
    x = _t(p["x"])
    return _t(p["gamma"]) * (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5) + _t(p["beta"])


def _bp_autograd(p):
    w1, b1, w2, b2 = (_t(p[k]).requires_grad_() for k in ("w1", "b1", "w2", "b2"))
    yhat = torch.sigmoid(w2 * torch.sigmoid(w1 * p["x"] + b1) + b2)
    ((yhat - p["y"]) ** 2).backward()
    return {"q_bp_dw1": w1.grad.item(), "q_bp_dw2": w2.grad.item()}


def _bp_by_hand(p):
    x, w1, b1, w2, b2, y = (_t(p[k]) for k in ("x", "w1", "b1", "w2", "b2", "y"))
    h = torch.sigmoid(w1 * x + b1)
    yhat = torch.sigmoid(w2 * h + b2)
    delta = 2 * (yhat - y) * yhat * (1 - yhat)
    return {"q_bp_dw1": float(delta * w2 * h * (1 - h) * x), "q_bp_dw2": float(delta * h)}


FLOAT32 = {
    "quiz-hessian": {
        "q_hess_eig": {
            "torch.linalg.eigvalsh": lambda p: torch.linalg.eigvalsh(_t(p["H"])),
            "torch.linalg.eigvals, real parts sorted": lambda p: torch.linalg.eigvals(_t(p["H"])).real.sort().values,
            "closed form": _closed_form_eig,
            "np.linalg.eigvalsh on float32": lambda p: np.linalg.eigvalsh(np.array(p["H"], dtype=np.float32)),
        }},
    "quiz-gd-step": {
        "q_gd_grad": {"A @ x0 - b": lambda p: _t(p["A"]) @ _t(p["x0"]) - _t(p["b"])},
        "q_gd_x1": {
            "x0 - lr * g": lambda p: _t(p["x0"]) - p["lr"] * (_t(p["A"]) @ _t(p["x0"]) - _t(p["b"])),
            "autograd + optim.SGD": _gd_autograd_sgd,
            "numpy float32": lambda p: np.array(p["x0"], np.float32) - np.float32(p["lr"]) * (
                np.array(p["A"], np.float32) @ np.array(p["x0"], np.float32) - np.array(p["b"], np.float32)),
        }},
    "quiz-backprop": {
        k: {"autograd": lambda p, k=k: _bp_autograd(p)[k], "by hand": lambda p, k=k: _bp_by_hand(p)[k]}
        for k in ("q_bp_dw1", "q_bp_dw2")
    },
    "quiz-max-lr": {
        "q_maxlr": {"2 / eigvalsh[-1]": lambda p: 2 / torch.linalg.eigvalsh(_t(p["H"]))[-1]},
        "q_maxlr_best": {"2 / (min + max)": lambda p: 2 / torch.linalg.eigvalsh(_t(p["H"]))[[0, -1]].sum()},
    },
    "quiz-momentum-adam": {
        "q_mom_x2": {"optim.SGD(momentum)": _sgd_momentum},
        "q_adam_x1": {"optim.Adam": _adam},
    },
    "quiz-batchnorm": {
        "q_bn_y": {"nn.BatchNorm1d": lambda p: _bn_module(p)[0], "by hand": _bn_by_hand},
        "q_bn_running_var": {"nn.BatchNorm1d": lambda p: _bn_module(p)[1],
                             "by hand": lambda p: 0.9 + 0.1 * _t(p["x"]).var(0, unbiased=True)},
    },
    "quiz-softmax-ce": {
        "q_softmax_probs": {"torch.softmax": lambda p: torch.softmax(_t(p["logits"]), 0)},
        "q_softmax_ce": {
            "F.cross_entropy": lambda p: F.cross_entropy(_t([p["logits"]]), torch.tensor([p["target"]])).item(),
            "logsumexp - z_t": lambda p: (torch.logsumexp(_t(p["logits"]), 0) - p["logits"][p["target"]]).item()},
    },
    "quiz-dropout": {
        "q_drop_scale": {"1 / (1 - p)": lambda p: (1 / (1 - _t(p["p"]))).item()},
        "q_drop_plain_mean": {"(1 - p) * a": lambda p: ((1 - _t(p["p"])) * _t(p["a"])).item()},
    },
}

# quiz-backprop's variants whose gradients are nearly 0 (ŷ within ~1e-5 of y), found by computing all 241 million
# variants in float64 and float32: float32 misses these by more than 0.2 % (relative), though within ~2e-7.
BACKPROP_NEAR_ZERO = [
    {"x": 1.1, "w1": 1.6, "b1": 2.0, "w2": -0.6, "b2": -0.8, "y": 0.2},
    {"x": 1.3, "w1": 1.7, "b1": 1.7, "w2": -0.7, "b2": -0.7, "y": 0.2},
    {"x": 1.4, "w1": 1.9, "b1": 1.1, "w2": -0.6, "b2": -0.8, "y": 0.2},
    {"x": 1.5, "w1": 1.5, "b1": 1.8, "w2": -0.8, "b2": -0.6, "y": 0.2},
    {"x": 1.5, "w1": 1.9, "b1": 1.2, "w2": -0.8, "b2": -0.6, "y": 0.2},
    {"x": 1.9, "w1": 2.0, "b1": 1.3, "w2": -0.9, "b2": 1.3, "y": 0.6},   # float32's worst, relative to the sensitivity
    {"x": 1.6, "w1": 2.0, "b1": 1.9, "w2": -0.9, "b2": 1.3, "y": 0.6},
]
# The items whose tolerances were widened to float32's precision (2,000 variants each); the others were measured
# with a wide margin (float32 uses at most 6 % of their tolerance, over all variants where that is feasible).
WIDENED_ITEMS = ("quiz-hessian", "quiz-gd-step", "quiz-backprop")


def _float32_variants(pid):
    yield from _variants(pid, range(2000 if pid in WIDENED_ITEMS else 300))
    if pid == "quiz-backprop":
        problem = get_problem(pid)
        for params in BACKPROP_NEAR_ZERO:
            yield None, params, {p.id: p for p in problem.parts(params)}


@pytest.fixture
def one_torch_thread():
    """A kernel in a grading batch has one intra-op thread; a 2-thread OpenMP region per tiny op crawls on a busy
    machine (nn.BatchNorm1d: 0.2 s a call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("pid", sorted(FLOAT32))
def test_float32_answers_get_full_marks(pid, one_torch_thread):
    """2,000 variants of the widened items (and backprop's near-zero gradients), 300 of the others: every float32
    way of computing a part earns full marks."""
    failed = {}
    for seed, params, parts in _float32_variants(pid):
        for part_id, ways in FLOAT32[pid].items():
            part = parts[part_id]
            for how, compute in ways.items():
                outcome = _grade(part, compute(params))
                if outcome.fraction < 1.0:
                    failed.setdefault((part_id, how), []).append((seed, params, outcome.note))
    assert not failed, {key: (len(v), v[:2]) for key, v in failed.items()}


# Known mistakes of the parts whose tolerance was widened to float32's precision, over the same 2,000 variants:
# each is still marked wrong whenever it is a different answer at all (backprop: one whose gradient is not within
# float32's reach of 0, which 2,000 random variants do not come near).
WIDENED = ("q_hess_eig", "q_gd_grad", "q_gd_x1", "q_bp_dw1", "q_bp_dw2")


@pytest.mark.parametrize("pid,part_id,wrong,note", [w for w in WRONG if w[1] in WIDENED],
                         ids=[f"{w[1]}-{w[3]}" for w in WRONG if w[1] in WIDENED])
def test_known_mistakes_still_fail_under_float32_tolerances(pid, part_id, wrong, note):
    for seed, params, parts in _variants(pid, range(2000)):
        part = parts[part_id]
        value, right = wrong(params), part.reference(part.probe(random.Random(0)))
        if value is None or np.allclose(np.asarray(value, dtype=np.float64), np.asarray(right, dtype=np.float64),
                                        rtol=0, atol=1e-9):
            continue   # not applicable here, or the same answer
        assert _grade(part, value).fraction < 1.0, (seed, params, value, right)


# ------------------------------------------------------------------------------------------ end to end

def _generate(root, assignment: str, lang: str):
    course = load_course(root)
    spec = course.assignment(assignment)
    write_generated(course, spec, generate(course, spec, lang, course.students()))
    return course, spec


def test_quiz_review_end_to_end(tmp_path):
    """quiz-review (draw = 8) for two students through the real autograder: the solution notebook at full
    marks, the starter at 0 (NOT_ANSWERED), and a student's wrong answers with their notes."""
    root = make_course(tmp_path, problems=["quiz-dropout"], students=["s001", "s002"], lang="zh", generate_now=False)
    course, spec = _generate(root, "quiz-review", "zh")
    assert spec.quiz_draw == 8 and len(spec.problems) == len(ITEMS)
    drawn = {sid: [e.problem_id for e in chosen_problems(course, spec, sid)] for sid in ("s001", "s002")}
    assert all(len(v) == 8 for v in drawn.values())
    answers = json.loads((root / "source" / "quiz-review" / "answers.json").read_text(encoding="utf-8"))["students"]

    for sid in ("s001", "s002"):
        expected_parts = {pid_: get_problem(pid_).part_ids() for pid_ in drawn[sid]}
        results = grade_one(root, sid, solution_notebook(root, sid, "quiz-review"), assignment="quiz-review")
        assert set(results) == {p for ids in expected_parts.values() for p in ids}
        for part_id, r in results.items():
            assert r.score == r.max_points, (sid, part_id, r.note, r.feedback)
        assert sum(r.max_points for r in results.values()) == sum(v["points"] for v in answers[sid].values())

    results = grade_one(root, "s001", release_notebook(root, "s001", "quiz-review"), assignment="quiz-review")
    for part_id, r in results.items():
        assert r.score == 0 and r.note == "NOT_ANSWERED", (part_id, r.note)

    # s002 answers the solution, then overrides some answers with classic mistakes (each part is scored alone)
    params = {pid_: answers["s002"][pid_]["params"] for pid_ in drawn["s002"]}
    overrides = {
        "quiz-gru-lstm": ("q_rnn_gru_params = 3 * (q_rnn_h * q_rnn_i + q_rnn_h * q_rnn_h + q_rnn_h)", "q_rnn_gru_params", "GRU_ONE_BIAS"),
        "quiz-softmax-ce": ("q_softmax_ce = float(-np.log10(q_softmax_probs[{t}]))", "q_softmax_ce", "CE_LOG10"),
        "quiz-batchnorm": ("q_bn_y = np.array({g}) * (q_bn_x - q_bn_mu) / np.sqrt(q_bn_x.var(axis=0, ddof=1) + 1e-5) + np.array({b})",
                           "q_bn_y", "BN_UNBIASED_VAR"),
        "quiz-dropout": ("q_drop_expect = '(1 - p) * x'", "q_drop_expect", "DROPOUT_FORGOT_SCALE"),
        "quiz-gd-step": ("q_gd_x1 = q_gd_x0 + {lr} * q_gd_grad", "q_gd_x1", "GD_WRONG_SIGN"),
        "quiz-se-block": ("q_se_params = 2 * q_se_c * (q_se_c // q_se_r)", "q_se_params", "SE_NO_BIAS"),
        "quiz-im2col": ("q_im2col_macs = 2 * q_im2col_macs", "q_im2col_macs", "MACS_GAVE_FLOPS"),
        "quiz-max-lr": ("q_maxlr = 1 / q_maxlr_ev[-1]", "q_maxlr", "MAXLR_NO_FACTOR_2"),
        "quiz-conv2d-shape": ("q_conv2d_params = q_conv2d_params - {cout}", "q_conv2d_params", "CONV_NO_BIAS"),
        "quiz-backprop": ("q_bp_dw2 = float(-q_bp_delta * q_bp_h)", "q_bp_dw2", "BACKPROP_SIGN"),
        "quiz-momentum-adam": ("q_mom_x2 = q_mom_x0 - {lr} * (q_mom_g1 + q_mom_g2)", "q_mom_x2", "MOMENTUM_IGNORED"),
        "quiz-hessian": ("q_hess_eig = q_hess_eig[::-1]", "q_hess_eig", "HESSIAN_EIG_DESCENDING"),
        "quiz-conv-output": ("q_convout_shape = [q_convout_shape[0], q_convout_shape[2], q_convout_shape[3], q_convout_shape[1]]",
                             "q_convout_shape", "SHAPE_NHWC_ORDER"),
    }
    nb = solution_notebook(root, "s002", "quiz-review")
    wrong = {}
    for pid_ in drawn["s002"]:
        source, part_id, note = overrides[pid_]
        p = params[pid_]
        append_cell(nb, source.format(t=p.get("target"), g=p.get("gamma"), b=p.get("beta"), lr=p.get("lr"), cout=p.get("cout")))
        wrong[part_id] = note
    applies = set()   # a mistake that coincides with the right answer for this variant is no mistake
    for pid_ in drawn["s002"]:
        for part in get_problem(pid_).parts(params[pid_]):
            if part.id in wrong and wrong[part.id] in {m.note for m in part.mistakes(part.probe(random.Random(0)))}:
                applies.add(part.id)
    assert applies
    results = grade_one(root, "s002", nb, assignment="quiz-review")
    for part_id, r in results.items():
        if part_id in applies:
            assert r.score < r.max_points and r.note == wrong[part_id], (part_id, r.note, r.feedback)
        else:
            assert r.score == r.max_points, (part_id, r.note)


def test_every_item_solution_full_marks_through_the_autograder(tmp_path):
    """The draw leaves some items out of any one run above; this grades all 13 at once (en)."""
    root = make_course(tmp_path, problems=ITEMS, students=["s001"], lang="en")
    results = grade_one(root, "s001", solution_notebook(root, "s001"))
    assert set(results) == {part_id for pid in ITEMS for part_id in get_problem(pid).part_ids()}
    for part_id, r in results.items():
        assert r.score == r.max_points, (part_id, r.note, r.feedback)

"""weight-init: Xavier/He variance formulas and values, an init function checked statistically, the
activation-scale experiment checked against the reference run, a written part."""
from __future__ import annotations

import json
import random

import torch

from hwkit.bank import get_problem
from solutions.weight_init import activation_stds, init_weights
from tests.support import grade_probe, run_probe, append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, grade_one, make_course, release_notebook, solution_notebook

PROBLEM = get_problem("weight-init")
PART_IDS = ["wi_xavier_var", "wi_he_var", "wi_xavier_std", "wi_he_std", "init_weights", "activation_stds", "wi_why", "wi_compare"]


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        json.dumps(PROBLEM.answers(params))
        notes.add(PROBLEM.note(params))
        n_in, n_out = params["n_in"], params["n_out"]
        assert 16 <= n_out and abs(n_out - n_in) >= n_in / 8
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            if part.kind in ("formula", "code") and seed >= 8:
                continue  # neither depends on the variant (code probes draw only from their rng); formula
                # comparisons fork a process and the experiment's references run small MLPs: 8 seeds suffice
            assert_part_consistent(part, seed)
    assert len(notes) == 200


def test_statistical_check_accepts_real_draws_and_rejects_wrong_scale():
    """init_weights without a kernel, 30 hidden probes: the kernel returns weights at hidden positions, the grader
    computes the statistics; real normal draws pass, fan-out He and a uniform draw with the right variance are
    named; the self-check compares normality and biases (its probe carries no target variance)."""
    part = next(p for p in PROBLEM.parts(PROBLEM.sample(random.Random(0))) if p.id == "init_weights")

    def fan_out_he(model, scheme):
        init_weights(model, scheme)
        if scheme == "he":
            for m in model.modules():
                if isinstance(m, torch.nn.Linear):
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def uniform(model, scheme):
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                if scheme == "xavier":
                    torch.nn.init.xavier_uniform_(m.weight)
                else:
                    torch.nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
                torch.nn.init.zeros_(m.bias)

    def untouched(model, scheme):
        return model

    for t in range(30):
        probe = part.probe(random.Random(t))
        assert grade_probe(part, probe, {"init_weights": untouched}).fraction == 0   # PyTorch's default init
        assert probe.function == "init_samples" and "targets" not in probe.inputs   # grading: no statistics in the kernel
        for fn, expected in ((init_weights, "CORRECT"), (fan_out_he, "HE_USED_FAN_OUT"), (uniform, "INIT_UNIFORM_NOT_NORMAL")):
            outcome = grade_probe(part, probe, {"init_weights": fn})
            assert outcome.note == expected, (t, outcome.note)
            assert (outcome.fraction == 1.0) == (expected == "CORRECT")
        public = part.self_check_probe(random.Random(t))
        assert "targets" not in json.dumps(public.inputs, default=str)    # no answer travels in a public probe
        [want], reply = part.self_check_replies(public), run_probe(public, {"init_weights": init_weights}).value
        check = part.self_check_check()
        canonical, candidates = check.canonical(want), check.candidates(reply)
        assert canonical and all(fp in candidates[key] for key, fp in canonical.items())


def _scaled_linear(fill):
    """An init_weights that sets each Linear's weight with `fill(weight, variance)`, at the right variance."""
    from solutions.weight_init import target_var

    def init(model, scheme):
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                with torch.no_grad():
                    fill(m.weight, target_var(scheme, m.in_features, m.out_features))
                    m.bias.zero_()
    return init


def _same_row_everywhere(weight, var):
    n_in = weight.shape[1]
    row = torch.erfinv(2 * ((torch.arange(n_in, dtype=torch.float64) + 0.5) / n_in) - 1) * 2 ** 0.5
    weight.copy_((row / row.pow(2).mean().sqrt() * var ** 0.5).float().expand_as(weight))


def _same_column_everywhere(weight, var):
    column = torch.randn(weight.shape[0], 1) * var ** 0.5
    weight.copy_(column.expand_as(weight))


def _all_positive(weight, var):
    weight.normal_(0, var ** 0.5).abs_()


def _laplace(weight, var):
    weight.copy_(torch.distributions.Laplace(0.0, (var / 2) ** 0.5).sample(weight.shape))


def _shifted(weight, var):
    weight.normal_(0, (var * 0.96) ** 0.5).add_((var * 0.04) ** 0.5)     # right mean square, mean not zero


def test_right_variance_but_not_an_independent_zero_mean_normal_draw_earns_nothing_for_the_variance():
    """A student who has read the check: weights with exactly the right mean square, but every neuron the same
    (the symmetry the problem asks them to explain), every weight positive, a Laplace draw, or a shifted normal.
    None of them is the N(0, σ²) draw the statement asks for: a draw that is not independent with zero mean earns
    nothing, another shape than the normal's half (as a uniform draw does), and the mistake is named."""
    part = next(p for p in PROBLEM.parts(PROBLEM.sample(random.Random(0))) if p.id == "init_weights")
    for t in range(3):
        probe = part.probe(random.Random(t))
        for fill in (_same_row_everywhere, _same_column_everywhere, _all_positive, _shifted):
            outcome = grade_probe(part, probe, {"init_weights": _scaled_linear(fill)})
            assert outcome.fraction == 0 and outcome.note == "INIT_NOT_INDEPENDENT", (t, fill.__name__, outcome)
        outcome = grade_probe(part, probe, {"init_weights": _scaled_linear(_laplace)})     # as a uniform draw: half
        assert (outcome.fraction, outcome.note) == (0.5, "INIT_UNIFORM_NOT_NORMAL"), (t, outcome)
        honest = _scaled_linear(lambda w, var: w.normal_(0, var ** 0.5))
        assert grade_probe(part, probe, {"init_weights": honest}).note == "CORRECT"
    outcome = grade_probe(part, part.probe(random.Random(7)), {"init_weights": _scaled_linear(_same_row_everywhere)})
    assert "symmetry" in outcome.feedback["en"] and "对称" in outcome.feedback["zh"], outcome


def test_a_right_answer_fails_by_chance_almost_never():
    """The mean-square tolerance is 6 standard deviations of the estimate: a right answer fails one layer with
    probability erfc(6 / sqrt 2) ~ 2e-9 (normal approximation of a chi-square with 40,000 degrees of freedom),
    under 1e-7 for a whole submission (2 schemes x 4 layers); the normality test (kurtosis above 2.4, where a
    normal sample's is 3 with a standard deviation of sqrt(24 / 40,000) ~ 0.025) misses by 24 standard deviations."""
    import math

    from templates.weight_init.problem import SAMPLES, VAR_RTOL

    sd = math.sqrt(2 / SAMPLES + 2 / (200 * 560))
    per_layer = math.erfc(VAR_RTOL / sd / math.sqrt(2))
    assert per_layer < 5e-9 and 8 * per_layer < 1e-7
    assert (3 - 2.4) / math.sqrt(24 / SAMPLES) > 20


def test_experiment_reference_shows_the_two_schemes():
    """The reference experiment: He keeps the activation scale, Xavier shrinks it by about 1/sqrt(2) per layer."""
    widths = [256] * 17
    he, xavier = activation_stds(widths, "he", 0), activation_stds(widths, "xavier", 0)
    assert 0.3 < he[-1] / he[0] < 3
    assert 0.5 ** 8 / 4 < xavier[-1] / xavier[0] < 0.5 ** 8 * 4  # 16 layers: (1/sqrt 2)^15 ~ 0.5**7.5


WRONG_1 = '''
wi_why = "Because it is bad for training."
wi_compare = "He initialisation is better than Xavier for ReLU networks, everyone uses it."
wi_xavier_var = "2/n_in"
wi_he_var = "2/(n_in + n_out)"
wi_xavier_std = 2 / (wi_n_in + wi_n_out)
wi_he_std = (2 / wi_n_out) ** 0.5

def init_weights(model, scheme):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            if scheme == "xavier":
                nn.init.xavier_normal_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

def activation_stds(widths, scheme, seed):
    torch.manual_seed(seed)
    h = torch.randn(256, widths[0])
    layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]   # all layers first
    out = []
    for layer in layers:
        if scheme == "xavier":
            nn.init.xavier_normal_(layer.weight)
        else:
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(layer.bias)
        h = torch.relu(layer(h))
        out.append(h.std().item())
    return out
'''

WRONG_2 = '''
wi_why = "short"
wi_xavier_var = "1/(n_in + n_out)"
wi_he_var = "1/n_in"
wi_xavier_std = (6 / (wi_n_in + wi_n_out)) ** 0.5
wi_he_std = (1 / wi_n_in) ** 0.5

def init_weights(model, scheme):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            n_in, n_out = m.in_features, m.out_features
            var = 2 / (n_in + n_out) if scheme == "xavier" else 2 / n_in
            nn.init.normal_(m.weight, 0.0, var)      # variance passed as the std
            nn.init.zeros_(m.bias)

def activation_stds(widths, scheme, seed):
    torch.manual_seed(seed)
    h = torch.randn(256, widths[0])
    out = []
    for a, b in zip(widths[:-1], widths[1:]):
        layer = nn.Linear(a, b)
        nn.init.xavier_normal_(layer.weight)         # Xavier for both schemes
        nn.init.zeros_(layer.bias)
        h = torch.relu(layer(h))
        out.append(h.std().item())
    return out
'''

ALTERNATIVE = '''
import math
import torch.nn.functional as F

wi_why = ("若全部初始化为 0,同一层神经元的输出相同,反向传播得到相同的梯度,无法打破对称性;"
          "若随机值过大,激活值和梯度逐层放大,出现梯度爆炸,若过小则逐层缩小导致梯度消失。")
wi_compare = ("Xavier keeps the variance of both the forward activations and the backward gradients, using the average "
              "of fan-in and fan-out, and assumes a symmetric activation such as tanh. ReLU sets the negative inputs to "
              "zero, so with Xavier the signal shrinks by about 0.71 per layer and the gradients vanish in a deep net. "
              "He uses twice the variance, 2/fan_in, and the scale stays stable from layer to layer.")
wi_xavier_var = "1/((n_in + n_out)/2)"
wi_he_var = "4/(2*n_in)"
wi_xavier_std = math.sqrt(2) / math.sqrt(wi_n_in + wi_n_out)
wi_he_std = float(torch.tensor(2.0 / wi_n_in).sqrt())

def init_weights(model, scheme):
    with torch.no_grad():
        for name, m in model.named_modules():
            if type(m) is nn.Linear:
                fan_out, fan_in = m.weight.shape
                std = math.sqrt(2.0 / (fan_in + fan_out)) if scheme == "xavier" else math.sqrt(2.0 / fan_in)
                m.weight.copy_(torch.randn_like(m.weight) * std)
                m.bias.data.zero_()

def activation_stds(widths, scheme, seed):
    torch.manual_seed(seed)
    h = torch.randn(256, widths[0])
    stds = torch.zeros(len(widths) - 1)
    for i in range(len(widths) - 1):
        lin = nn.Linear(widths[i], widths[i + 1])
        if scheme == "he":
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        else:
            nn.init.xavier_normal_(lin.weight, gain=1.0)
        lin.bias.data.fill_(0.0)
        h = F.relu(F.linear(h, lin.weight, lin.bias))
        stds[i] = h.std()
    return stds.detach()
'''


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["weight-init"], students=["s001"])

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) plausible wrong answers, with their notes
    rounds = [
        (WRONG_1, {"wi_xavier_var": "HE_FOR_XAVIER", "wi_he_var": "XAVIER_FOR_HE", "wi_xavier_std": "VARIANCE_GAVE_STD",
                   "wi_he_std": "HE_USED_FAN_OUT", "init_weights": "HE_USED_FAN_OUT", "activation_stds": "ACT_RNG_ORDER",
                   "wi_why": "WRITTEN_MISSING_SYMMETRY", "wi_compare": "WRITTEN_MISSING_FORWARD_AND_BACKWARD"}),
        (WRONG_2, {"wi_xavier_var": "XAVIER_NO_FACTOR_2", "wi_he_var": "HE_NO_FACTOR_2",
                   "wi_xavier_std": "XAVIER_UNIFORM_BOUND", "wi_he_std": "HE_NO_FACTOR_2",
                   "init_weights": "STD_GAVE_VARIANCE", "activation_stds": "XAVIER_FOR_HE", "wi_why": "WRITTEN_TOO_SHORT"}),
    ]
    for source, expected in rounds:
        results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), source))
        for pid, note in expected.items():
            assert results[pid].score < results[pid].max_points and results[pid].note == note, \
                (pid, results[pid].note, results[pid].feedback)

    # (4) correct answers in other forms and implementations earn full marks (the written part: all concepts)
    results = grade_one(root, "s001", append_cell(release_notebook(root, "s001"), ALTERNATIVE))
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)
    assert results["wi_why"].note == results["wi_compare"].note == "WRITTEN_ALL_CONCEPTS"

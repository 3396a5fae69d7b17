"""lstm: a functional LSTM cell, a sequence unroll (compared with nn.LSTM on hidden inputs), a parameter count."""
from __future__ import annotations

import json
import random

import numpy as np
import torch
from torch import nn

from hwkit.bank import get_problem
from solutions.lstm import lstm_cell_manual, lstm_forward_manual, lstm_param_formula, torch_lstm_forward
from tests.support import (append_cell, assert_part_consistent, assert_reference_full_and_starter_zero, grade_one,
                           make_course, release_notebook, set_answer_cell, solution_notebook)

PROBLEM = get_problem("lstm")
PART_IDS = ["lstm_gate_roles", "lstm_formula_i", "lstm_formula_f", "lstm_formula_g", "lstm_formula_o", "lstm_formula_c",
            "lstm_formula_h", "lstm_diagram", "lstm_cell", "lstm_forward", "lstm_param_count"]


def test_sampling_200_seeds_valid_and_distinct():
    notes = set()
    for seed in range(200):
        params = PROBLEM.sample(random.Random(seed))
        json.dumps(params)
        notes.add(PROBLEM.note(params))
        assert params["pc_input"] != params["pc_hidden"]
        count = PROBLEM.answers(params)["lstm_param_count"]
        assert count == lstm_param_formula(params["pc_input"], params["pc_hidden"], params["pc_layers"])
        parts = PROBLEM.parts(params)
        assert [p.id for p in parts] == PART_IDS
        for part in parts:
            assert_part_consistent(part, seed, mistakes=seed < 25)  # every known mistake really is wrong
    assert len(notes) == 200


def test_manual_equations_agree_with_nn_lstm():
    g = np.random.default_rng(0)
    T, B, I, H = 5, 3, 7, 6
    lstm = nn.LSTM(I, H)
    w = [p.detach().numpy() for p in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)]
    xs, h0, c0 = (g.standard_normal(s).astype(np.float32) for s in ((T, B, I), (B, H), (B, H)))
    with torch.no_grad():
        out, (h, c) = lstm(torch.as_tensor(xs), (torch.as_tensor(h0)[None], torch.as_tensor(c0)[None]))
    mo, mh, mc = lstm_forward_manual(xs, h0, c0, *w)
    to, th, tc = torch_lstm_forward(xs, h0, c0, *w)
    for a, b in ((mo, out), (mh, h[0]), (mc, c[0]), (to, out), (th, h[0]), (tc, c[0])):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
    assert lstm_cell_manual(xs[0], h0, c0, *w)[0].shape == (B, H)


WRONG_1 = '''
lstm_gate_roles = "gates"
lstm_formula_i = "tanh(W_ii*x + b_ii + W_hi*h + b_hi)"
lstm_formula_c = "i*c + f*g"
lstm_formula_h = "o*c_t"
lstm_diagram = "x -> three gates -> output h"
def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    i, f, o, g = z.chunk(4, dim=1)          # gate order i, f, o, g
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    h, c, outs = h0, c0, []
    I, H = W_ih.shape[1], W_hh.shape[1]
    for x in xs:                             # reshape instead of transpose
        z = x @ W_ih.reshape(I, 4 * H) + b_ih + h @ W_hh.reshape(H, 4 * H) + b_hh
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), (h, c)

lstm_param_count = 4 * {H} * ({I} + {H}) + 4 * {H} + ({L} - 1) * (4 * {H} * 2 * {H} + 4 * {H})
'''

WRONG_2 = '''
lstm_formula_f = "sigmoid(W_if*x + b_if + W_hf*h)"
lstm_formula_g = "sigmoid(W_ig*x + b_ig + W_hg*h + b_hg)"
lstm_formula_o = "sigmoid(W_io*x + W_ho*h)"
lstm_formula_c = "c + i*g"
lstm_formula_h = "tanh(c_t)"
def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + b_ih + h @ W_hh.T       # b_hh forgotten
    i, f, g, o = z.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    outs = []
    for x in xs:                             # the state is never carried forward
        z = x @ W_ih.T + b_ih + h0 @ W_hh.T + b_hh
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), (h, c)

lstm_param_count = {L} * (4 * {H} * ({I} + {H}) + 8 * {H})
'''

WRONG_3 = '''
def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    z = x @ W_ih.T + b_ih + h @ W_hh.T + b_hh
    i, f, g, o = z.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c_new, c_new   # tanh missing

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    raise RuntimeError("not finished")

lstm_param_count = 3 * {H} * ({I} + {H}) + 6 * {H} + ({L} - 1) * (3 * {H} * 2 * {H} + 6 * {H})
'''

# Correct alternatives: per-gate weights sliced by hand, F.linear, a preallocated output tensor, torch counting.
ALTERNATIVE = '''
lstm_gate_roles = ("The forget gate outputs a number between 0 and 1 for each entry of the previous cell state c(t-1) "
                   "and decides how much of the old memory to keep or erase. The input gate decides how much of the "
                   "candidate (new information) is written into the cell. The output gate decides which part of the "
                   "cell state, after tanh, becomes the hidden state h_t.")
lstm_formula_i = "1/(1 + exp(-(W_ii*x + W_hi*h + b_ii + b_hi)))"
lstm_formula_f = "sigmoid(b_hf + b_if + x*W_if + h*W_hf)"
lstm_formula_g = "tanh(W_ig*x + W_hg*h + (b_ig + b_hg))"
lstm_formula_o = "sigmoid(W_io*x+b_io+W_ho*h+b_ho)"
lstm_formula_c = "g*i + c*f"
lstm_formula_h = "tanh(c_t)*o"
lstm_diagram = \"\"\"
c(t-1) --(x f_t)--(+)-----------------> c_t --tanh--(x o_t)--> h_t (hidden state)
                   ^
          i_t (x) g_t
forget gate f_t = sigmoid(...), input gate i_t = sigmoid(...), candidate g_t = tanh(...),
output gate o_t = sigmoid(...), all from x_t and h(t-1); x: element-wise multiply, +: add
\"\"\"
import torch.nn.functional as F

def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    H = h.shape[1]
    def gate(k, act):
        rows = slice(k * H, (k + 1) * H)
        return act(F.linear(x, W_ih[rows], b_ih[rows]) + F.linear(h, W_hh[rows], b_hh[rows]))
    input_gate, forget_gate = gate(0, torch.sigmoid), gate(1, torch.sigmoid)
    candidate, output_gate = gate(2, torch.tanh), gate(3, torch.sigmoid)
    c_next = forget_gate * c + input_gate * candidate
    return output_gate * torch.tanh(c_next), c_next

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    T, B, _ = xs.shape
    out = torch.zeros(T, B, h0.shape[1])
    state = (h0, c0)
    for t in range(T):
        gates = torch.addmm(b_ih + b_hh, xs[t], W_ih.t()) + state[0] @ W_hh.t()
        i, f, g, o = torch.split(gates, h0.shape[1], dim=1)
        c = f.sigmoid() * state[1] + i.sigmoid() * g.tanh()
        state = (o.sigmoid() * c.tanh(), c)
        out[t] = state[0]
    return out, state

lstm_param_count = sum(4 * {H} * (size + {H} + 2) for size in [{I}] + [{H}] * ({L} - 1))
'''


def test_notebook_grading(tmp_path):
    root = make_course(tmp_path, ["lstm"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["lstm"]["params"]
    fmt = {"I": params["pc_input"], "H": params["pc_hidden"], "L": params["pc_layers"]}

    # (2) the solution notebook earns full marks
    assert_reference_full_and_starter_zero(root, "s001", PART_IDS)

    # (3) plausible wrong answers, with their notes
    rounds = [
        (WRONG_1, {"lstm_cell": "LSTM_GATE_ORDER", "lstm_forward": "LSTM_TRANSPOSED_WEIGHT",
                   "lstm_param_count": "LSTM_PARAMS_ONE_BIAS", "lstm_gate_roles": "WRITTEN_TOO_SHORT",
                   "lstm_formula_i": "LSTM_GATE_TANH", "lstm_formula_c": "LSTM_CELL_GATES_SWAPPED",
                   "lstm_formula_h": "LSTM_TANH_CELL_MISSING", "lstm_diagram": "WRITTEN_MISSING_CELL_STATE"}),
        (WRONG_2, {"lstm_cell": "LSTM_NO_HH_BIAS", "lstm_forward": "LSTM_STATE_NOT_CARRIED",
                   "lstm_param_count": "LSTM_PARAMS_LAYER_INPUT", "lstm_formula_f": "LSTM_NO_HH_BIAS",
                   "lstm_formula_g": "LSTM_CANDIDATE_SIGMOID", "lstm_formula_o": "FORMULA_NOT_EQUIVALENT",
                   "lstm_formula_c": "LSTM_CELL_NO_FORGET", "lstm_formula_h": "LSTM_H_NO_OUTPUT_GATE"}),
        (WRONG_3, {"lstm_cell": "LSTM_TANH_CELL_MISSING", "lstm_forward": "RAISED",
                   "lstm_param_count": "LSTM_PARAMS_3_GATES"}),
    ]
    for source, expected in rounds:
        results = grade_one(root, "s001", append_cell(solution_notebook(root, "s001"), source.format(**fmt)))
        for pid, note in expected.items():
            assert results[pid].score < results[pid].max_points and results[pid].note == note, \
                (pid, results[pid].note, results[pid].feedback)

    # (4) a correct implementation of another shape earns full marks
    results = grade_one(root, "s001", append_cell(release_notebook(root, "s001"), ALTERNATIVE.format(**fmt)))
    for pid, r in results.items():
        assert r.score == r.max_points, (pid, r.note, r.feedback)


def test_ready_made_lstm_is_flagged_not_credited():
    """PyTorch's own LSTM gives the right outputs, but the statement forbids it: behaviour cannot tell, the answer
    cell's code can (comments, strings and the given self-test cell do not count)."""
    import nbformat

    from hwkit.integrity import forbidden_shortcut

    parts = {p.id: p for p in PROBLEM.parts(PROBLEM.sample(random.Random(0)))}

    def notebook(part_id, source):
        cell = nbformat.v4.new_code_cell(source, metadata={"hwkit": {"parts": [part_id]}})
        given = nbformat.v4.new_code_cell("ref = nn.LSTM(3, 4)   # the given self-test")
        return nbformat.v4.new_notebook(cells=[given, cell])

    flagged = [("lstm_cell", "def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):\n"
                             "    return torch._VF.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)"),
               ("lstm_forward", "def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):\n    m = nn.LSTM(1, 1)\n"),
               ("lstm_param_count", "lstm_param_count = sum(p.numel() for p in nn.LSTM(3, 4, 2).parameters())")]
    for part_id, source in flagged:
        assert forbidden_shortcut(parts[part_id], notebook(part_id, source)) is not None, part_id
    honest = [("lstm_cell", "def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):\n    # unlike nn.LSTM, by hand\n"
                            "    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, 1)\n"),
              ("lstm_forward", "def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):\n"
                               "    h, c = lstm_cell(xs[0], h0, c0, W_ih, W_hh, b_ih, b_hh)\n    print('like nn.LSTM')\n"),
              ("lstm_param_count", "lstm_param_count = 4 * 5 * (3 + 5) + 8 * 5")]
    for part_id, source in honest:
        assert forbidden_shortcut(parts[part_id], notebook(part_id, source)) is None, part_id


READY_MADE = '''
def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    return torch.lstm_cell(x, (h, c), W_ih, W_hh, b_ih, b_hh)

def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    m = nn.LSTM(W_ih.shape[1], W_hh.shape[1]).to(xs.dtype)
    with torch.no_grad():
        m.weight_ih_l0.copy_(W_ih); m.weight_hh_l0.copy_(W_hh); m.bias_ih_l0.copy_(b_ih); m.bias_hh_l0.copy_(b_hh)
    out, (h, c) = m(xs, (h0[None], c0[None]))
    return out, (h[0], c[0])

lstm_param_count = sum(p.numel() for p in nn.LSTM({I}, {H}, num_layers={L}).parameters())
'''
HIDDEN_PARTS = ("lstm_cell", "lstm_forward", "lstm_param_count")


def test_ready_made_lstm_outside_the_answer_cells_is_flagged_too(tmp_path):
    """A student who has read the scan moves PyTorch's LSTM out of the tagged answer cells: into a cell of their
    own, by deleting the cells' tags, or behind an alias imported elsewhere. What the answer reaches in the
    cells the student wrote is read; the given self-test cell and a test of the student's own (both build an
    nn.LSTM, which the answer does not use) are not."""
    import nbformat

    root = make_course(tmp_path, ["lstm"], students=["s001"])
    params = json.loads((root / "source" / "t" / "answers.json").read_text())["students"]["s001"]["lstm"]["params"]
    fmt = {"I": params["pc_input"], "H": params["pc_hidden"], "L": params["pc_layers"]}

    untagged = solution_notebook(root, "s001")
    for cell in untagged.cells:
        if set(cell.get("metadata", {}).get("hwkit", {}).get("parts", [])) & set(HIDDEN_PARTS):
            del cell.metadata["hwkit"]
    untagged = append_cell(untagged, READY_MADE.format(**fmt))

    aliased = release_notebook(root, "s001")
    aliased.cells.insert(1, nbformat.v4.new_code_cell(
        "from torch import lstm_cell as _cellop\nfrom torch.nn import LSTM as Recurrent\n"
        "def _count(m):\n    return sum(p.numel() for p in m.parameters())"))
    answers = {"lstm_cell": "def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):\n"
                            "    return _cellop(x, (h, c), W_ih, W_hh, b_ih, b_hh)",
               "lstm_forward": "def lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):\n"
                               "    m = Recurrent(W_ih.shape[1], W_hh.shape[1])\n"
                               "    with torch.no_grad():\n"
                               "        for name, w in zip(['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0'],"
                               " [W_ih, W_hh, b_ih, b_hh]):\n"
                               "            getattr(m, name).copy_(w)\n"
                               "    out, (h, c) = m(xs, (h0[None], c0[None]))\n"
                               "    return out, (h[0], c[0])",
               "lstm_param_count": "lstm_param_count = _count(Recurrent({I}, {H}, num_layers={L}))".format(**fmt)}
    for part_id, source in answers.items():
        set_answer_cell(aliased, part_id, source)

    for nb in (untagged, aliased):
        results = grade_one(root, "s001", nb)
        for part_id in HIDDEN_PARTS:
            r = results[part_id]
            assert (r.score, r.note, r.needs_review) == (0.0, "FORBIDDEN_SHORTCUT", True), (part_id, r.note)

    honest = append_cell(solution_notebook(root, "s001"), "def _gate(z):\n    return torch.sigmoid(z)\n"
                                                          "check = nn.LSTM(3, 4)   # as the given self-test does")
    results = grade_one(root, "s001", honest)
    assert all(results[p].score == results[p].max_points for p in HIDDEN_PARTS), \
        {p: results[p].note for p in HIDDEN_PARTS}

"""LSTM: the gate equations as a functional cell, a sequence unroll, and nn.LSTM's parameter count
(seed homework, problem 10)."""
from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np

from hwkit.checks import Array, Cases, Exact, Fields, Formula, Rubric
from hwkit.problem import KernelModule, Mistake, Part, Probe, Problem, say
from hwkit.probes import read_variable
from solutions.lstm import (CELL_FORMULA, GATES, HIDDEN_FORMULA, MODEL_ANSWER_GATES, MODEL_DIAGRAM, gate_formula,
                            gate_symbols, lstm_cell_manual, lstm_forward_manual, lstm_param_count, lstm_param_formula,
                            torch_lstm_cell, torch_lstm_forward)

TOL = Array(rtol=1e-4, atol=1e-5)


def sample(rng: random.Random) -> dict:
    """Cell sizes for the notebook's own demo and the first hidden test case; an independent nn.LSTM
    configuration for the parameter count, with hidden size != input size by construction."""
    pc_input = rng.randint(8, 300)
    pc_hidden = rng.randint(16, 512)
    if pc_hidden == pc_input:
        pc_hidden += 1
    return {"input_size": rng.randint(3, 40), "hidden_size": rng.randint(4, 40), "batch": rng.randint(2, 6),
            "seq_len": rng.randint(3, 10),
            "pc_input": pc_input, "pc_hidden": pc_hidden, "pc_layers": rng.randint(2, 4)}


def note(params: dict) -> str:
    return (f"I={params['input_size']} H={params['hidden_size']} B={params['batch']} T={params['seq_len']} "
            f"count: LSTM({params['pc_input']},{params['pc_hidden']},L={params['pc_layers']})")


def answers(params: dict) -> dict:
    return {"lstm_param_count": lstm_param_count(params["pc_input"], params["pc_hidden"], params["pc_layers"])}


# ---- hidden test inputs -------------------------------------------------------------------------

def _weights(g: np.random.Generator, I: int, H: int) -> list:
    f32 = np.float32
    return [(g.standard_normal((4 * H, I)) / np.sqrt(I)).astype(f32),
            (g.standard_normal((4 * H, H)) / np.sqrt(H)).astype(f32),
            (0.5 * g.standard_normal(4 * H)).astype(f32), (0.5 * g.standard_normal(4 * H)).astype(f32)]


def _sizes(rng: random.Random, params: dict, n: int) -> list[tuple[int, int, int]]:
    sizes = [(params["input_size"], params["hidden_size"], params["batch"])]
    sizes += [(rng.randint(2, 24), rng.randint(2, 24), rng.randint(1, 5)) for _ in range(n - 1)]
    return sizes


def _cell_cases(rng: random.Random, params: dict) -> list:
    g = np.random.default_rng(rng.getrandbits(63))
    cases = []
    for I, H, B in _sizes(rng, params, 3):
        state = [g.standard_normal(s).astype(np.float32) for s in ((B, I), (B, H), (B, H))]
        cases.append(state + _weights(g, I, H))
    return cases


def _forward_cases(rng: random.Random, params: dict) -> list:
    g = np.random.default_rng(rng.getrandbits(63))
    cases = []
    for k, (I, H, B) in enumerate(_sizes(rng, params, 2)):
        T = params["seq_len"] if k == 0 else rng.randint(2, 8)
        xs = g.standard_normal((T, B, I)).astype(np.float32)
        h0, c0 = (g.standard_normal((B, H)).astype(np.float32) for _ in range(2))
        cases.append([xs, h0, c0] + _weights(g, I, H))
    return cases


KERNEL = KernelModule.beside(__file__)


def _cell_reference(probe: Probe, **switches) -> list:
    fn = (lambda *a: lstm_cell_manual(*a, **switches)) if switches else torch_lstm_cell
    return [[np.asarray(v, dtype=np.float32) for v in fn(*case)] for case in probe.inputs["cases"]]


def _forward_reference(probe: Probe, **switches) -> list:
    fn = (lambda *a: lstm_forward_manual(*a, **switches)) if switches else torch_lstm_forward
    out = []
    for case in probe.inputs["cases"]:
        outputs, h, c = fn(*case)
        out.append({"outputs": outputs.astype(np.float32), "h_T": h.astype(np.float32), "c_T": c.astype(np.float32)})
    return out


WRONG_ORDERS = ["".join(p) for p in itertools.permutations(GATES) if "".join(p) != GATES]

_FEEDBACK = {
    "LSTM_GATE_ORDER": say("The gates are read in the wrong order: PyTorch stacks the row blocks of W_ih, W_hh, b_ih, b_hh as "
                           "input gate i, forget gate f, candidate g, output gate o (i, f, g, o).",
                           "门的顺序不对：PyTorch 在 W_ih、W_hh、b_ih、b_hh 中按 输入门 i、遗忘门 f、候选记忆 g、输出门 o（i, f, g, o）的顺序堆叠。"),
    "LSTM_TRANSPOSED_WEIGHT": say("The weight layout is wrong: W_ih has shape (4H, I), so the pre-activation is x @ W_ih.T "
                                  "(a transpose), not x @ W_ih.reshape(I, 4H) or .view(...), which scrambles the entries.",
                                  "权重布局错误:W_ih 的形状为 (4H, I)，应计算 x @ W_ih.T（转置），而不是 x @ W_ih.reshape(I, 4H) 或 .view(...)，后者会打乱元素。"),
    "LSTM_NO_HH_BIAS": say("PyTorch's LSTM has two bias vectors and adds both: z = x W_ih^T + b_ih + h W_hh^T + b_hh.",
                           "PyTorch 的 LSTM 有两组偏置并且都要加上：z = x W_ih^T + b_ih + h W_hh^T + b_hh。"),
    "LSTM_TANH_CELL_MISSING": say("The hidden state is h_t = o_t ⊙ tanh(c_t); you used o_t ⊙ c_t.",
                                  "隐藏状态应为 h_t = o_t ⊙ tanh(c_t)，你用了 o_t ⊙ c_t。"),
    "LSTM_STATE_NOT_CARRIED": say("Each step must start from the previous step's (h, c); you restarted from (h0, c0) at every step.",
                                  "每个时间步都要从上一步的 (h, c) 出发；你在每一步都从 (h0, c0) 重新开始。"),
}


def _mistakes(reference, probe: Probe, extra: dict | None = None) -> list[Mistake]:
    switches = [("LSTM_TRANSPOSED_WEIGHT", {"reshape_weights": True}), ("LSTM_NO_HH_BIAS", {"hh_bias": False}),
                ("LSTM_TANH_CELL_MISSING", {"tanh_cell": False})]
    switches += list((extra or {}).items())
    switches += [("LSTM_GATE_ORDER", {"order": order}) for order in WRONG_ORDERS]
    return [Mistake(note, reference(probe, **sw), _FEEDBACK[note]) for note, sw in switches]


def _count_mistakes(params: dict) -> list[Mistake]:
    I, H, L = params["pc_input"], params["pc_hidden"], params["pc_layers"]
    return [
        Mistake("LSTM_PARAMS_ONE_BIAS", lstm_param_formula(I, H, L, biases=1),
                say("nn.LSTM has two bias vectors per layer (b_ih and b_hh, 4H each); you counted one.",
                    "nn.LSTM 每层有两组偏置（b_ih 和 b_hh,各 4H 个）；你只算了一组。")),
        Mistake("LSTM_PARAMS_NO_BIAS", lstm_param_formula(I, H, L, biases=0),
                say("The biases are missing: each layer has b_ih and b_hh, 8H numbers in all.",
                    "遗漏了偏置：每层有 b_ih 和 b_hh,共 8H 个参数。")),
        Mistake("LSTM_PARAMS_3_GATES", lstm_param_formula(I, H, L, gates=3),
                say("An LSTM layer has four weight blocks (input, forget, output gates and the candidate g), so 4H rows, not 3H.",
                    "LSTM 每层有四组权重（输入门、遗忘门、输出门和候选记忆 g），共 4H 行，而不是 3H。")),
        Mistake("LSTM_PARAMS_LAYER_INPUT", lstm_param_formula(I, H, L, same_input=True),
                say("Only the first layer reads the input (size I); layers 2, 3, ... read the previous layer's hidden state (size H).",
                    "只有第一层的输入维度是 I;第 2、3……层的输入是上一层的隐藏状态，维度为 H。")),
        Mistake("LSTM_PARAMS_ONE_LAYER", lstm_param_formula(I, H, 1),
                say(f"num_layers={L}: count the parameters of every layer, not only the first.",
                    f"num_layers={L}：要把每一层的参数都算上，而不只是第一层。")),
    ]


# What the statement forbids: PyTorch's own LSTM in the functions, and counting with PyTorch in (c).
# torch.lstm_cell also imported by name (`from torch import lstm_cell as op`: the answer's own lstm_cell is not it)
_READY_MADE = (r"\bLSTM(Cell)?\b|\b(torch|_C)\s*\.\s*(_VF\s*\.\s*)?lstm(_cell)?\b|\b_VF\b"
               r"|\bfrom\s+torch\b[^\n]*\bimport\b[^\n]*\blstm(_cell)?\b")
_NO_READY_MADE = ((_READY_MADE, say(
    "Your answer calls PyTorch's own LSTM (nn.LSTM, nn.LSTMCell, torch.lstm_cell or torch._VF), which the statement "
    "forbids: write the gate equations with tensor operations. An instructor reviews this part.",
    "你的答案调用了 PyTorch 自带的 LSTM（nn.LSTM、nn.LSTMCell、torch.lstm_cell 或 torch._VF），题目不允许这样做："
    "请用张量运算写出门控公式。该小题将由教师复核。")),)
_NO_COUNTING = ((r"\bLSTM\b|\.parameters\s*\(|\bnumel\b", say(
    "Your answer lets PyTorch count the parameters (an nn.LSTM and .parameters() or numel), which the statement "
    "forbids: derive the count. An instructor reviews this part.",
    "你的答案让 PyTorch 去数参数（构造 nn.LSTM 并用 .parameters() 或 numel），题目要求自己推导。该小题将由教师复核。")),)


# ---- (a)-(c): the gates' roles, their formulas, the cell diagram -------------------------------------

GATES_RUBRIC = Rubric(concepts=(
    ("forget_keeps_old", ("c_{t-1}", "c_(t-1)", "c_{t−1}", "上一时刻", "旧记忆", "旧的记忆", "过去的记忆", "保留多少", "遗忘多少",
                          "丢弃", "previous cell", "previous memory", "old memory", "past memory", "previous state",
                          "discard", "erase", "throw away", "keep")),
    ("input_writes_new", ("写入", "新信息", "新的信息", "新内容", "候选", "存入", "write", "new information", "new content",
                          "candidate", "store", "add to the cell")),
    ("output_exposes", ("隐藏状态", "h_t", "对外输出", "输出多少", "作为输出", "hidden state", "expose", "what to output",
                        "becomes the output", "as the output")),
    ("gate_fraction", ("(0,1)", "(0, 1)", "0 到 1", "0到1", "0 和 1", "0和1", "比例", "系数", "多少", "sigmoid", "σ",
                       "between 0 and 1", "fraction", "proportion", "how much")),
))
DIAGRAM_RUBRIC = Rubric(concepts=(
    ("cell_state", ("c_t", "c_{t-1}", "c_(t-1)", "c_prev", "cell state", "记忆单元", "细胞状态", "单元状态")),
    ("forget_gate", ("forget", "遗忘门", "f_t")),
    ("input_gate", ("input gate", "输入门", "i_t")),
    ("output_gate", ("output gate", "输出门", "o_t")),
    ("sigmoid", ("sigmoid", "σ", "sigma")),
    ("tanh", ("tanh",)),
    ("multiply", ("×", "*", "⊙", "乘", "multipl", "product")),
    ("add", ("+", "add", "相加", "加法", "sum")),
    ("hidden_state", ("h_t", "h_{t-1}", "h_(t-1)", "hidden", "隐藏状态")),
))
FUNCTIONS = ("sigmoid", "tanh", "exp")
_BLOCK_NAMES = {"i": say("input gate i_t", "输入门 i_t"), "f": say("forget gate f_t", "遗忘门 f_t"),
                "g": say("candidate memory g_t", "候选记忆 g_t"), "o": say("output gate o_t", "输出门 o_t")}
_FORMULA_FEEDBACK = {
    "LSTM_GATE_TANH": say("A gate is a fraction between 0 and 1: its activation is the sigmoid σ, not tanh.",
                          "门的取值是 0 到 1 之间的比例，激活函数是 sigmoid σ，而不是 tanh。"),
    "LSTM_CANDIDATE_SIGMOID": say("The candidate memory g_t is new content in (−1, 1): its activation is tanh, not the sigmoid.",
                                  "候选记忆 g_t 是 (−1, 1) 之间的新内容，激活函数是 tanh，而不是 sigmoid。"),
    "LSTM_CELL_GATES_SWAPPED": say("The forget gate scales the old memory and the input gate the candidate: c_t = f_t·c_{t−1} + i_t·g_t.",
                                   "遗忘门乘旧记忆，输入门乘候选记忆：c_t = f_t·c_{t−1} + i_t·g_t。"),
    "LSTM_CELL_NO_FORGET": say("The old memory passes through the forget gate: it is scaled by f_t before the new content is added.",
                               "旧记忆要先经过遗忘门：乘以 f_t 之后再加上新内容。"),
    "LSTM_H_NO_OUTPUT_GATE": say("The output gate decides what of tanh(c_t) is exposed: h_t = o_t·tanh(c_t).",
                                 "输出门决定 tanh(c_t) 中有多少输出：h_t = o_t·tanh(c_t)。"),
}


def _gate_part(block: str) -> Part:
    right = gate_formula(block)
    other = "tanh" if block != "g" else "sigmoid"
    mistakes = [Mistake("LSTM_CANDIDATE_SIGMOID" if block == "g" else "LSTM_GATE_TANH", gate_formula(block, activation=other),
                        _FORMULA_FEEDBACK["LSTM_CANDIDATE_SIGMOID" if block == "g" else "LSTM_GATE_TANH"]),
                Mistake("LSTM_NO_HH_BIAS", gate_formula(block, hh_bias=False), _FEEDBACK["LSTM_NO_HH_BIAS"])]
    name = _BLOCK_NAMES[block]
    return Part(f"lstm_formula_{block}", 1, say(f"Formula of the {name['en']}", f"{name['zh']} 的公式"),
                probe=lambda rng: read_variable(f"lstm_formula_{block}"), reference=lambda probe: right,
                check=Formula(symbols=gate_symbols(block), functions=FUNCTIONS), kind="formula",
                mistakes=lambda probe: mistakes)


def _formula_parts() -> list[Part]:
    cell_mistakes = [Mistake("LSTM_CELL_GATES_SWAPPED", "i*c + f*g", _FORMULA_FEEDBACK["LSTM_CELL_GATES_SWAPPED"]),
                     Mistake("LSTM_CELL_NO_FORGET", "c + i*g", _FORMULA_FEEDBACK["LSTM_CELL_NO_FORGET"])]
    hidden_mistakes = [Mistake("LSTM_TANH_CELL_MISSING", "o*c_t", _FEEDBACK["LSTM_TANH_CELL_MISSING"]),
                       Mistake("LSTM_H_NO_OUTPUT_GATE", "tanh(c_t)", _FORMULA_FEEDBACK["LSTM_H_NO_OUTPUT_GATE"])]
    return [_gate_part(block) for block in GATES] + [
        Part("lstm_formula_c", 1, say("Formula of the cell state c_t", "记忆单元 c_t 的公式"),
             probe=lambda rng: read_variable("lstm_formula_c"), reference=lambda probe: CELL_FORMULA,
             check=Formula(symbols=("i", "f", "g", "c"), functions=FUNCTIONS), kind="formula",
             mistakes=lambda probe: cell_mistakes),
        Part("lstm_formula_h", 1, say("Formula of the hidden state h_t", "隐藏状态 h_t 的公式"),
             probe=lambda rng: read_variable("lstm_formula_h"), reference=lambda probe: HIDDEN_FORMULA,
             check=Formula(symbols=("o", "c_t"), functions=FUNCTIONS), kind="formula",
             mistakes=lambda probe: hidden_mistakes),
    ]


def parts(params: dict) -> list[Part]:
    count = answers(params)["lstm_param_count"]
    return [
        Part("lstm_gate_roles", 3, say("Roles of the input, forget and output gates", "输入门、遗忘门、输出门的作用"),
             probe=lambda rng: read_variable("lstm_gate_roles"), reference=lambda probe: MODEL_ANSWER_GATES,
             check=GATES_RUBRIC, kind="written"),
        *_formula_parts(),
        Part("lstm_diagram", 3, say("Diagram of the LSTM cell", "LSTM 单元结构示意图"),
             probe=lambda rng: read_variable("lstm_diagram"), reference=lambda probe: MODEL_DIAGRAM,
             check=DIAGRAM_RUBRIC, kind="written"),
        Part("lstm_cell", 5, say("Function lstm_cell (one time step)", "函数 lstm_cell（单个时间步）"),
             probe=lambda rng: KERNEL.probe("cell", {"cases": _cell_cases(rng, params)}),
             reference=_cell_reference, check=Cases(TOL),
             mistakes=lambda probe: _mistakes(_cell_reference, probe), kind="code", hidden_inputs=True,
             forbidden=_NO_READY_MADE),
        Part("lstm_forward", 4, say("Function lstm_forward (a whole sequence)", "函数 lstm_forward（整个序列）"),
             probe=lambda rng: KERNEL.probe("forward", {"cases": _forward_cases(rng, params)}),
             reference=_forward_reference,
             check=Cases(Fields({"outputs": (2.0, TOL), "h_T": (1.0, TOL), "c_T": (1.0, TOL)})),
             mistakes=lambda probe: _mistakes(_forward_reference, probe, {"LSTM_STATE_NOT_CARRIED": {"carry_state": False}}),
             kind="code", hidden_inputs=True, forbidden=_NO_READY_MADE),
        Part("lstm_param_count", 3, say("Parameters of a multi-layer nn.LSTM", "多层 nn.LSTM 的参数量"),
             probe=lambda rng: read_variable("lstm_param_count"), reference=lambda probe: count,
             check=Exact(), mistakes=lambda probe: _count_mistakes(params), forbidden=_NO_COUNTING),
    ]


def context(params: dict) -> dict:
    return {"gates_answer_src": repr(MODEL_ANSWER_GATES), "diagram": MODEL_DIAGRAM,
            "formulas": {f"lstm_formula_{b}": gate_formula(b) for b in GATES} | {"lstm_formula_c": CELL_FORMULA,
                                                                                 "lstm_formula_h": HIDDEN_FORMULA}}


PROBLEM = Problem(
    id="lstm",
    title=say("LSTM gates, forward pass and parameter count", "LSTM 的门控、前向计算与参数量"),
    points=24, sample=sample, note=note, parts=parts, answers=answers, context=context,
    template=Path(__file__).with_name("notebook.j2"),
)

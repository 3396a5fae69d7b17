"""Reference for the LSTM problem: one cell step, a sequence unroll and parameter counts.

torch.nn.LSTM is the truth; `lstm_cell_manual` re-implements it with switches that produce the classic
wrong answers (gate order, weight layout, missing hidden bias, missing tanh on the cell) for feedback."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

GATES = "ifgo"  # PyTorch's row-block order in W_ih, W_hh, b_ih, b_hh


def _torch_lstm(W_ih, W_hh, b_ih, b_hh) -> nn.LSTM:
    """A one-layer float64 nn.LSTM holding exactly these weights. Built on the meta device and then given
    empty CPU storage (what nn.utils.skip_init does, which refuses nn.LSTM's signature): a CPU construction's
    default init would draw from torch's global generator, which other grader lanes (threads) may be using."""
    four_h, input_size = np.shape(W_ih)
    lstm = nn.LSTM(input_size, four_h // 4, dtype=torch.float64, device="meta").to_empty(device="cpu")
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.as_tensor(np.asarray(W_ih), dtype=torch.float64))
        lstm.weight_hh_l0.copy_(torch.as_tensor(np.asarray(W_hh), dtype=torch.float64))
        lstm.bias_ih_l0.copy_(torch.as_tensor(np.asarray(b_ih), dtype=torch.float64))
        lstm.bias_hh_l0.copy_(torch.as_tensor(np.asarray(b_hh), dtype=torch.float64))
    return lstm


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def torch_lstm_forward(xs, h0, c0, W_ih, W_hh, b_ih, b_hh):
    """(outputs (T,B,H), h_T (B,H), c_T (B,H)) from torch.nn.LSTM loaded with these weights, float64."""
    lstm = _torch_lstm(W_ih, W_hh, b_ih, b_hh)
    with torch.no_grad():
        out, (h, c) = lstm(_t(xs), (_t(h0)[None], _t(c0)[None]))
    return out.numpy(), h[0].numpy(), c[0].numpy()


def torch_lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):
    """One step: (h', c') from torch.nn.LSTM on a length-1 sequence."""
    _, h1, c1 = torch_lstm_forward(np.asarray(x)[None], h, c, W_ih, W_hh, b_ih, b_hh)
    return h1, c1


def lstm_cell_manual(x, h, c, W_ih, W_hh, b_ih, b_hh, *, order: str = GATES, reshape_weights: bool = False,
                     hh_bias: bool = True, tanh_cell: bool = True):
    """The six equations. `order` names the gate each row block is read as (PyTorch: "ifgo");
    `reshape_weights` multiplies by W.reshape(in, 4H) instead of W.T (a wrong layout with right shapes)."""
    x, h, c, W_ih, W_hh, b_ih, b_hh = map(_t, (x, h, c, W_ih, W_hh, b_ih, b_hh))
    if reshape_weights:
        z = x @ W_ih.reshape(W_ih.shape[1], -1) + h @ W_hh.reshape(W_hh.shape[1], -1)
    else:
        z = x @ W_ih.T + h @ W_hh.T
    z = z + b_ih + (b_hh if hh_bias else 0)
    blocks = dict(zip(order, z.chunk(4, dim=1)))
    i, f, g, o = torch.sigmoid(blocks["i"]), torch.sigmoid(blocks["f"]), torch.tanh(blocks["g"]), torch.sigmoid(blocks["o"])
    c1 = f * c + i * g
    h1 = o * (torch.tanh(c1) if tanh_cell else c1)
    return h1.numpy(), c1.numpy()


def lstm_forward_manual(xs, h0, c0, W_ih, W_hh, b_ih, b_hh, *, carry_state: bool = True, **switches):
    h, c, outs = np.asarray(h0), np.asarray(c0), []
    for x in np.asarray(xs):
        h1, c1 = lstm_cell_manual(x, h if carry_state else h0, c if carry_state else c0, W_ih, W_hh, b_ih, b_hh,
                                  **switches)
        h, c = h1, c1
        outs.append(h1)
    return np.stack(outs), h, c


def lstm_param_count(input_size: int, hidden_size: int, num_layers: int) -> int:
    """Counted on a real nn.LSTM (built on the meta device: the same parameters, no memory, no random init)."""
    with torch.device("meta"):
        return sum(p.numel() for p in nn.LSTM(input_size, hidden_size, num_layers=num_layers).parameters())


def lstm_param_formula(input_size: int, hidden_size: int, num_layers: int, *, gates: int = 4, biases: int = 2,
                       same_input: bool = False) -> int:
    """4H(I + H) + 8H for the first layer, 4H(H + H) + 8H for each later one; switches give wrong counts."""
    total = 0
    for layer in range(num_layers):
        inp = input_size if layer == 0 or same_input else hidden_size
        total += gates * hidden_size * (inp + hidden_size) + biases * gates * hidden_size
    return total


# The gate formulas of one unit (I = H = 1), in the notebook's scalar symbols: block k in (i, f, g, o) has the
# weights W_ik (on x) and W_hk (on h) and PyTorch's two biases b_ik, b_hk.
def gate_formula(block: str, *, activation: str | None = None, hh_bias: bool = True) -> str:
    activation = activation or ("tanh" if block == "g" else "sigmoid")
    terms = [f"W_i{block}*x", f"b_i{block}", f"W_h{block}*h"] + ([f"b_h{block}"] if hh_bias else [])
    return f"{activation}({' + '.join(terms)})"


def gate_symbols(block: str) -> tuple[str, ...]:
    return ("x", "h", f"W_i{block}", f"W_h{block}", f"b_i{block}", f"b_h{block}")


CELL_FORMULA = "f*c + i*g"          # c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
HIDDEN_FORMULA = "o*tanh(c_t)"      # h_t = o_t ⊙ tanh(c_t)

MODEL_ANSWER_GATES = (
    "遗忘门 f_t：sigmoid 输出 (0,1) 之间的系数，逐元素乘在上一时刻的记忆 c_{t-1} 上，决定旧记忆保留多少、丢弃多少 "
    "(how much of the previous cell state to keep)；输入门 i_t：决定本时刻的候选记忆 g_t 有多少写入记忆单元 "
    "(how much new information to write)，g_t 决定写入什么；输出门 o_t：决定记忆单元经过 tanh 后有多少作为隐藏状态 h_t 输出 "
    "(which part of the cell state becomes the hidden state h_t)。记忆单元的更新是近似线性的通路，梯度可以沿它跨越很多时间步传播，"
    "所以 LSTM 能缓解梯度消失，学到长期依赖。")

# The LSTM cell as a Mermaid flowchart (Jupyter renders ```mermaid blocks in Markdown).
MODEL_DIAGRAM = """```mermaid
flowchart LR
    xt["x_t"] --> z["W_ih x_t + b_ih + W_hh h_(t-1) + b_hh, split into 4 blocks"]
    hp["h_(t-1) (hidden state)"] --> z
    z --> f["forget gate f_t = σ(·)"]
    z --> i["input gate i_t = σ(·)"]
    z --> g["candidate g_t = tanh(·)"]
    z --> o["output gate o_t = σ(·)"]
    cp["c_(t-1) (cell state)"] --> m1(("×"))
    f --> m1
    i --> m2(("×"))
    g --> m2
    m1 --> a1(("+"))
    m2 --> a1
    a1 --> ct["c_t (cell state)"]
    ct --> th["tanh"]
    th --> m3(("×"))
    o --> m3
    m3 --> ht["h_t (hidden state)"]
```"""

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

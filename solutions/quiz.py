"""Reference answers for the quiz bank (templates/quiz_*). One function per item; torch, numpy or sympy
computes every answer. Keyword switches produce the classic wrong answers, for feedback.

Shapes are run on the "meta" device: torch works out the shapes without allocating or computing."""
from __future__ import annotations

import math
from functools import lru_cache

import mpmath
import numpy as np
import sympy
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode


def intify(value, tol: float = 1e-9):
    """A float reference (or mistake) whose every entry is a whole number becomes ints, so a student who
    writes [2, -3] by hand is compared by value (an Array check refuses an int reply to a float reference)."""
    flat = np.asarray(value, dtype=np.float64)
    if flat.size and np.all(np.abs(flat - np.round(flat)) <= tol):
        return np.round(flat).astype(np.int64).tolist()
    return np.asarray(value, dtype=np.float64).tolist()


# ---------------------------------------------------------------- quiz-conv-output

def conv_out(size: int, k: int, s: int, p: int, *, ceil: bool = False, use_padding: bool = True) -> int:
    """floor((W - K + 2P) / S) + 1."""
    num = size - k + 2 * (p if use_padding else 0)
    return (-(-num // s) if ceil else num // s) + 1


def stack_output_size(size: int, layers, *, ceil: bool = False, use_padding: bool = True) -> int:
    for k, s, p in layers:
        size = conv_out(size, k, s, p, ceil=ceil, use_padding=use_padding)
    return size


def torch_stack_output_size(size: int, layers, kinds) -> int:
    modules = [nn.MaxPool2d(k, s, p) if kind == "pool" else nn.Conv2d(1, 1, k, s, p, device="meta")
               for (k, s, p), kind in zip(layers, kinds)]
    return int(nn.Sequential(*modules)(torch.zeros(1, 1, size, size, device="meta")).shape[-1])


def small_net(cin: int, c1: int, k1: int, p1: int, c2: int, k2: int, s2: int, p2: int) -> nn.Sequential:
    """conv1 (stride 1) -> ReLU -> max-pool 2x2 -> conv2 -> ReLU -> max-pool 2x2."""
    return nn.Sequential(nn.Conv2d(cin, c1, k1, 1, p1, device="meta"), nn.ReLU(), nn.MaxPool2d(2, 2),
                         nn.Conv2d(c1, c2, k2, s2, p2, device="meta"), nn.ReLU(), nn.MaxPool2d(2, 2))


def net_output_shape(net: dict) -> list[int]:
    model = small_net(net["cin"], net["c1"], net["k1"], net["p1"], net["c2"], net["k2"], net["s2"], net["p2"])
    return [int(v) for v in model(torch.zeros(net["n"], net["cin"], net["h"], net["w"], device="meta")).shape]


def net_output_shape_formula(net: dict, *, ceil: bool = False, use_padding: bool = True, use_pool: bool = True,
                             nhwc: bool = False) -> list[int]:
    def side(x):
        x = conv_out(x, net["k1"], 1, net["p1"], ceil=ceil, use_padding=use_padding)
        x = conv_out(x, 2, 2, 0, ceil=ceil) if use_pool else x
        x = conv_out(x, net["k2"], net["s2"], net["p2"], ceil=ceil, use_padding=use_padding)
        return conv_out(x, 2, 2, 0, ceil=ceil) if use_pool else x

    h, w = side(net["h"]), side(net["w"])
    return [net["n"], h, w, net["c2"]] if nhwc else [net["n"], net["c2"], h, w]


# ---------------------------------------------------------------- quiz-conv2d-shape

def conv2d_shape(cin, cout, kernel, stride, padding, shape) -> list[int]:
    conv = nn.Conv2d(cin, cout, tuple(kernel), stride, tuple(padding), device="meta")
    return [int(v) for v in conv(torch.zeros(*shape, device="meta")).shape]


def conv2d_params(cin, cout, kernel, *, bias: bool = True) -> int:
    conv = nn.Conv2d(cin, cout, tuple(kernel), bias=bias, device="meta")
    return sum(p.numel() for p in conv.parameters())


def conv2d_shape_formula(cin, cout, kernel, stride, padding, shape, *, swap_kernel=False, use_stride=True,
                         keep_channels=False) -> list[int]:
    kh, kw = kernel[::-1] if swap_kernel else kernel
    s = stride if use_stride else 1
    n, _, h, w = shape
    return [n, cin if keep_channels else cout, conv_out(h, kh, s, padding[0]), conv_out(w, kw, s, padding[1])]


# ---------------------------------------------------------------- quiz-se-block

def se_shapes(n, c, r, h, w) -> dict:
    """Squeeze (global average pool, viewed as (N, C)), FC1 (C -> C/r), FC2 (C/r -> C)."""
    x = torch.zeros(n, c, h, w, device="meta")
    squeeze = nn.AdaptiveAvgPool2d(1)(x).view(n, c)
    fc1 = nn.Linear(c, c // r, device="meta")(squeeze)
    fc2 = nn.Linear(c // r, c, device="meta")(torch.relu(fc1))
    return {"squeeze": list(squeeze.shape), "fc1": list(fc1.shape), "fc2": list(fc2.shape)}


def se_params(c, r, *, bias: bool = True) -> int:
    excitation = nn.Sequential(nn.Linear(c, c // r, bias=bias, device="meta"), nn.ReLU(),
                               nn.Linear(c // r, c, bias=bias, device="meta"), nn.Sigmoid())
    return sum(p.numel() for p in excitation.parameters())


# ---------------------------------------------------------------- quiz-gd-step

def quadratic_grad(A, b, x0) -> np.ndarray:
    """Gradient of f(x) = 1/2 x^T A x - b^T x at x0, by autograd."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    At, bt = torch.tensor(A, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    (0.5 * x @ At @ x - bt @ x).backward()
    return x.grad.numpy()


def gd_step(A, b, x0, lr) -> np.ndarray:
    return np.asarray(x0, dtype=np.float64) - lr * quadratic_grad(A, b, x0)


# ---------------------------------------------------------------- quiz-momentum-adam

def momentum_steps(x0, grads, lr, beta) -> np.ndarray:
    """torch.optim.SGD with momentum: v = beta*v + g (v0 = 0), x = x - lr*v; one step per gradient."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([x], lr=lr, momentum=beta)
    for g in grads:
        x.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return x.detach().numpy()


def momentum_ema_steps(x0, grads, lr, beta) -> np.ndarray:
    """The other textbook form, an exponential average v = beta*v + (1-beta)*g from v0 = 0 (a mistake here)."""
    x, v = np.asarray(x0, dtype=np.float64), 0.0
    for g in grads:
        v = beta * v + (1 - beta) * np.asarray(g, dtype=np.float64)
        x = x - lr * v
    return x


def adam_step(x0, g, lr, beta1, beta2, eps) -> np.ndarray:
    """torch.optim.Adam, first step: m = (1-b1) g, v = (1-b2) g^2, bias-corrected, x - lr m^/(sqrt(v^)+eps)."""
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr, betas=(beta1, beta2), eps=eps)
    x.grad = torch.tensor(g, dtype=torch.float64)
    opt.step()
    return x.detach().numpy()


def adam_step_formula(x0, g, lr, beta1, beta2, eps, *, bias_correction=True, use_sqrt=True) -> np.ndarray:
    x0, g = np.asarray(x0, dtype=np.float64), np.asarray(g, dtype=np.float64)
    m, v = (1 - beta1) * g, (1 - beta2) * g * g
    if bias_correction:
        m, v = m / (1 - beta1), v / (1 - beta2)
    return x0 - lr * m / ((np.sqrt(v) if use_sqrt else v) + eps)


# ---------------------------------------------------------------- quiz-hessian, quiz-max-lr

def eigenvalues(H) -> list[float]:
    """Ascending eigenvalues of a symmetric matrix."""
    return [float(v) for v in torch.linalg.eigvalsh(torch.tensor(H, dtype=torch.float64))]


def classify_stationary(H) -> str:
    lo, hi = eigenvalues(H)[0], eigenvalues(H)[-1]
    if lo > 0:
        return "min"
    if hi < 0:
        return "max"
    if lo < 0 < hi:
        return "saddle"
    return "degenerate"


def max_stable_lr(H) -> float:
    """GD on 1/2 x^T H x: x <- (I - lr H) x converges iff |1 - lr*lambda| < 1 for every eigenvalue: lr < 2/lambda_max."""
    return 2.0 / eigenvalues(H)[-1]


def best_constant_lr(H) -> float:
    """The lr that minimises max |1 - lr*lambda|: 2/(lambda_min + lambda_max)."""
    ev = eigenvalues(H)
    return 2.0 / (ev[0] + ev[-1])


# ---------------------------------------------------------------- quiz-softmax-ce

def softmax(logits) -> np.ndarray:
    return torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0).numpy()


def cross_entropy(logits, target: int) -> float:
    z = torch.tensor([logits], dtype=torch.float64)
    return float(F.cross_entropy(z, torch.tensor([target])))


# ---------------------------------------------------------------- quiz-backprop

@lru_cache(maxsize=None)
def _backprop_derivatives(factor_two: bool, output_sigmoid_deriv: bool, sign: int):
    """(dL/dw1, dL/dw2) as functions of (x, w1, b1, w2, b2, y), differentiated symbolically once."""
    W1, B1, W2, B2, X, Y = sympy.symbols("w1 b1 w2 b2 x y")
    sig = lambda z: 1 / (1 + sympy.exp(-z))  # noqa: E731
    h = sig(W1 * X + B1)
    yhat = sig(W2 * h + B2)
    if factor_two and output_sigmoid_deriv and sign == 1:
        loss = (yhat - Y) ** 2
        d1, d2 = sympy.diff(loss, W1), sympy.diff(loss, W2)
    else:
        # the chain written out by hand, with the requested factor left out
        delta = (2 if factor_two else 1) * sign * (yhat - Y) * (yhat * (1 - yhat) if output_sigmoid_deriv else 1)
        d2 = delta * h
        d1 = delta * W2 * h * (1 - h) * X
    order = (X, W1, B1, W2, B2, Y)
    return sympy.lambdify(order, d1, "mpmath"), sympy.lambdify(order, d2, "mpmath")


def backprop_grads(x, w1, b1, w2, b2, y, *, factor_two: bool = True, output_sigmoid_deriv: bool = True,
                   sign: int = 1) -> dict:
    """h = sigma(w1 x + b1), yhat = sigma(w2 h + b2), L = (yhat - y)^2. Gradients by sympy: symbolic
    differentiation, then evaluation at the exact decimal parameters with 30-digit arithmetic.
    The switches give the classic mistakes: dropping the 2, dropping sigma'(z2), using (y - yhat)."""
    d1, d2 = _backprop_derivatives(factor_two, output_sigmoid_deriv, sign)
    with mpmath.workdps(30):
        args = [mpmath.mpf(str(v)) for v in (x, w1, b1, w2, b2, y)]
        return {"dw1": float(d1(*args)), "dw2": float(d2(*args))}


def backprop_forward(x, w1, b1, w2, b2, y) -> dict:
    h = 1 / (1 + math.exp(-(w1 * x + b1)))
    yhat = 1 / (1 + math.exp(-(w2 * h + b2)))
    return {"h": h, "yhat": yhat, "loss": (yhat - y) ** 2}


# ---------------------------------------------------------------- quiz-gru-lstm

def rnn_params(kind: str, input_size: int, hidden_size: int) -> int:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    return sum(p.numel() for p in cls(input_size, hidden_size, device="meta").parameters())


def rnn_params_formula(kind: str, input_size: int, hidden_size: int, *, biases: int = 2, gates: int | None = None) -> int:
    gates = gates if gates is not None else {"lstm": 4, "gru": 3}[kind]
    return gates * (hidden_size * input_size + hidden_size * hidden_size + biases * hidden_size)


# ---------------------------------------------------------------- quiz-batchnorm

def batchnorm_train(x, gamma, beta, eps: float, momentum: float) -> dict:
    """nn.BatchNorm1d in training mode: output (biased batch variance) and running stats after one step
    (running_var is updated with the UNBIASED batch variance, from an initial 1)."""
    x = torch.tensor(x, dtype=torch.float64)
    bn = nn.BatchNorm1d(x.shape[1], eps=eps, momentum=momentum).double().train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a tiny batch: the CPU kernel spends ~50 ms waking its thread pool otherwise
    try:
        with torch.no_grad():
            bn.weight.copy_(torch.tensor(gamma, dtype=torch.float64))
            bn.bias.copy_(torch.tensor(beta, dtype=torch.float64))
            y = bn(x)
    finally:
        torch.set_num_threads(threads)
    return {"y": y.numpy(), "running_mean": bn.running_mean.numpy(), "running_var": bn.running_var.numpy()}


def batchnorm_formula(x, gamma, beta, eps: float, *, unbiased: bool = False, affine: bool = True,
                      axis: int = 0) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    var = x.var(axis=axis, ddof=1 if unbiased else 0, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    return y * np.asarray(gamma) + np.asarray(beta) if affine else y


def running_var_formula(x, momentum: float, *, unbiased: bool = True, swapped: bool = False) -> np.ndarray:
    var = np.asarray(x, dtype=np.float64).var(axis=0, ddof=1 if unbiased else 0)
    m = 1 - momentum if swapped else momentum
    return (1 - m) * 1.0 + m * var


# ---------------------------------------------------------------- quiz-dropout

def dropout_scale(p: float) -> float:
    """Inverted dropout (nn.Dropout, p = drop probability): kept units are multiplied by 1/(1-p)."""
    return 1.0 / (1.0 - p)


def dropout_expected_train_output(a: float, p: float, *, inverted: bool) -> float:
    """E[m * a * scale], m ~ Bernoulli(1-p): a for inverted dropout, (1-p) a without the scale."""
    return (1 - p) * a * (dropout_scale(p) if inverted else 1.0)


class _PrivateGenerator(TorchDispatchMode):
    """Inside it, every random op that torch dispatches (on this thread) draws from `generator` instead of the
    global generator: F.dropout takes no generator, and seeding or drawing from the global one races with the
    other grader lanes (threads of one process). A random op that takes no generator is refused."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.generator = generator

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if torch.Tag.nondeterministic_seeded in func.tags:
            if not any(a.name == "generator" for a in func._schema.arguments):
                raise RuntimeError(f"{func} draws from torch's global generator and takes no other")
            if kwargs.get("generator") is None:
                kwargs["generator"] = self.generator
        return func(*args, **kwargs)


def dropout_torch_scale(p: float) -> float:
    """What nn.Dropout multiplies a kept unit by, read from torch itself (its mask drawn from a private
    generator; the scale does not depend on the mask)."""
    with _PrivateGenerator(torch.Generator().manual_seed(0)):
        y = F.dropout(torch.ones(4096, dtype=torch.float64), p=p, training=True)
    return float(y[y != 0][0])


DROPOUT_EXPECTATION = "x"   # E[m x/(1-p)] = (1-p) x/(1-p)


# ---------------------------------------------------------------- quiz-im2col

def im2col_shape(cin, k, s, p, h, w) -> list[int]:
    """Columns of one image: [Cin*K*K, H_out*W_out], from F.unfold."""
    cols = F.unfold(torch.zeros(1, cin, h, w, device="meta"), k, padding=p, stride=s)
    return [int(cols.shape[1]), int(cols.shape[2])]


def conv_macs(cin, cout, k, s, p, h, w) -> int:
    rows, cols = im2col_shape(cin, k, s, p, h, w)
    return cout * rows * cols

"""Kernel side of the weight-initialisation problem.

init_weights: the probe builds an MLP of the grader's widths, lets the student's function initialise it,
and returns each layer's weights at the grader's (hidden) positions, and its biases: samples, never
statistics. The grader computes the statistics (`summary` below, run in the grader); only the self-check
runs `summary` here, where it informs and never grades."""
import numpy as np
import torch

from hwkit_kernel.cases import error


def _initialised(init_weights, widths, scheme, seed):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    model = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.ReLU())][:-1])
    init_weights(model, scheme)
    return layers


def _samples(layers, positions):
    return {"weights": [layer.weight.detach().reshape(-1)[torch.as_tensor(p)].double().numpy()
                        for layer, p in zip(layers, positions)],
            "biases": [layer.bias.detach().double().numpy() for layer in layers]}


def init_samples(student, inputs):
    """Per scheme (xavier, he): each layer's weights at inputs["positions"][i], and every bias."""
    init_weights = student.function("init_weights")
    out = []
    for scheme in ("xavier", "he"):
        try:
            layers = _initialised(init_weights, inputs["widths"], scheme, inputs["seed"])
            out.append(_samples(layers, inputs["positions"]))
        except Exception as exc:  # this scheme fails, the other still counts
            out.append(error(exc))
    return out


def summary(record):
    """The statistics the check compares: per layer the mean square of the sampled weights (the variance of a
    zero-mean draw) and whether they look normal (kurtosis about zero above 2.4: 3 for a normal, 1.8 for a
    uniform), and the largest |bias|."""
    if not isinstance(record, dict) or "weights" not in record:
        return record
    square, normal = [], []
    for w in record["weights"]:
        w = np.asarray(w, dtype=np.float64)
        m2 = float(np.mean(w * w)) if w.size else 0.0
        square.append(m2)
        normal.append(int(m2 > 0 and float(np.mean(w ** 4)) / (m2 * m2) > 2.4))
    biases = [np.abs(np.asarray(b, dtype=np.float64)) for b in record["biases"]]
    return {"var": square, "normal": normal, "bias_max_abs": max((float(b.max(initial=0.0)) for b in biases), default=0.0)}


def init_summary(student, inputs):
    """The self-check's probe: init_samples summarised here. (It carries no target variance: those would give
    the answers of the formula parts away; the self-check compares the normality and the biases only.)"""
    return [summary(record) for record in init_samples(student, inputs)]

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


# What an N(0, σ²) draw of independent weights looks like, per layer of 40,000 sampled weights (w/σ̂ with σ̂² the
# mean square). Each bound is far past what a right answer reaches by chance (false alarm well under 1e-7):
# - normal: the Kolmogorov-Smirnov distance from N(0, 1) at most 0.015 (a right draw's is ~0.005, the null's tail
#   P(√n·D > 3) ~ 2e-8; a uniform draw's is ~0.04, a Laplace draw's ~0.05);
# - independent: the mean within 6 standard errors of zero, and no structure shared along a row or a column of the
#   weight matrix: with the samples grouped by row (then by column), Σ_g S_g² / (n_g σ̂²) is a chi-square with G
#   degrees of freedom for independent weights; its z-score stays under 8 (a matrix whose rows are one vector
#   repeated reaches ~1000).
NORMAL_KS = 0.015
MEAN_Z = 6.0
GROUP_Z = 8.0


def _ks_from_standard_normal(z):
    z = torch.sort(torch.as_tensor(z, dtype=torch.float64)).values
    cdf = torch.special.ndtr(z)
    n = z.numel()
    above = torch.arange(1, n + 1, dtype=torch.float64) / n - cdf
    below = cdf - torch.arange(0, n, dtype=torch.float64) / n
    return float(torch.maximum(above, below).max())


def _shared_structure_z(w, groups, m2):
    """How far the samples' sums within groups (rows or columns) are from independent weights', in z-scores."""
    _, index, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    sums = np.bincount(index, weights=w)
    chi2 = float(np.sum(sums * sums / sizes)) / m2
    return (chi2 - sizes.size) / np.sqrt(2 * sizes.size)


def _independent_normal(w, positions, n_in, m2):
    if w.size < 2 or m2 <= 0:
        return 0, 0
    z = w / np.sqrt(m2)
    normal = int(_ks_from_standard_normal(z) <= NORMAL_KS)
    zero_mean = abs(float(np.mean(z))) * np.sqrt(w.size) <= MEAN_Z
    rows, columns = positions // n_in, positions % n_in
    unshared = max(_shared_structure_z(w, rows, m2), _shared_structure_z(w, columns, m2)) <= GROUP_Z
    return normal, int(zero_mean and unshared)


def summary(record, inputs):
    """The statistics the check compares, per layer: the mean square of the sampled weights (the variance of a
    zero-mean independent draw; None when the draw is not one, which has no variance to earn), whether they look
    normal and independent (bounds above), and the largest |bias|."""
    if not isinstance(record, dict) or "weights" not in record:
        return record
    widths, positions = inputs["widths"], inputs["positions"]
    square, normal, independent = [], [], []
    for w, p, n_in in zip(record["weights"], positions, widths):
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        p = np.asarray(p, dtype=np.int64).reshape(-1)
        m2 = float(np.mean(w * w)) if w.size and np.all(np.isfinite(w)) else 0.0
        is_normal, is_independent = _independent_normal(w, p, n_in, m2) if w.size == p.size else (0, 0)
        square.append(m2 if is_independent else None)
        normal.append(is_normal)
        independent.append(is_independent)
    biases = [np.abs(np.asarray(b, dtype=np.float64)) for b in record["biases"]]
    return {"var": square, "normal": normal, "independent": independent,
            "bias_max_abs": max((float(b.max(initial=0.0)) for b in biases), default=0.0)}


def init_summary(student, inputs):
    """The self-check's probe: init_samples summarised here. (It carries no target variance: those would give
    the answers of the formula parts away; the self-check compares the normality and the biases only.)"""
    return [summary(record, inputs) for record in init_samples(student, inputs)]

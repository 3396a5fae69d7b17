"""The grader computes references in lanes that are threads of one worker process, several submissions at once.
A reference that seeds or draws from a process-wide random generator (torch's, numpy's legacy one, Python's
`random`), or that builds a module on the CPU (its default init draws from torch's global generator), gets
other numbers when another lane draws at the same time: a correct student then loses the part. These tests
compute every part's reference (and its known mistakes) for many variants in racing threads and compare
them with a serial run, and check that computing references leaves the global random state alone."""
from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from hwkit.bank import get_problem, load_bank
from hwkit.problem import Mistake

PROBLEMS = sorted(load_bank())
RANDOM_PROBLEMS = ["weight-init", "lstm", "quiz-dropout", "quiz-batchnorm"]   # seeds, draws or CPU modules
THREADS = 8


def _freeze(value):
    """A hashable, exactly comparable form of a reference: arrays by dtype, shape and bytes; floats by their bits."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return ("nd", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (float, np.floating)):
        return ("f", float(value).hex())
    if isinstance(value, (bool, int, str, type(None), np.integer)):
        return (type(value).__name__, value if not isinstance(value, np.integer) else int(value))
    if isinstance(value, Mistake):
        return ("mistake", value.note, _freeze(value.value), value.fraction)
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((repr(k), _freeze(v)) for k, v in value.items()))))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    return ("repr", type(value).__name__, repr(value))


def _tasks(problem_ids, seeds):
    """(key, part, probe seed) for every part of every variant; the parts are built once, serially."""
    tasks = []
    for pid in problem_ids:
        problem = get_problem(pid)
        for seed in seeds:
            params = problem.sample(random.Random(seed))
            for part in problem.parts(params):
                tasks.append(((pid, seed, part.id), part, 1000 + seed))
    return tasks


def _compute(task):
    """What a grader lane computes for one part: the probe's hidden inputs, the reference, the known mistakes."""
    key, part, probe_seed = task
    probe = part.probe(random.Random(probe_seed))
    return key, _freeze(part.reference(probe)), _freeze(part.mistakes(probe))


def _race(tasks, rounds: int) -> dict:
    """Each task computed `rounds` times in THREADS racing threads, in a shuffled order each round."""
    got = {}
    order = random.Random(7)
    with ThreadPoolExecutor(THREADS) as pool:
        for _ in range(rounds):
            batch = tasks[:]
            order.shuffle(batch)
            for key, ref, mistakes in pool.map(_compute, batch):
                got.setdefault(key, []).append((ref, mistakes))
    return got


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As in the grader's worker processes (hwkit/grading/batch.py): one intra-op thread, the lanes are the parallelism
    (8 lanes each entering a 2-thread OpenMP region crawl on a busy machine, and so does one on a loaded one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _assert_same_as_serial(tasks, rounds: int) -> None:
    serial = {key: (ref, mistakes) for key, ref, mistakes in map(_compute, tasks)}
    differ = set()
    for key, results in _race(tasks, rounds).items():
        for ref, mistakes in results:
            if ref != serial[key][0]:
                differ.add((*key, "reference"))
            if mistakes != serial[key][1]:
                differ.add((*key, "mistakes"))
    assert not differ, f"{len(differ)} references differ when computed in parallel threads: {sorted(differ)[:10]}"


def test_random_references_are_the_same_in_racing_threads():
    """The parts whose references seed, draw or build modules, 8 variants each, 3 rounds of 8 racing threads."""
    _assert_same_as_serial(_tasks(RANDOM_PROBLEMS, range(8)), rounds=3)


def test_every_reference_of_the_bank_is_the_same_in_racing_threads():
    """Every part of every problem in the bank (nn-homework and quiz-review), 3 variants, 2 rounds."""
    _assert_same_as_serial(_tasks(PROBLEMS, range(3)), rounds=2)


def _global_state():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _assert_same_state(before, after) -> None:
    assert torch.equal(before[0], after[0]), "torch's global generator was seeded or drawn from"
    (kind, keys, *rest), (kind_after, keys_after, *rest_after) = before[1], after[1]
    assert kind == kind_after and np.array_equal(keys, keys_after) and rest == rest_after, \
        "numpy's global (legacy) generator was seeded or drawn from"
    assert before[2] == after[2], "Python's random module was seeded or drawn from"


SEEDING = [(torch, "manual_seed"), (torch, "seed"), (torch, "set_rng_state"), (torch.random, "manual_seed"),
           (torch.random, "seed"), (torch.random, "set_rng_state"), (np.random, "seed"), (np.random, "set_state"),
           (random, "seed"), (random, "setstate")]


def _recorded(function, name: str, calls: list):
    def call(*args, **kwargs):
        calls.append(name)
        return function(*args, **kwargs)
    return call


@pytest.mark.parametrize("pid", PROBLEMS)
def test_references_leave_the_global_random_state_alone(pid, monkeypatch):
    """Answers, every part's probe, reference and mistakes for 3 variants: the process-wide generators of torch,
    numpy and Python's random module are exactly as they were (nothing drawn), and none was seeded or set on
    the way, not even to be restored after (torch.random.fork_rng): another lane may be drawing meanwhile."""
    problem = get_problem(pid)
    torch.manual_seed(20240917)
    np.random.seed(20240917)
    random.seed(20240917)
    before = _global_state()
    calls = []
    for owner, name in SEEDING:
        monkeypatch.setattr(owner, name, _recorded(getattr(owner, name), f"{owner.__name__}.{name}", calls))
    for seed in range(3):
        params = problem.sample(random.Random(seed))
        problem.answers(params)
        for part in problem.parts(params):
            probe = part.probe(random.Random(seed))
            part.reference(probe)
            part.mistakes(probe)
    monkeypatch.undo()
    assert not calls, f"global random state set by {sorted(set(calls))}"
    _assert_same_state(before, _global_state())


# ------------------------------------------------------------------ activation_stds: private generator, same numbers

def _global_activation_stds(widths, scheme, seed, *, batch=256, mode="fan_in", relu=True, zero_bias=True,
                            layers_first=False, pre_activation=False):
    """The statement's steps as a student writes them, on torch's GLOBAL generator (the switches: the
    classic mistakes the reference's switches stand for)."""
    from torch import nn

    torch.manual_seed(seed)
    h = torch.randn(batch, widths[0])
    pairs = list(zip(widths[:-1], widths[1:]))
    made = [nn.Linear(a, b) for a, b in pairs] if layers_first else None
    stds = []
    with torch.no_grad():
        for i, (a, b) in enumerate(pairs):
            layer = made[i] if layers_first else nn.Linear(a, b)
            if scheme == "xavier":
                nn.init.xavier_normal_(layer.weight)
            else:
                nn.init.kaiming_normal_(layer.weight, mode=mode, nonlinearity="relu")
            if zero_bias:
                nn.init.zeros_(layer.bias)
            z = layer(h)
            h = torch.relu(z) if relu else z
            stds.append((z if pre_activation else h).std().item())
    return stds


SWITCHES = [{}, {"mode": "fan_out"}, {"relu": False}, {"zero_bias": False}, {"layers_first": True},
            {"pre_activation": True}]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(s) or "reference")
def test_activation_stds_draws_what_the_global_generator_would(switches):
    """Single thread: the reference (a private generator seeded with the student's seed) equals, bit for bit,
    the statement's steps after torch.manual_seed(seed) on the global generator, for the right answer and for
    each mistake; the global generator is left as it was."""
    from solutions.weight_init import activation_stds

    rng = random.Random(5)
    for _ in range(6):
        widths = [rng.randint(32, 384) for _ in range(rng.randint(5, 13))]
        scheme, seed, batch = rng.choice(["xavier", "he"]), rng.randint(0, 99999), rng.choice([256, 100])
        with torch.random.fork_rng(devices=[]):
            want = _global_activation_stds(widths, scheme, seed, batch=batch, **switches)
        before = torch.get_rng_state()
        assert activation_stds(widths, scheme, seed, batch=batch, **switches) == want, (widths, scheme, seed)
        assert torch.equal(torch.get_rng_state(), before)

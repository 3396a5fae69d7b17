"""Parts that ask for an nn.Module: does the student's module compute what the reference computes?

The kernel builds the student's module for each hidden case and reports hwkit_kernel.modules.behaviour:
the shapes of its tensors in order of first use (the layout), its output and its input gradient, every
tensor having been set at first use from the grader's seed. Here those values are replayed from the seed
and the layout and loaded into the reference module (and into each known wrong variant) in order of use,
concatenated and split by size, so a module written another way (a ModuleList of per-channel convolutions
for one grouped convolution, nn.Linear for a 1x1 convolution, a transposed raw weight) is loaded as the
same function; the reference then runs on the same input, and a case earns its points when the outputs
and gradients agree. Nothing the kernel says about the module earns anything: the layout only says how
to load the reference, and a false one only makes the outputs disagree.

A module is also trained: the reference's trainable parameters' gradients (reported along directions drawn
from the case's seed, hwkit_kernel.modules.parameter_sketches) are compared with the student's, read through
the same loading (a weight held as a buffer, frozen or detached has none: MODULE_NOT_TRAINABLE), and one
case per part whose reference has BatchNorm and no dropout is also run in training mode, on a batch of its
own (`train_x`), comparing the output and the running statistics that forward pass left
(MODULE_WRONG_TRAIN_MODE). Either costs the
whole part: a module that cannot be trained as asked is not the asked-for module.

A reference may have several right orders of use (a residual block may compute its shortcut before,
between or after the main branch's convolutions): each is a set of switches for the reference builder."""
from __future__ import annotations

import functools
import itertools
import math
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from hwkit.checks import NOT_ANSWERED, Check, correct, unanswered
from hwkit.records import Outcome, Text, say
from hwkit_kernel.modules import Directions, FillStream, FirstUse, behaviour, run, sketch_seed

CORRECT = "CORRECT"
NO_GRADIENT = "MODULE_NO_GRADIENT"
WRONG_OUTPUT = "MODULE_WRONG_OUTPUT"
WRONG_SHAPE = "MODULE_WRONG_SHAPE"
WRONG_PARAMETERS = "MODULE_WRONG_PARAMETERS"
NOT_TRAINABLE = "MODULE_NOT_TRAINABLE"
WRONG_TRAIN_MODE = "MODULE_WRONG_TRAIN_MODE"
WHOLE_PART = frozenset({NOT_TRAINABLE, WRONG_TRAIN_MODE})   # a property of the module, not of one input
RAISED = "RAISED"
MAX_ELEMENTS = 60_000_000          # a layout larger than this is not replayed (a ResNet-34 has 21.8M)
MAX_DIMS = 16                      # axes of one tensor of a layout (numpy holds 64; a weight has 1 to 4)
MAX_TRANSPOSES = 4                 # 2-D tensors whose transposed loading is tried (2**4 loadings at most)
MAX_REFERENCE_RUNS = 12            # per case, see _Budget
MAX_JUDGE_SECONDS = 15.0
SKETCH_RTOL = 1e-3                 # parameter gradients: relative to the largest of the reference's sketches
# BatchNorm in training mode normalises each channel over batch x height x width values. Over two (a batch of 2
# at 1x1, a ResNet's last stage on 32x32) it divides by a difference of two numbers that is near zero often
# enough that float32 rounding (another thread count, another summation order) changes the result: 5 of 60
# correct ResNets failed so. The training pass gets its own batch, large enough for the variance to keep clear
# of zero.
TRAIN_BATCH = 8


@dataclass(frozen=True)
class Variant:
    """A known wrong module: the reference built with `switches`, its answer note, feedback and credit."""
    note: str
    switches: tuple
    feedback: Text
    fraction: float = 0.0


@dataclass(frozen=True)
class ModuleSpec:
    """How to build the reference for one case (`build(config, **switches)`, called under the meta device),
    its right orders of use, and the known wrong variants."""
    name: str                                   # what the student wrote, for feedback ("BasicBlock")
    build: Callable[..., torch.nn.Module]
    orders: tuple = ((),)
    mistakes: tuple = ()
    rtol: float = 1e-4                          # relative to the largest reference value

    def reply(self, case: dict, switches: tuple = ()) -> dict:
        """The reference's behaviour record for one case, as the kernel reports a right module's."""
        return _REPLIES.get((_Same(self), _case_key(case), switches), lambda: _reference_reply(self, case, switches))

    def judge(self, record, case: dict) -> str:
        """The answer note of one case: CORRECT, a known mistake, or what is wrong in general terms."""
        if not isinstance(record, dict) or "__error__" in record:
            error = str(record.get("__error__", "")) if isinstance(record, dict) else ""
            return NOT_ANSWERED if unanswered(error.split(":")[0]) else RAISED
        use = _valid_use(record)
        y, grad = record.get("y"), record.get("grad")
        right_output, budget = False, _Budget()
        for reading in ([] if use is None else use.readings()):
            values = _Lazy(lambda reading=reading: reading.as_used(_replay(reading.stored_shapes, case)))
            for note, switches, loading in self._attempts(case, reading, values):
                want = self._loaded_reply(case, switches, reading, loading, budget)
                if want is _SPENT:
                    return NO_GRADIENT if right_output else WRONG_OUTPUT
                if want is None or not _close(y, want["y"], self.rtol):
                    continue
                if _close(grad, want["grad"], self.rtol):      # this reading of the student's tensors is the one
                    return _training_fault(record, want, reading, reference_use(self, case, switches), loading.way,
                                           self.rtol) or note
                right_output = right_output or note == CORRECT
        if right_output:
            return NO_GRADIENT
        want = self.reply(case, self.orders[0])
        if not isinstance(y, np.ndarray) or y.shape != want["y"].shape:
            return WRONG_SHAPE
        if use is None or not any(_compatible(r, reference_use(self, case, s)) for r in use.readings()
                                  for s in self.orders):
            return WRONG_PARAMETERS
        return WRONG_OUTPUT

    def candidates(self) -> list[tuple[str, tuple]]:
        return [(CORRECT, s) for s in self.orders] + [(m.note, m.switches + s) for m in self.mistakes
                                                      for s in self.orders]

    def _attempts(self, case: dict, use: "_Use", values: "_Lazy") -> Iterator[tuple[str, tuple, "_Loading"]]:
        """(note, switches, loading) to try, most likely first: the variants whose order of use is exactly the
        student's, read as they are; then every other way to read the student's tensors as a variant's. Variants
        that differ only in a right order of use and use their tensors alike (a block with an identity shortcut
        computed before or after its branch) are one function: the first is tried, not the others."""
        compatible, exact, seen = [], set(), set()
        orders = set(itertools.chain.from_iterable(self.orders))
        for note, switches in self.candidates():          # traced one by one: a right module stops early
            reference = reference_use(self, case, switches)
            if not _compatible(use, reference):
                continue
            same = (note, tuple(s for s in switches if s not in orders), reference)
            if same in seen:
                continue
            seen.add(same)
            compatible.append((note, switches, reference))
            if reference.shapes == use.shapes and not use.permuted:     # the seed's values, as the reference's
                exact.add((note, switches))
                yield note, switches, _AS_IS
                for order, flipped in _role_orders(use, reference):     # the same shapes, read in another order:
                    if note == CORRECT or not flipped:                   # every way for a right order first
                        yield note, switches, _role_loading(values.get(), reference, order, flipped)
        for note, switches, reference in compatible:
            for loading in _loadings(values.get(), use, reference):
                if (note, switches) not in exact or not (loading.way in (("grouped", True), ("flat", ())) or
                                                         loading.way[0] == "roles" and (note == CORRECT or not loading.way[2])):
                    yield note, switches, loading

    def _loaded_reply(self, case: dict, switches: tuple, use: "_Use", loading, budget: "_Budget"):
        """The reference (with `switches`) loaded with one way of reading the student's tensors; _SPENT when
        this case has used up the grader's budget for running references.

        Read as they are (the student's shapes in use are exactly the reference's), the student's tensors are
        the values the case's own seed gives the reference in its order of use: that reference run is the
        case's reply for `switches` (`reply`), computed once, and the student's values are not replayed."""
        key = (_Same(self), _case_key(case), switches) if loading is _AS_IS else \
            (_Same(self), _case_key(case), switches, use, loading.way)
        if not budget.spend():     # an attempt costs a run whether or not another student's grading computed it:
            return _SPENT          # the verdict does not depend on who was graded before in this process
        found = _REPLIES.peek(key)
        if found is not _MISSING:
            return found
        if loading is _AS_IS:
            return self.reply(case, switches)

        def loaded():
            stream = Directions(sketch_seed(case["cotangent_seed"]))
            directions = _apply_way(use.as_used([stream(shape) for shape in use.stored_shapes]), use,
                                    reference_use(self, case, switches), loading.way)
            return _reference_reply(self, case, switches, iter(loading.arrays), iter(directions))
        return _REPLIES.get(key, loaded)

    def public_replies(self, cases: list[dict]) -> list[list[dict]]:
        """What a right module reports on the self-check's cases, once per right order of use."""
        return [[self.reply(case, s) for case in cases] for s in self.orders]

    def train_case(self, cases: list[dict]) -> int | None:
        """The case also run in training mode: the last whose reference has BatchNorm and no dropout (dropout in
        training mode is random), None when there is none."""
        for index in reversed(range(len(cases))):
            key = (_Same(self), json_key(cases[index]["config"]))
            if _TRAINABLE.get(key, lambda: _batchnorm_without_dropout(self, cases[index]["config"])):
                return index
        return None

    def check(self, all_or_nothing: bool = False) -> "ModuleCheck":
        return ModuleCheck(self.name, tuple((m.note, m.fraction, m.feedback["en"], m.feedback["zh"])
                                            for m in self.mistakes), all_or_nothing)


def _close(got, want, rtol: float) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if not isinstance(got, np.ndarray) or got.shape != want.shape or got.dtype.kind not in "fiu":
        return False
    got, want = got.astype(np.float64), want.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return False
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-3)
    return float(np.abs(got - want).max(initial=0.0)) <= rtol * scale


def _case_key(case: dict) -> tuple:
    x = np.asarray(case["x"])
    return (json_key(case["config"]), int(case["seed"]), int(case["cotangent_seed"]),
            tuple(tuple(z) for z in case.get("zero", ())), x.shape, str(x.dtype), hash(x.tobytes()),
            None if case.get("train_x") is None else hash(np.asarray(case["train_x"]).tobytes()))


def json_key(value):
    if isinstance(value, (list, tuple)):
        return tuple(json_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, json_key(v)) for k, v in value.items()))
    return value


def _materialise(spec: ModuleSpec, config, switches: tuple) -> torch.nn.Module:
    """The reference on the CPU without drawing from torch's global generator: built on the meta device,
    then given memory; the fill sets every tensor it uses. Its parameters keep requires_grad: their
    gradients are compared with the student's."""
    with torch.device("meta"):
        module = spec.build(config, **dict(switches))
    return module.to_empty(device="cpu")


def _batchnorm_without_dropout(spec: ModuleSpec, config) -> bool:
    with torch.device("meta"):
        module = spec.build(config)
    kinds = [type(m) for m in module.modules()]
    return (any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm) for k in kinds)
            and not any(issubclass(k, torch.nn.modules.dropout._DropoutNd) for k in kinds))


def keep_freed_memory(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> None:
    """For a grading worker, process-wide: glibc serves blocks of up to `mmap_threshold` bytes from its heap and
    keeps up to `trim_threshold` bytes freed at the heap's top for the next allocation, instead of returning
    each reference's tensors to the system and faulting the pages in again for the next one (a ResNet-34
    reference run, ~90 MB: 0.30 -> 0.24 CPU-s). Nothing happens where libc has no mallopt."""
    import ctypes

    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(-3, mmap_threshold)     # M_MMAP_THRESHOLD
        mallopt(-1, trim_threshold)     # M_TRIM_THRESHOLD


class _Cache:
    """A small thread-safe cache of the last `size` values (references are costly: whole networks). A value
    several lanes ask for at once is computed by the first; the others wait for it (a batch's lanes start
    together, on students asked the same hidden questions)."""

    def __init__(self, size: int):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()
        self.computing: dict = {}       # key -> the lock its computing lane holds

    def peek(self, key):
        with self.lock:
            return self.items.get(key, _MISSING)

    def get(self, key, compute):
        while True:
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
                    return self.items[key]
                busy = self.computing.get(key)
                if busy is None:
                    busy = self.computing[key] = threading.Lock()
                    busy.acquire()
                    break
            with busy:        # another lane computes it: wait, then look again (it may have raised)
                pass
        try:
            value = compute()
            with self.lock:
                self.items[key] = value
                while len(self.items) > self.size:
                    self.items.popitem(last=False)
            return value
        finally:
            with self.lock:
                del self.computing[key]
            busy.release()


class _Same:
    """A cache key's spec, by identity. It holds the spec while its entries live: keyed by id() alone, a spec
    collected after grading one variant could give its id to another variant's spec, which would then be
    served the first one's references."""
    __slots__ = ("spec",)

    def __init__(self, spec):
        self.spec = spec

    def __hash__(self) -> int:
        return id(self.spec)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Same) and other.spec is self.spec


_REPLIES, _LAYOUTS, _TRAINABLE = _Cache(256), _Cache(512), _Cache(512)
_MISSING, _SPENT = object(), object()


class _Budget:
    """What the grader spends judging one case: at most MAX_REFERENCE_RUNS reference runs and
    MAX_JUDGE_SECONDS of this thread's CPU. A right module matches within the first few; a report built to
    make the grader try every variant and loading runs out of budget and is judged a wrong output."""

    def __init__(self):
        self.runs, self.until = MAX_REFERENCE_RUNS, time.thread_time() + MAX_JUDGE_SECONDS

    def spend(self) -> bool:
        self.runs -= 1
        return self.runs >= 0 and time.thread_time() < self.until


def _reference_reply(spec: ModuleSpec, case: dict, switches: tuple, loaded: Iterator | None = None,
                     directions: Iterator | None = None) -> dict | None:
    """The reference built with `switches`, its tensors set from `loaded` (arrays in its order of use) and its
    gradients sketched along `directions` (the student's, read the same way) or, without, from the case's own
    FillStreams. None when a wrong variant cannot be built or run for the case."""
    train_x = case.get("train_x")
    try:
        module = _materialise(spec, case["config"], switches)
        if loaded is None:
            record = behaviour(module, case["x"], seed=case["seed"], cotangent_seed=case["cotangent_seed"],
                               zero=case.get("zero", ()), train_x=train_x)
        else:
            record = run(module, case["x"], _NextArray(loaded), case["cotangent_seed"], train_x=train_x,
                         directions=_NextArray(directions))
    except (RuntimeError, ValueError, TypeError):
        if not switches or switches in spec.orders:
            raise                      # the reference itself must run: a bug in the problem, not a student's
        return None
    reply = {"layout": record["layout"], "groups": record["groups"], "y": record["y"].numpy(),
             "grad": None if record["grad"] is None else record["grad"].numpy(),
             "parameters": record["parameters"]}
    if train_x is not None:
        reply["train_y"] = record["train_y"].numpy()
        reply["state"] = [None if t is None else t.numpy() for t in record["state"]]
    return reply


class _NextArray:
    def __init__(self, arrays: Iterator):
        self.arrays = arrays

    def __call__(self, shape):
        array = next(self.arrays)
        if tuple(array.shape) != tuple(shape):
            raise ValueError("the reference's order of use differs from its layout")
        return array


@dataclass(frozen=True)
class _Use:
    """A module's tensors in order of first use: their shapes as used, and per tensor the group (the torch call
    that first read it: a convolution's weight and bias, BatchNorm's four vectors) and, for a tensor whose
    first use only reordered its axes, that order (`axes`, hwkit_kernel.modules.permuted_axes; None else);
    `params`: the indices of the tensors that are trainable parameters (the others are buffers, or frozen)."""
    shapes: tuple
    groups: tuple
    axes: tuple = ()
    params: frozenset = frozenset()

    @property
    def permuted(self) -> bool:
        return any(a is not None for a in self.axes)

    @functools.cached_property      # asked on every attempt of a case (the directions, the replay)
    def stored_shapes(self) -> tuple:
        """The shapes the tensors are stored in, as the kernel set them (the seed's values fill those)."""
        if not self.permuted:
            return self.shapes
        return tuple(shape if axes is None else tuple(shape[axes.index(j)] for j in range(len(shape)))
                     for shape, axes in zip(self.shapes, self.axes))

    def readings(self) -> list["_Use"]:
        """The ways to read the tensors: as used and, where an axis order was reported, also as stored (a first
        permute that a later one undoes)."""
        return [self, _Use(self.stored_shapes, self.groups, (), self.params)] if self.permuted else [self]

    def as_used(self, arrays: list) -> list:
        """Arrays in the stored shapes (values, directions, buffers) read as the tensors were used."""
        if not self.permuted:
            return list(arrays)
        return [a if axes is None or not isinstance(a, np.ndarray) else np.ascontiguousarray(a.transpose(axes))
                for a, axes in zip(arrays, self.axes)]

    def members(self) -> list[list[int]]:
        """Indices of the tensors of each group, groups in order."""
        out: dict[int, list[int]] = {}
        for index, group in enumerate(self.groups):
            out.setdefault(group, []).append(index)
        return list(out.values())

    def signature(self, members: list[int]) -> tuple:
        return tuple(_canonical(self.shapes[i]) for i in members)

    # Computed once per use: a case compares the student's use with every variant's (36 for a whole network), and
    # a forged layout may list 10^5 empty tensors.
    @functools.cached_property
    def group_signatures(self) -> Counter:
        return Counter(self.signature(m) for m in self.members())

    @functools.cached_property
    def offsets(self) -> frozenset:
        return frozenset(itertools.accumulate(math.prod(s) for s in self.shapes))


def _squeezed(shape) -> tuple:
    return tuple(n for n in shape if n != 1)


def _canonical(shape) -> tuple:
    """A tensor's shape up to what loading can undo: dimensions of size 1 (nn.Linear's (out, in) for a 1x1
    conv's (out, in, 1, 1)) and, for a matrix, which way round it is stored ((in, out) for (out, in))."""
    squeezed = _squeezed(shape)
    return tuple(sorted(squeezed)) if len(squeezed) == 2 else squeezed


def _as_shape(value: np.ndarray, shape) -> np.ndarray:
    """value read as a tensor of `shape`: reshaped, or transposed first where it is stored the other way round."""
    if _squeezed(value.shape) != _squeezed(shape) and value.ndim >= 2:
        value = np.ascontiguousarray(value.reshape(_squeezed(value.shape)).T)
    return value.reshape(shape)


def _valid_use(record: dict) -> _Use | None:
    """The student's reported use, if it is a list of shapes of bounded total size (with groups, or each
    tensor alone)."""
    value, groups = record.get("layout"), record.get("groups")
    if not isinstance(value, list) or not value:
        return None
    shapes = []
    for shape in value:
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_ELEMENTS for n in shape):
            return None          # more axes than numpy holds, or a length no replay reaches (of an empty tensor)
        shapes.append(tuple(shape))
    if sum(math.prod(s) for s in shapes) > MAX_ELEMENTS:
        return None
    valid_groups = (isinstance(groups, list) and len(groups) == len(shapes)
                    and all(isinstance(g, int) and not isinstance(g, bool) for g in groups)
                    and all(a <= b for a, b in zip(groups, groups[1:])))
    axes = _valid_axes(record.get("axes"), shapes)
    used = tuple(shape if a is None else tuple(shape[j] for j in a) for shape, a in zip(shapes, axes)) \
        if axes else tuple(shapes)
    return _Use(used, tuple(groups) if valid_groups else tuple(range(len(shapes))), axes,
                _parameter_places(record.get("parameters"), len(shapes)))


def _parameter_places(parameters, slots: int) -> frozenset:
    """The places in the order of use of the parameters a report lists (any malformed entry counts as none)."""
    if not isinstance(parameters, list):
        return frozenset()
    return frozenset(item["use"] for item in parameters if isinstance(item, dict) and isinstance(item.get("use"), int)
                     and not isinstance(item["use"], bool) and 0 <= item["use"] < slots)


def _valid_axes(axes, shapes: list) -> tuple:
    """Per tensor, a permutation of its axes or None; () when none is given or any is malformed (then every
    tensor is read as stored)."""
    if not isinstance(axes, list) or len(axes) != len(shapes):
        return ()
    out = []
    for a, shape in zip(axes, shapes):
        if a is None:
            out.append(None)
        elif (isinstance(a, list) and all(isinstance(j, int) and not isinstance(j, bool) for j in a)
              and sorted(a) == list(range(len(shape)))):
            out.append(tuple(a))
        else:
            return ()
    return tuple(out) if any(a is not None for a in out) else ()


def _flat_compatible(use: _Use, reference: _Use) -> bool:
    """The same number of values, and one list's tensor boundaries are among the other's: the tensors can
    be loaded by concatenating or splitting in order."""
    a, b = use.offsets, reference.offsets
    return max(a, default=0) == max(b, default=0) and (a <= b or b <= a)


def _group_compatible(use: _Use, reference: _Use) -> bool:
    """The same groups of shapes, in any order: the tensors can be loaded group by group."""
    return use.group_signatures == reference.group_signatures


def _compatible(use: _Use, reference: _Use | None) -> bool:
    return reference is not None and (_group_compatible(use, reference) or _flat_compatible(use, reference))


def _replay(shapes, case: dict) -> list[np.ndarray]:
    """The values the kernel set, tensor by tensor, from the case's seed and the student's layout."""
    stream = FillStream(case["seed"], case.get("zero", ()), sum(math.prod(shape) for shape in shapes))
    return [stream(shape).astype(np.float32) for shape in shapes]


class _Lazy:
    """A value computed on first use (the student's values: 21.8M for a ResNet-34)."""

    def __init__(self, compute):
        self.compute, self.value = compute, None

    def get(self):
        if self.value is None:
            self.value = self.compute()
        return self.value


@dataclass(frozen=True)
class _Loading:
    arrays: list
    way: tuple           # how the student's tensors were read, for the cache key


_AS_IS = _Loading([], ("as is",))     # the student's tensors read as they are: see ModuleSpec._loaded_reply


def _loadings(values: list[np.ndarray], use: _Use, reference: _Use) -> Iterator[_Loading]:
    """Ways to read the student's tensors as the reference's. Group by group first: groups of the same shapes
    in the order they were used (a module may use its tensors in another order than the reference where
    that changes nothing: a shortcut computed first, a weight reshaped before the input reaches it). Then
    in order, concatenated and split by size (a ModuleList of per-channel convolutions for one grouped
    convolution), where a 2-D tensor that sits where the reference has the same numbers transposed may also
    be read transposed (x @ W with W of shape (in, out) for nn.Linear's (out, in))."""
    grouped = _group_loading(values, use, reference) if _group_compatible(use, reference) else None
    if grouped is not None:
        yield grouped
    if _flat_compatible(use, reference):
        for loading in _flat_loadings(values, use.shapes, reference.shapes):
            if grouped is None or loading.way != ("flat", ()) or grouped.way != ("grouped", True):
                yield loading
    for order, flipped in _role_orders(use, reference):
        yield _role_loading(values, reference, order, flipped)


def _role_loading(values: list[np.ndarray], reference: _Use, order: tuple, flipped: bool) -> _Loading:
    return _Loading([_as_shape(values[i], shape) for i, shape in zip(order, reference.shapes)],
                    ("roles", order, flipped))


def _role_orders(use: _Use, reference: _Use) -> list[tuple[tuple, bool]]:
    """The student's tensor for each reference tensor, where the student reads a run of vectors of one shape in
    another order than the reference: a BatchNorm written by hand that reads its weight before its running variance
    (self.gamma * (x - mean) / torch.sqrt(var + eps) + self.beta), or its variance before its mean
    (inv_std = torch.rsqrt(var + eps) first), for F.batch_norm's (running mean, running variance, weight, bias).
    Within such a run that the student reads in several calls (one call, F.batch_norm's, fixes the order),
    buffers are read as the reference's buffers and parameters as its parameters, each in order or each in
    reverse order (the same way in every run: one class of BatchNorm); every other tensor one to one. None of
    them when no run is read so, or the shapes or roles do not allow it; the order of use itself is left out.
    Each with whether it reverses any order (those are less likely: tried after every variant's exact reading)."""
    n = len(reference.shapes)
    if len(use.shapes) != n or not use.params or not reference.params:
        return []
    runs, i = [], 0
    while i < n:
        shape, j = _canonical(reference.shapes[i]), i + 1
        while len(shape) <= 1 and j < n and _canonical(reference.shapes[j]) == shape:
            j += 1
        mine = list(range(i, j))
        if any(_canonical(use.shapes[k]) != shape for k in mine):
            return []
        roles = [k in reference.params for k in mine]
        if sorted(roles) != sorted(k in use.params for k in mine):
            return []
        runs.append((mine, roles, len({use.groups[k] for k in mine}) > 1))
        i = j
    if not any(free for _, _, free in runs):
        return []
    orders = []
    for flip_buffers, flip_parameters in ((False, False), (True, False), (False, True), (True, True)):
        order = []
        for mine, roles, free in runs:
            if not free:
                order += mine
                continue
            parameters = [k for k in mine if k in use.params]
            buffers = [k for k in mine if k not in use.params]
            parameters = iter(parameters[::-1] if flip_parameters else parameters)
            buffers = iter(buffers[::-1] if flip_buffers else buffers)
            order += [next(parameters) if role else next(buffers) for role in roles]
        if order != list(range(n)) and tuple(order) not in [o for o, _ in orders]:
            orders.append((tuple(order), flip_buffers or flip_parameters))
    return orders


def _group_pairs(use: _Use, reference: _Use) -> list[tuple[int, int]]:
    """(reference slot, student tensor) pairs: the k-th group of the student's with given shapes read as the
    reference's k-th group of those shapes."""
    queues: dict[tuple, list[list[int]]] = {}
    for members in use.members():
        queues.setdefault(use.signature(members), []).append(members)
    pairs = []
    for members in reference.members():
        pairs += zip(members, queues[reference.signature(members)].pop(0))
    return pairs


def _group_loading(values: list[np.ndarray], use: _Use, reference: _Use) -> _Loading:
    arrays: list = [None] * len(reference.shapes)
    in_order = True
    for slot, index in _group_pairs(use, reference):
        in_order = in_order and slot == index and use.shapes[index] == reference.shapes[slot]
        arrays[slot] = _as_shape(values[index], reference.shapes[slot])
    return _Loading(arrays, ("grouped", in_order))


def _flat_loadings(values: list[np.ndarray], shapes, reference_shapes) -> Iterator[_Loading]:
    starts = dict(zip(itertools.accumulate([0] + [math.prod(s) for s in reference_shapes[:-1]]), reference_shapes))
    position, candidates = 0, []
    for index, shape in enumerate(shapes):
        target = starts.get(position)
        if (len(shape) == 2 and shape[0] != shape[1] and target is not None and tuple(shape) != tuple(target)
                and tuple(n for n in target if n != 1) == (shape[1], shape[0])):
            candidates.append(index)
        position += math.prod(shape)
    sizes = [math.prod(s) for s in reference_shapes]
    candidates = candidates[:MAX_TRANSPOSES]
    ways = sorted(itertools.product((False, True), repeat=len(candidates)),
                  key=lambda flags: (0 < sum(flags) < len(flags), sum(flags)))   # none, all, then the mixes
    for flags in ways:
        transposed = tuple(i for i, flag in zip(candidates, flags) if flag)
        yield _Loading(_flat_loading(values, reference_shapes, transposed), ("flat", transposed))


def _flat_loading(values: list[np.ndarray], reference_shapes, transposed: tuple) -> list[np.ndarray]:
    sizes = [math.prod(s) for s in reference_shapes]
    flat = np.concatenate([(values[i].T if i in transposed else values[i]).ravel() for i in range(len(values))])
    pieces = np.split(flat, list(itertools.accumulate(sizes[:-1])))
    return [p.reshape(s) for p, s in zip(pieces, reference_shapes)]


def _apply_way(arrays: list[np.ndarray], use: _Use, reference: _Use, way: tuple) -> list[np.ndarray]:
    """Arrays in the student's order of use (directions, buffers after training) read as the reference's, the
    way the student's values were read for that reference run."""
    if way[0] == "grouped":
        return _group_loading(arrays, use, reference).arrays
    if way[0] == "flat":
        return _flat_loading(arrays, reference.shapes, way[1])
    if way[0] == "roles":
        return [_as_shape(arrays[i], shape) if isinstance(arrays[i], np.ndarray) else arrays[i]
                for i, shape in zip(way[1], reference.shapes)]
    return list(arrays)


def _components(use: _Use, reference: _Use, way: tuple) -> list[tuple[list[int], list[int]]]:
    """The smallest sets of student tensors and reference tensors that hold the same values under a loading:
    one to one as they are or group by group, runs between the boundaries both share when concatenated and
    split (per-channel convolutions for one grouped convolution)."""
    if way[0] == "grouped":
        return [([index], [slot]) for slot, index in _group_pairs(use, reference)]
    if way[0] == "roles":
        return [([index], [slot]) for slot, index in enumerate(way[1])]
    if way[0] != "flat":
        return [([i], [i]) for i in range(len(use.shapes))]
    ends_a = list(itertools.accumulate(math.prod(s) for s in use.shapes))
    ends_b = list(itertools.accumulate(math.prod(s) for s in reference.shapes))
    shared = sorted(set(ends_a) & set(ends_b))
    out, i, j = [], 0, 0
    for end in shared:
        mine, theirs = [], []
        while i < len(ends_a) and ends_a[i] <= end:
            mine.append(i)
            i += 1
        while j < len(ends_b) and ends_b[j] <= end:
            theirs.append(j)
            j += 1
        out.append((mine, theirs))
    return out


def _slot_sketches(parameters, slots: int) -> list:
    """Per tensor of the order of use, its gradient's sketch where it is a trainable parameter that has a
    gradient, else None; parameters reported in any other form count as none."""
    out: list = [None] * slots
    if not isinstance(parameters, list):
        return out
    for item in parameters:
        if not isinstance(item, dict):
            continue
        use, sketch = item.get("use"), item.get("sketch")
        if (isinstance(use, int) and not isinstance(use, bool) and 0 <= use < slots
                and isinstance(sketch, (int, float)) and not isinstance(sketch, bool)):
            try:
                value = float(sketch)        # the wire carries integers of 400 digits: no float holds them
            except OverflowError:
                continue
            if math.isfinite(value):
                out[use] = value
    return out


def _training_fault(record: dict, want: dict, use: _Use, reference: _Use, way: tuple, rtol: float) -> str | None:
    """With the output and input gradient right: does the module train as the reference does? None, or
    NOT_TRAINABLE (a reference parameter whose student tensors have no gradient or another one), or
    WRONG_TRAIN_MODE (in a case with a `train_x`: the output in training mode or the running statistics differ)."""
    mine = _slot_sketches(record.get("parameters"), len(use.shapes))
    theirs = _slot_sketches(want["parameters"], len(reference.shapes))
    sums = []
    for students, slots in _components(use, reference, way):
        trained = [theirs[j] for j in slots if theirs[j] is not None]
        if not trained:
            continue
        if any(mine[i] is None for i in students):
            return NOT_TRAINABLE
        sums.append((sum(mine[i] for i in students), sum(trained)))
    scale = max([abs(w) for _, w in sums] + [1e-6])
    if any(abs(got - w) > SKETCH_RTOL * scale for got, w in sums):
        return NOT_TRAINABLE
    if "train_y" not in want:
        return None
    if not _close(record.get("train_y"), want["train_y"], rtol):
        return WRONG_TRAIN_MODE
    state = record.get("state")
    if not isinstance(state, list) or len(state) != len(use.shapes):
        return WRONG_TRAIN_MODE
    if way[0] in ("grouped", "flat", "roles"):
        stored = [s if isinstance(s, np.ndarray) and s.shape == shape and s.dtype.kind == "f"
                  else np.full(shape, np.nan, np.float32) for s, shape in zip(state, use.stored_shapes)]
        state = _apply_way(use.as_used(stored), use, reference, way)
    for got, expected in zip(state, want["state"]):
        if expected is not None and not _close(got, expected, rtol):
            return WRONG_TRAIN_MODE
    return None


def reference_use(spec: ModuleSpec, case: dict, switches: tuple) -> _Use | None:
    """The reference's order of use (with `switches`) on the case's input shape. For the first right order, the
    case's reply records it (that reply is nearly always needed: a right module is compared with it, and a
    wrong one's feedback starts from it); any other variant is traced once per configuration and shape."""
    if switches == spec.orders[0]:
        record = spec.reply(case, switches)
        return _Use(tuple(map(tuple, record["layout"])), tuple(record["groups"]), (),
                    _parameter_places(record["parameters"], len(record["layout"])))
    x = np.asarray(case["x"])
    key = (_Same(spec), json_key(case["config"]), switches, x.shape, str(x.dtype))
    return _LAYOUTS.get(key, lambda: traced_use(spec, case["config"], switches, x.shape, x.dtype))


def traced_use(spec: ModuleSpec, config, switches: tuple, shape: tuple, dtype) -> _Use | None:
    """The reference's use, traced on the CPU with every tensor zero (the order of use depends on shapes, not
    values; torch's meta device gives the same order but runs each operation through Python decompositions,
    several times slower); None when this variant cannot be built or run."""
    try:
        module = _materialise(spec, config, switches)
        with torch.no_grad():
            for tensor in itertools.chain(module.parameters(), module.buffers()):
                tensor.zero_()
        module.eval()
        recorder = FirstUse(module)
        with recorder, torch.no_grad():
            module(torch.zeros(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype))
    except (RuntimeError, ValueError, TypeError):
        if not switches or switches in spec.orders:
            raise
        return None
    parameters = {id(p) for p in module.parameters() if p.requires_grad}
    return _Use(tuple(map(tuple, recorder.layout)), tuple(recorder.groups), (),
                frozenset(i for i, t in enumerate(recorder.tensors) if id(t) in parameters))


_GENERAL = {
    NO_GRADIENT: ("The output is right but the gradient with respect to the input is not: something in the forward "
                  "pass stops or changes the gradient (.detach(), torch.no_grad(), .data, an in-place change of a "
                  "tensor autograd needs, or numpy).",
                  "输出正确，但对输入的梯度不对：前向计算中有操作阻断或改变了梯度(.detach()、torch.no_grad()、.data、"
                  "对 autograd 需要的张量做了原地修改，或转成了 numpy)。"),
    WRONG_SHAPE: ("The output has the wrong shape for the hidden test inputs.", "在隐藏测试输入上，输出的形状不对。"),
    WRONG_PARAMETERS: ("Its learnable parameters are not those of the asked-for architecture (their number, shapes "
                       "or order of use differ); check every layer against the statement.",
                       "可学习参数与题目要求的结构不一致（数量、形状或使用顺序不同）；请逐层对照题目检查。"),
    WRONG_OUTPUT: ("Its parameters have the right shapes, but with the same parameters its output differs from the "
                   "asked-for module's: check the order of the operations, the activations and the connections.",
                   "参数形状正确，但在相同参数下输出与题目要求的模块不同：请检查运算顺序、激活函数和连接方式。"),
    RAISED: ("Building or running it raised an error on a hidden test case.", "在隐藏测试用例上构建或运行时出错。"),
    NOT_TRAINABLE: ("With the same weights its output is right, but its weights are not all trainable parameters "
                    "that receive the gradient: a weight kept as a buffer (register_buffer), frozen "
                    "(requires_grad=False) or cut from autograd (.detach(), .data, torch.no_grad()) gives an "
                    "optimizer nothing to train. Make every weight an nn.Parameter (or use nn layers) and use it "
                    "directly in forward.",
                    "在相同权重下输出正确，但并非所有权重都是能接收梯度的可训练参数：用 register_buffer 保存的权重、"
                    "被冻结（requires_grad=False）或被切断梯度（.detach()、.data、torch.no_grad()）的权重，"
                    "优化器都无法训练。请把每个权重都设为 nn.Parameter（或使用 nn 中的层），并在 forward 中直接使用它。"),
    WRONG_TRAIN_MODE: ("In evaluation mode it is right, but in training mode (model.train()) it is not: BatchNorm must "
                       "normalise with the batch statistics and update its running mean and variance (momentum "
                       "0.1), as nn.BatchNorm2d does.",
                       "在评估模式下正确，但在训练模式（model.train()）下不正确：BatchNorm 应使用当前批次的统计量做"
                       "归一化，并更新其滑动均值和方差（momentum 0.1），与 nn.BatchNorm2d 一致。"),
}


@dataclass(frozen=True)
class ModuleCheck(Check):
    """Scores the per-case answer notes `judge` produced (in the grader): full credit per CORRECT case,
    a known mistake's fraction, half for a right output with a wrong gradient, nothing at all when any case
    shows the module cannot be trained as asked (WHOLE_PART); feedback for that note, else for the most
    common failing note."""
    name: str
    mistakes: tuple = field(default=())          # ((note, fraction, feedback_en, feedback_zh), ...)
    all_or_nothing: bool = False                 # any failing case costs the whole part
    compares_verdicts = True                     # generation checks the judge accepts the reference itself

    def grade(self, got, want) -> Outcome:
        if not isinstance(got, list) or len(got) != len(want):
            return Outcome(0.0, "WRONG_TYPE", say("The module could not be tested.", "无法测试该模块。"))
        if got and all(n == NOT_ANSWERED for n in got):
            return Outcome(0.0, NOT_ANSWERED, say(f"Not answered: {self.name} still raises NotImplementedError.",
                                                  f"未作答：{self.name} 仍抛出 NotImplementedError。"))
        known = {note: (fraction, en, zh) for note, fraction, en, zh in self.mistakes}
        credit = [1.0 if n == CORRECT else 0.5 if n == NO_GRADIENT else known.get(n, (0.0,))[0] for n in got]
        if all(n == CORRECT for n in got):
            return correct()
        whole = [n for n in got if n in WHOLE_PART]
        failing = whole[0] if whole else Counter(n for n in got if n != CORRECT).most_common(1)[0][0]
        en, zh = known[failing][1:] if failing in known else _GENERAL.get(failing, _GENERAL[WRONG_OUTPUT])
        passed = sum(n == CORRECT for n in got)
        fraction = 0.0 if self.all_or_nothing or whole else sum(credit) / len(credit)
        return Outcome(fraction, failing,
                       say(f"{self.name}: {passed} of {len(got)} hidden test cases pass. {en}",
                           f"{self.name}:{len(got)} 个隐藏测试用例中通过 {passed} 个。{zh}"))


def module_case(rng, config: list, x: np.ndarray, zero=()) -> dict:
    """One hidden test case: the builder's arguments, the input, and fresh seeds for the fill and the cotangent."""
    case = {"config": list(config), "x": x, "seed": rng.getrandbits(63), "cotangent_seed": rng.getrandbits(63)}
    if zero:
        case["zero"] = [list(z) for z in zero]
    return case


def module_part(part_id: str, points: float, title: Text, spec: ModuleSpec, *, cases: Callable,
                public_cases: Callable, all_or_nothing: bool = False):
    """A part graded by behaviour: `cases(rng)` draws the hidden cases (one of them, where the reference has
    BatchNorm, also run in training mode on a batch of TRAIN_BATCH drawn here), `public_cases()` the self-check's (the same for every student, so
    their references are computed once per process)."""
    from hwkit.checks import Array, Cases, Fields
    from hwkit.records import Part
    from hwkit.probes import module_probe

    def verdicts(reply, probe) -> list:
        if not isinstance(reply, list) or len(reply) != len(probe.inputs["cases"]):
            return []
        return [spec.judge(record, case) for record, case in zip(reply, probe.inputs["cases"])]

    def hidden(rng) -> list[dict]:
        drawn = cases(rng)
        index = spec.train_case(drawn)
        if index is not None:
            x = np.asarray(drawn[index]["x"])
            batch = np.random.default_rng(rng.getrandbits(63)).standard_normal((TRAIN_BATCH, *x.shape[1:]))
            drawn[index] = {**drawn[index], "train_x": batch.astype(x.dtype)}
        return drawn

    close = Array(rtol=1e-3, atol=1e-4)
    return Part(part_id, points, title,
                probe=lambda rng: module_probe(spec.name, hidden(rng)),
                reference=lambda probe: [CORRECT] * len(probe.inputs["cases"]),
                check=spec.check(all_or_nothing), interpret=verdicts, kind="code", hidden_inputs=True,
                public_probe=lambda rng: module_probe(spec.name, public_cases()),
                public_reference=lambda probe: spec.public_replies(probe.inputs["cases"]),
                public_check=Cases(Fields({"y": (2.0, close), "grad": (1.0, close)})))

"""A module's behaviour on the grader's terms, the same code in the kernel (on the student's module) and in
the grader (on the reference module, hwkit/behaviour.py).

Every floating parameter and buffer is set, right before the first torch call that reads it, to the next
values of one random stream seeded by the grader (FillStream: tensors of two or more dimensions longer than 1
uniform with variance 1/fan_in, vectors in [0.5, 1.5), also when kept as (1, C, 1, 1), so BatchNorm's running
variance is positive); the module's
output and the gradient of <output, cotangent> with respect to the input come back, with the shapes of
the tensors in order of use (the layout). Those values depend only on the seed and the layout, so the
grader can replay them and load them into the reference module, in order and by shape, and run it on the
same input: a module that is not the asked-for one gives other outputs, whatever it says about itself.

A module is also something one trains. The same backward pass gives every trainable parameter its gradient
of <output, cotangent>; each comes back as its inner product with directions the grader's seed gives (a
stream of Directions over the layout: the whole gradient of a ResNet-34 is 87 MB, the reply's cap 8 MB), with
the parameter's place in the layout, in the order of module.parameters(). A weight kept as a buffer, frozen
or detached has no gradient to report. A case that carries a `train_x` is then run once more, on that input,
in training mode: the output (BatchNorm's batch statistics) and every buffer of the layout after that forward
pass (the running statistics it updated) come back too. The grader computes the same for the reference and compares."""
from __future__ import annotations

import itertools
import math
import weakref

import numpy as np
import torch
from torch.overrides import TorchFunctionMode


class FillStream:
    """The values the grader's seed gives, tensor by tensor: call with a shape, get the next array.
    `zero` lists [start, stop) ranges of positions in the stream that are set to 0 (a part switched off);
    a range with a negative start counts from the end of the stream, `total` values long (stop 0: the end)."""

    def __init__(self, seed: int, zero=(), total: int | None = None):
        self.generator = np.random.Generator(np.random.PCG64(seed))
        self.zero = [_absolute(int(a), int(b), total) for a, b in zero]
        self.position = 0

    def __call__(self, shape) -> np.ndarray:
        shape = tuple(int(n) for n in shape)
        n = math.prod(shape)
        values = self.generator.random(n)
        # A weight has two axes or more beyond those of length 1; a vector kept in a broadcastable shape (BatchNorm's
        # running variance as (1, C, 1, 1)) is a vector, positive.
        if sum(n != 1 for n in shape) >= 2:  # in place, the same arithmetic as (2 * v - 1) * scale: the same values
            values *= 2
            values -= 1
            values *= math.sqrt(3.0 / max(1, n // max(1, shape[0])))
        else:
            values += 0.5
        for start, stop in self.zero:
            lo, hi = max(start, self.position), min(stop, self.position + n)
            if lo < hi:
                values[lo - self.position:hi - self.position] = 0.0
        self.position += n
        return values.reshape(shape)


class Directions:
    """The directions the parameters' gradients are reported along, tensor by tensor of the layout, from the
    grader's seed (sketch_seed): per tensor, PERIOD float32 values uniform in [-0.5, 0.5) (fewer for a smaller
    tensor), repeated over the tensor's elements in order. `period(shape)` gives the next tensor's values
    (what the kernel needs: a ResNet-34 has 21.8M), `__call__(shape)` the whole direction."""
    PERIOD = 1021

    def __init__(self, seed: int):
        self.generator = np.random.Generator(np.random.PCG64(seed))

    def period(self, shape) -> np.ndarray:
        values = self.generator.random(min(math.prod(int(n) for n in shape), self.PERIOD), dtype=np.float32)
        values -= 0.5
        return values

    def __call__(self, shape) -> np.ndarray:
        shape = tuple(int(n) for n in shape)
        return np.resize(self.period(shape), shape)


def from_end(zero) -> bool:
    return any(int(start) < 0 for start, _ in zero)


def _absolute(start: int, stop: int, total: int | None) -> tuple[int, int]:
    if start >= 0:
        return start, stop
    if total is None:
        raise ValueError("a range counted from the end needs the stream's length")
    return total + start, total + stop


def _tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


# Reading these says nothing about a tensor's values: a forward that asks a weight's dtype or shape first has
# not used it yet (x.to(self.conv1.weight.dtype) is not a use of conv1's weight).
METADATA = frozenset({"shape", "dtype", "device", "ndim", "layout", "requires_grad", "is_leaf", "grad_fn", "names",
                      "is_cuda", "is_sparse", "is_quantized", "is_meta", "is_mkldnn", "itemsize", "nbytes",
                      "size", "dim", "ndimension", "numel", "nelement", "__len__", "stride", "element_size",
                      "storage_offset", "is_contiguous", "is_floating_point", "is_complex", "get_device"})


def _reads_values(func) -> bool:
    name = getattr(func, "__name__", "")
    if name == "__get__":
        name = getattr(getattr(func, "__self__", None), "__name__", "")
    return name not in METADATA


class FirstUse(TorchFunctionMode):
    """Sets each floating parameter and buffer of `module` to `source(shape)` right before the first torch
    call that reads it (source None: only records), and records their shapes in that order in `layout`."""

    def __init__(self, module: torch.nn.Module, source=None):
        super().__init__()
        tensors = list(module.parameters()) + list(module.buffers())
        self.pending = {id(t): t for t in tensors if t.is_floating_point()}
        self.source = source
        self.layout: list[list[int]] = []
        self.tensors: list[torch.Tensor] = []    # the tensors of `layout`, in order of first use
        self.groups: list[int] = []          # per tensor in `layout`: the torch call that first read it
        self.axes: list[list[int] | None] = []   # per tensor in `layout`: see permuted_axes
        self.calls = 0
        # Views that only reorder the axes of a tensor of `layout`: id -> (the view, its tensor's index, the tensor
        # its order is read from). A view reordered again (w.transpose(0, 2).transpose(1, 3), w.movedim(-1, 0)
        # .movedim(-1, 1)) gives the tensor the order of the last one, the order the weight is used in (none when it
        # is the stored one). A first use that gives a copy of the same shape (w.double(), w.contiguous(), w * 0.5)
        # stands in for the tensor: the order of the views of that copy is the tensor's. Weak references: a copy
        # is freed when the forward pass no longer needs it.
        self.views: dict[int, tuple[weakref.ref, int, weakref.ref]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        first = []
        if self.pending and _reads_values(func):
            first = [self.pending.pop(id(t)) for t in _tensors((args, kwargs)) if id(t) in self.pending]
            for tensor in first:
                self._first_use(tensor)
            self.calls += bool(first)
        viewed = None
        if self.views and not first:
            inputs = list(_tensors((args, kwargs)))
            entry = self.views.get(id(inputs[0])) if len(inputs) == 1 else None
            if entry is not None and entry[0]() is inputs[0] and entry[2]() is not None:
                viewed = entry
        result = func(*args, **kwargs)
        if len(first) == 1:
            self.axes[-1] = permuted_axes(first[0], result)
            if self.axes[-1] is not None:
                self._track(result, len(self.axes) - 1, first[0])
            elif (isinstance(result, torch.Tensor) and result is not first[0] and result.shape == first[0].shape
                  and result.ndim >= 2):
                self._track(result, len(self.axes) - 1, result)
        elif viewed is not None:
            _, index, base = viewed
            order = _permutation(base(), result)
            if order is not None:
                self.axes[index] = None if order == sorted(order) else order
                self._track(result, index, base())
        return result

    def _track(self, view: torch.Tensor, index: int, base: torch.Tensor) -> None:
        try:
            self.views[id(view)] = (weakref.ref(view), index, weakref.ref(base))
        except TypeError:          # a result that takes no weak reference is not followed
            pass

    def _first_use(self, tensor: torch.Tensor) -> None:
        self.layout.append(list(tensor.shape))
        self.tensors.append(tensor)
        self.groups.append(self.calls)
        self.axes.append(None)
        if self.source is not None:
            values = np.asarray(self.source(tuple(tensor.shape)))
            with torch.no_grad():            # copy_ converts the dtype as .to() would, without a temporary
                tensor.copy_(torch.from_numpy(values).reshape(tensor.shape))


def permuted_axes(tensor: torch.Tensor, result) -> list[int] | None:
    """When the first call on `tensor` only reordered its axes (a kernel stored in TensorFlow's (K, K, C_in,
    C_out) and .permute(3, 2, 0, 1)-ed, .T, transpose, movedim): the axes p with result = tensor.permute(p),
    read from the view's sizes and strides. None for anything else. The grader loads the reference through
    it; a false one only makes the outputs disagree."""
    axes = _permutation(tensor, result)
    return None if axes is None or axes == sorted(axes) else axes


def _permutation(tensor: torch.Tensor, result) -> list[int] | None:
    """The axes p with result = tensor.permute(p), the identity included, read from the view's sizes and
    strides; None when `result` is no such view of `tensor`."""
    if (not isinstance(result, torch.Tensor) or result is tensor or result.ndim != tensor.ndim or result.ndim < 2
            or result.data_ptr() != tensor.data_ptr() or result.numel() != tensor.numel()):
        return None
    free = list(zip(tensor.shape, tensor.stride()))
    axes = []
    for size_stride in zip(result.shape, result.stride()):
        matches = [j for j, pair in enumerate(free) if pair == size_stride and j not in axes]
        if not matches:
            return None
        axes.append(matches[0])
    return axes


def sketch_seed(cotangent_seed: int) -> int:
    """The seed of the directions the parameters' gradients are reported along (derived from the cotangent's)."""
    return int(np.random.SeedSequence([int(cotangent_seed), 1]).generate_state(1, np.uint64)[0] >> 1)


def run(module: torch.nn.Module, x, source, cotangent_seed: int, *, train_x=None, directions=None) -> dict:
    """`module` in eval mode, its tensors set at first use from `source`, run on x: the layout, the output y,
    the gradient of sum(y * c) with respect to x (c drawn from `cotangent_seed` in y's shape; None when y
    does not depend on x through autograd) and the trainable parameters' gradients of it (`parameters`, see
    parameter_sketches); given `train_x`, also the output on it in training mode and the layout's buffers
    after that pass."""
    module.eval()
    _initialise_lazy(module, torch.as_tensor(np.asarray(x)))
    for parameter in module.parameters():
        parameter.grad = None
    x = torch.as_tensor(np.asarray(x)).clone().requires_grad_(True)
    first_use = FirstUse(module, source)
    with first_use:
        y = module(x)
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the module returned {type(y).__name__}, not a tensor")
    grad = None
    if y.requires_grad:
        cotangent = np.random.Generator(np.random.PCG64(cotangent_seed)).standard_normal(tuple(y.shape))
        (y * torch.from_numpy(cotangent).to(y.dtype)).sum().backward()
        grad = x.grad
    if directions is None:
        directions = Directions(sketch_seed(cotangent_seed))
    record = {"layout": first_use.layout, "groups": first_use.groups, "axes": first_use.axes, "y": y.detach(),
              "grad": grad, "parameters": parameter_sketches(module, first_use.tensors, directions)}
    if train_x is not None:
        record.update(train_mode(module, torch.as_tensor(np.asarray(train_x)), first_use.tensors))
    return record


def _initialise_lazy(module: torch.nn.Module, x: torch.Tensor) -> None:
    """Lazy layers (nn.LazyConv2d, nn.LazyBatchNorm2d) have tensors without a shape until the module's first
    forward pass: that pass runs once, without a gradient, before the tensors are set at first use."""
    lazy = torch.nn.parameter.UninitializedTensorMixin
    if any(isinstance(t, lazy) for t in itertools.chain(module.parameters(), module.buffers())):
        with torch.no_grad():
            module(x)


def parameter_sketches(module: torch.nn.Module, used: list, directions) -> list[dict]:
    """Per trainable parameter, in the order of module.parameters(): its place in the order of use (`use`,
    -1 when never used), its shape, and its gradient's inner product with the direction `directions` gives
    the tensor at that place (directions are drawn for every tensor of the layout, in order; None: no
    gradient)."""
    draw = getattr(directions, "period", directions)
    arrays = [np.asarray(draw(tuple(t.shape))).reshape(-1) for t in used]
    place = {id(t): i for i, t in enumerate(used)}
    out = []
    for parameter in module.parameters():
        if not parameter.requires_grad:
            continue
        use = place.get(id(parameter), -1)
        sketch = None
        if parameter.grad is not None and use >= 0:
            sketch = _inner(parameter.grad.detach().reshape(-1), torch.from_numpy(arrays[use]))
        out.append({"use": use, "shape": list(parameter.shape), "sketch": sketch})
    return out


def _inner(gradient: torch.Tensor, direction: torch.Tensor) -> float:
    """<gradient, direction repeated over it> (a whole direction is repeated once): the gradient folded into
    rows of the direction's length and summed, then one dot product."""
    n, m = gradient.numel(), direction.numel()
    direction = direction.to(gradient.dtype)
    rows = n // m
    total = torch.dot(gradient[:rows * m].view(rows, m).sum(0), direction) if rows else gradient.new_zeros(())
    if n > rows * m:
        total = total + torch.dot(gradient[rows * m:], direction[:n - rows * m])
    return float(total)


def train_mode(module: torch.nn.Module, x: torch.Tensor, used: list) -> dict:
    """One forward pass in training mode (no gradient): the output, and each tensor of the order of use that
    is not a parameter (BatchNorm's running statistics) as it is after that pass (None for parameters). A
    buffer is read by its name after the pass: a BatchNorm written by hand may update its running mean by
    assigning a new tensor (self.running_mean = (1 - m) * self.running_mean + m * mean), not in place."""
    parameters = {id(p) for p in module.parameters()}
    names = {id(b): name for name, b in module.named_buffers(remove_duplicate=False)}
    module.train()
    try:
        with torch.no_grad():
            y = module(x)
    finally:
        module.eval()
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"the module returned {type(y).__name__}, not a tensor")
    after = dict(module.named_buffers(remove_duplicate=False))
    state = []
    for tensor in used:
        if id(tensor) not in parameters:
            current = after.get(names.get(id(tensor)), tensor)
            tensor = current if isinstance(current, torch.Tensor) and current.shape == tensor.shape else tensor
        state.append(None if id(tensor) in parameters else tensor.detach().clone())
    return {"train_y": y.detach(), "state": state}


def behaviour(module: torch.nn.Module, x, *, seed: int, cotangent_seed: int, zero=(), train_x=None) -> dict:
    """What the kernel reports for the student's module: `run` with the grader's FillStream. Ranges to zero
    counted from the end need the layout first: one more forward pass, that only records."""
    total = None
    if from_end(zero):
        total = sum(math.prod(shape) for shape in layout(module, torch.as_tensor(np.asarray(x))))
    return run(module, x, FillStream(seed, zero, total), cotangent_seed, train_x=train_x)


def layout(module: torch.nn.Module, x) -> list[list[int]]:
    """The shapes of `module`'s floating tensors in order of first use on x (any device, meta included:
    nothing is set)."""
    return use_order(module, x)[0]


def use_order(module: torch.nn.Module, x) -> tuple[list[list[int]], list[int]]:
    """The layout and, per tensor, the torch call that first read it (tensors read together form a group)."""
    module.eval()
    _initialise_lazy(module, x)
    recorder = FirstUse(module)
    with recorder, torch.no_grad():
        module(x)
    return recorder.layout, recorder.groups

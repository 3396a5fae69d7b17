"""Data on the wire between the grader and a kernel: JSON values, with arrays as .npy bytes in the
message's binary buffers. Both sides use this module; nothing is ever pickled or evaluated.

    encode(value) -> (json_value, buffers)      arrays become {"__array__": i}, buffers[i] = .npy bytes
    decode(json_value, buffers) -> value        bounded in depth, size and count; raises WireError

Markers are dicts with one reserved key: {"__array__": i}, {"__float__": "nan"}, {"__int__": "123..."},
{"__unsupported__": "TypeName"}, {"__error__": "Type: message"} (a per-case error, kept as a dict)."""
from __future__ import annotations

import io
import math

import numpy as np

MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_BUFFERS = 4096
MAX_INT_DIGITS = 400
NUMERIC_KINDS = "biufc"
_MARKERS = frozenset({"__array__", "__float__", "__int__", "__unsupported__"})


class WireError(ValueError):
    """The data cannot be sent or read: the message says why."""


def valid_text(text: str) -> str:
    """text with lone surrogates (which JSON can carry as escapes, and UTF-8 cannot encode) replaced."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def scrub(value, depth: int = 0):
    """A JSON-like value (a notebook, an output) with every string made valid text, in place where it can."""
    if isinstance(value, str):
        return valid_text(value)
    if depth > 200:
        return value
    if isinstance(value, dict):
        for key in list(value):
            clean = scrub(value[key], depth + 1)
            if isinstance(key, str) and not key.isascii() and valid_text(key) != key:
                del value[key]
                key = valid_text(key)
            value[key] = clean
    elif isinstance(value, list):
        for i, item in enumerate(value):
            value[i] = scrub(item, depth + 1)
    return value


def npy_bytes(array: np.ndarray) -> bytes:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise WireError(f"an array of dtype {array.dtype} cannot be sent")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _as_numpy(value):
    """A torch tensor as a numpy array (bfloat16 and other numpy-less dtypes as float32), else None."""
    module = type(value).__module__ or ""
    if not module.startswith("torch") or not hasattr(value, "detach"):
        return None
    tensor = value.detach().cpu()
    try:
        return tensor.numpy()
    except (TypeError, RuntimeError):
        return tensor.float().numpy()


def encode(value) -> tuple[object, list[bytes]]:
    buffers: list[bytes] = []
    return _encode(value, buffers, 0), buffers


def _encode(x, buffers: list[bytes], depth: int):
    if depth > MAX_DEPTH:
        raise WireError("the answer is nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**63 else {"__int__": str(x)[:MAX_INT_DIGITS + 1]}
    if isinstance(x, float):
        return x if math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, np.generic):
        return _encode(x.item(), buffers, depth + 1)
    array = x if isinstance(x, np.ndarray) else _as_numpy(x)
    if array is not None:
        if array.dtype.kind not in NUMERIC_KINDS:
            return {"__unsupported__": f"array of {array.dtype}"}
        buffers.append(npy_bytes(array))
        return {"__array__": len(buffers) - 1}
    if (type(x).__module__ or "").startswith("sympy"):
        return str(x)
    if isinstance(x, (list, tuple)):
        return [_encode(v, buffers, depth + 1) for v in x]
    if isinstance(x, dict):
        if _MARKERS.intersection(map(str, x)):
            return {"__unsupported__": "dict with a reserved key"}
        return {str(k): _encode(v, buffers, depth + 1) for k, v in x.items()}
    return {"__unsupported__": type(x).__name__[:80]}


def decode(value, buffers, *, max_array_bytes: int | None = None):
    """The inverse of encode. Every buffer must be a well-formed .npy of a numeric dtype, referenced once."""
    if len(buffers) > MAX_BUFFERS:
        raise WireError("too many arrays in one message")
    used: set[int] = set()
    budget = [MAX_NODES]
    return _decode(value, list(buffers), used, budget, 0, max_array_bytes)


def _decode(x, buffers, used, budget, depth, max_array_bytes):
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise WireError("the data is nested too deeply or has too many items")
    if isinstance(x, str):
        return valid_text(x)
    if x is None or isinstance(x, (bool, int, float)):
        return x
    if isinstance(x, list):
        return [_decode(v, buffers, used, budget, depth + 1, max_array_bytes) for v in x]
    if not isinstance(x, dict):
        raise WireError(f"unexpected {type(x).__name__} in the data")
    if len(x) == 1:
        (key, inner), = x.items()
        if key == "__array__":
            return _array(inner, buffers, used, max_array_bytes)
        if key == "__float__":
            if inner not in ("nan", "inf", "-inf"):
                raise WireError("bad float marker")
            return float(inner)
        if key == "__int__":
            if not isinstance(inner, str) or len(inner) > MAX_INT_DIGITS or not inner.lstrip("-").isdigit():
                raise WireError("bad integer marker")
            return int(inner)
        if key == "__unsupported__":
            return {"__unsupported__": str(inner)[:80]}
    return {valid_text(str(k)): _decode(v, buffers, used, budget, depth + 1, max_array_bytes) for k, v in x.items()}


def _array(index, buffers, used, max_array_bytes) -> np.ndarray:
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(buffers) or index in used:
        raise WireError("bad array reference")
    used.add(index)
    raw = bytes(buffers[index])
    if max_array_bytes is not None and len(raw) > max_array_bytes:
        raise WireError("an array is too large")
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise WireError(f"an array could not be read ({str(exc)[:80]})") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in NUMERIC_KINDS:
        raise WireError("an array has a non-numeric dtype")
    return array

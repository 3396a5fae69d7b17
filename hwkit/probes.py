"""The probe protocol: the grader sends a probe cell into the student's kernel; the kernel replies with
data only (JSON, arrays as base64 .npy bytes loaded with allow_pickle=False) in a display_data output of
its own MIME type. Nothing the kernel sends is unpickled or evaluated here; a student who tampers with
the kernel-side helpers changes only what gets reported, and a wrong report fails its check."""
from __future__ import annotations

import base64
import io
import json
import secrets
import zlib

import numpy as np

from hwkit.checks import Reply
from hwkit.problem import Probe

REPLY_MIME = "application/x-hwkit-reply+json"
MAX_REPLY_BYTES = 8_000_000
_MAX_DEPTH = 32

# Runs inside the kernel (student side). Kept self-contained: it imports only the standard library,
# numpy, and torch/sympy only if the value is one of theirs.
KERNEL_RUNTIME = r'''
import base64 as _b64, builtins as _bi, io as _io, json as _json, math as _math, sys as _sys, traceback as _tb
import numpy as _np
from IPython import get_ipython as _gi
from IPython.display import publish_display_data as _publish

class NotAnswered(Exception):
    pass

ns = _gi().user_ns

def _dec(x):
    if isinstance(x, dict):
        if "__npy__" in x:
            return _np.load(_io.BytesIO(_b64.b64decode(x["__npy__"])), allow_pickle=False)
        return {k: _dec(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_dec(v) for v in x]
    return x

def _npy(a):
    if a.dtype.kind not in "biufc":
        raise TypeError("array of dtype %s cannot be reported" % a.dtype)
    buf = _io.BytesIO(); _np.save(buf, _np.ascontiguousarray(a), allow_pickle=False)
    return {"__npy__": _b64.b64encode(buf.getvalue()).decode("ascii")}

def _enc(x, depth=0):
    if depth > 32:
        raise ValueError("reply nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**63 else str(x)
    if isinstance(x, float):
        return x if _math.isfinite(x) else {"__float__": repr(x)}
    if isinstance(x, _np.generic):
        return _enc(x.item(), depth + 1)
    if isinstance(x, _np.ndarray):
        return _npy(x)
    mod = type(x).__module__ or ""
    if mod.startswith("torch") and hasattr(x, "detach"):
        return _npy(x.detach().cpu().numpy())
    if mod.startswith("sympy"):
        return str(x)
    if isinstance(x, (list, tuple)):
        return [_enc(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): _enc(v, depth + 1) for k, v in x.items()}
    return {"__unsupported__": type(x).__name__}

def answer(name):
    if name not in ns:
        raise NotAnswered("variable '%s' is not defined" % name)
    return ns[name]

def function(name):
    f = answer(name)
    if not callable(f):
        raise NotAnswered("'%s' is not a function" % name)
    return f

def call_cases(name, cases):
    f = function(name)
    out = []
    for args in cases:
        try:
            out.append(_enc(f(*args)))
        except Exception as e:
            out.append({"__error__": "%s: %s" % (type(e).__name__, str(e)[:200])})
    return out

def _reply(body):
    text = _json.dumps(body)
    if len(text) > _LIMIT:
        text = _json.dumps({"nonce": body["nonce"], "ok": False, "error_type": "ReplyTooLarge",
                            "message": "the answer is larger than %d bytes" % _LIMIT})
    _publish({_MIME: _json.loads(text)})

def _run(source, payload):
    env = {"ns": ns, "inputs": _dec(payload["inputs"]), "answer": answer, "function": function,
           "call_cases": call_cases, "np": _np, "NotAnswered": NotAnswered, "encode": _enc}
    try:
        exec(compile(source, "<hwkit-probe>", "exec"), env)
        body = {"nonce": payload["nonce"], "ok": True, "value": _enc(env.get("result"))}
    except NotAnswered as e:
        body = {"nonce": payload["nonce"], "ok": False, "error_type": "NotAnswered", "message": str(e)[:300]}
    except KeyboardInterrupt:
        raise                      # the grader's interrupt after a time limit: stop here, no reply
    except BaseException as e:
        body = {"nonce": payload["nonce"], "ok": False, "error_type": type(e).__name__, "message": str(e)[:300]}
    _reply(body)
'''


def encode_data(value, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError("probe inputs nested too deeply")
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(value), allow_pickle=False)
        return {"__npy__": base64.b64encode(buf.getvalue()).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [encode_data(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): encode_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


_TO_LETTERS = bytes.maketrans(b"0123456789abcdef", b"abcdefghijklmnop")
_FROM_LETTERS = bytes.maketrans(b"abcdefghijklmnop", b"0123456789abcdef")


def pack_letters(data) -> str:
    """JSON data as one compressed blob spelled in the letters a-p: a notebook that
    carries it holds no digit run that could read as an answer."""
    raw = zlib.compress(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8"), 9)
    return raw.hex().encode("ascii").translate(_TO_LETTERS).decode("ascii")


def unpack_letters(blob: str, max_bytes: int = 64 * 2**20):
    """The inverse of pack_letters; raises ValueError on anything malformed."""
    if not isinstance(blob, str):
        raise ValueError("not a packed blob")
    try:
        raw = bytes.fromhex(blob.encode("ascii").translate(_FROM_LETTERS).decode("ascii"))
        text = zlib.decompressobj().decompress(raw, max_bytes)
        return json.loads(text)
    except (UnicodeError, zlib.error) as exc:
        raise ValueError(f"not a packed blob ({exc})") from None


def new_nonce() -> str:
    return secrets.token_hex(8)


def probe_batch_source(batch: list[tuple[Probe, str]], max_bytes: int = MAX_REPLY_BYTES) -> str:
    """One cell that runs several probes in turn (the runtime compiled once), each replying under its own
    nonce. A probe that is interrupted stops the batch; the grader re-runs whatever got no reply."""
    payload = json.dumps([{"nonce": nonce, "inputs": encode_data(probe.inputs), "source": probe.source}
                          for probe, nonce in batch])
    setup = (KERNEL_RUNTIME + f"\n_MIME = {REPLY_MIME!r}\n_LIMIT = {int(max_bytes)}\n"
             "for _probe in _json.loads(_PAYLOAD):\n    _run(_probe.pop('source'), _probe)\n")
    return ("exec(compile(" + json.dumps(setup) + ", '<hwkit-runtime>', 'exec'), "
            "{'__builtins__': __import__('builtins'), '_PAYLOAD': " + json.dumps(payload) + "})")


def decode_data(value, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError("reply nested too deeply")
    if isinstance(value, dict):
        if set(value) == {"__npy__"} and isinstance(value["__npy__"], str):
            return np.load(io.BytesIO(base64.b64decode(value["__npy__"], validate=True)), allow_pickle=False)
        if set(value) == {"__float__"}:
            return float(value["__float__"]) if value["__float__"] in ("nan", "inf", "-inf") else None
        return {str(k): decode_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_data(v, depth + 1) for v in value]
    return value


def decode_reply(outputs: list, nonce: str, max_bytes: int = MAX_REPLY_BYTES) -> Reply:
    """Find this probe's reply among a cell's outputs and turn it into data. Anything malformed is a
    failed reply with a reason, never an exception; no reply at all reports the cell's error if any."""
    found = find_reply(outputs, nonce, max_bytes)
    if found is not None:
        return found
    for output in outputs or []:
        if isinstance(output, dict) and output.get("output_type") == "error":
            return Reply(False, error_type=str(output.get("ename", "Error"))[:80],
                         error_message=str(output.get("evalue", ""))[:300])
    return Reply(False, error_type="NoReply", error_message="the kernel gave no answer (it may have died or timed out)")


def find_reply(outputs: list, nonce: str, max_bytes: int = MAX_REPLY_BYTES) -> Reply | None:
    """This probe's reply among a cell's outputs as data, or None if it sent none."""
    for output in outputs or []:
        data = output.get("data", {}) if isinstance(output, dict) else {}
        body = data.get(REPLY_MIME)
        if isinstance(body, str):
            if len(body) > max_bytes:
                return Reply(False, error_type="ReplyTooLarge", error_message="the answer is too large")
            try:
                body = json.loads(body)
            except ValueError:
                continue
        if not isinstance(body, dict) or body.get("nonce") != nonce:
            continue
        if not body.get("ok"):
            return Reply(False, error_type=str(body.get("error_type", "Error"))[:80],
                         error_message=str(body.get("message", ""))[:300])
        try:
            return Reply(True, decode_data(body.get("value")))
        except (ValueError, TypeError, OSError) as exc:
            return Reply(False, error_type="BadReply", error_message=f"the answer could not be read ({exc})")
    return None


# Probe builders used by problem definitions.

def read_variable(name: str) -> Probe:
    return Probe(f"result = answer({name!r})")


def call_function(name: str, cases: list) -> Probe:
    """Call the student's function once per case (a list of positional arguments)."""
    return Probe(f"result = call_cases({name!r}, inputs['cases'])", {"cases": cases})


def as_reply(value, depth: int = 0):
    """A reference value as the kernel would report it (tuples as lists, tensors as arrays, sympy as
    text), so references and replies meet in the same form."""
    if depth > _MAX_DEPTH:
        raise ValueError("value nested too deeply")
    module = type(value).__module__ or ""
    if module.startswith("torch") and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if module.startswith("sympy"):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [as_reply(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): as_reply(v, depth + 1) for k, v in value.items()}
    return value

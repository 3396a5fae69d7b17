"""The probe protocol, grader side: a probe travels to the kernel as a `hwkit_probe_request` shell message
and comes back as a `hwkit_probe_reply` with data only (hwkit_kernel.wire: JSON, arrays as .npy buffers
loaded with allow_pickle=False). Nothing the kernel sends is unpickled or evaluated, and a reply is only
data: what it is worth is decided here, against references computed outside the kernel."""
from __future__ import annotations

import base64
import json
import secrets
import zlib

from hwkit.records import KernelModule, Probe, Reply
from hwkit.variants import bytes_of_letters, letters_of
from hwkit_kernel.runtime import REPLY, REQUEST
from hwkit_kernel.wire import WireError, decode, encode, valid_text

MAX_REPLY_BYTES = 8_000_000

__all__ = ["REQUEST", "REPLY", "MAX_REPLY_BYTES", "new_nonce", "request", "read_reply", "as_reply",
           "read_variable", "call_function", "module_probe", "pack_probe", "unpack_probe", "pack_letters", "unpack_letters"]


def new_nonce() -> str:
    return secrets.token_hex(8)


def request(probe: Probe, nonce: str, max_bytes: int = MAX_REPLY_BYTES) -> tuple[dict, list[bytes]]:
    """The content and buffers of the request message for one probe."""
    inputs, buffers = encode(probe.inputs)
    module = None if probe.module is None else {"name": probe.module.name, "source": probe.module.source}
    return ({"nonce": nonce, "module": module, "function": probe.function, "inputs": inputs,
             "max_bytes": max_bytes}, buffers)


def read_reply(content, buffers, nonce: str, max_bytes: int = MAX_REPLY_BYTES) -> Reply | None:
    """A reply message's content as data; None if it is not the reply to this nonce. Anything malformed is a
    failed reply with its reason, never an exception."""
    if not isinstance(content, dict) or content.get("nonce") != nonce:
        return None
    if not content.get("ok"):
        return Reply(False, error_type=valid_text(str(content.get("error_type", "Error"))[:80]),
                     error_message=valid_text(str(content.get("message", ""))[:300]))
    if sum(len(b) for b in buffers) > max_bytes:
        return Reply(False, error_type="ReplyTooLarge", error_message="the answer is too large")
    try:
        return Reply(True, decode(content.get("value"), buffers, max_array_bytes=max_bytes))
    except (WireError, TypeError, ValueError, RecursionError) as exc:
        return Reply(False, error_type="BadReply", error_message=f"the answer could not be read ({str(exc)[:120]})")


def as_reply(value):
    """A value computed in the grader as the kernel would report it (tuples as lists, tensors as arrays,
    sympy as text): the same encoding, decoded, so references and replies meet in the same form."""
    return decode(*encode(value))


# Probes every problem can use (hwkit_kernel.builtin).

def read_variable(name: str) -> Probe:
    return Probe("variable", {"name": name})


def call_function(name: str, cases: list) -> Probe:
    """Call the student's function once per case (a list of positional arguments)."""
    return Probe("call_function", {"name": name, "cases": cases})


def module_probe(name: str, cases: list[dict]) -> Probe:
    """Build the student's module `name(*case["config"])` for each case and report its behaviour
    (hwkit_kernel.modules.behaviour) on the case's input with the case's seeds."""
    return Probe("module_behaviour", {"name": name, "cases": cases})


# Probes as stored in the self-check bundle: JSON, arrays as base64 .npy (inside the letters-only blob).

def pack_probe(probe: Probe) -> dict:
    inputs, buffers = encode(probe.inputs)
    return {"function": probe.function, "module": None if probe.module is None else probe.module.name,
            "inputs": inputs, "arrays": [base64.b64encode(b).decode("ascii") for b in buffers]}


def unpack_probe(packed: dict, modules: dict[str, str]) -> Probe:
    """The inverse of pack_probe; `modules` maps a module name to its source. Raises ValueError."""
    try:
        buffers = [base64.b64decode(b, validate=True) for b in packed.get("arrays", [])]
        inputs = decode(packed["inputs"], buffers)
        name = packed.get("module")
        module = None if name is None else KernelModule(str(name), modules[name])
        return Probe(str(packed["function"]), inputs, module)
    except (KeyError, TypeError, WireError, ValueError) as exc:
        raise ValueError(f"a probe in the self-check bundle is damaged ({exc})") from None


def pack_letters(data) -> str:
    """JSON data as one compressed blob spelled in the letters a-p: a notebook that
    carries it holds no digit run that could read as an answer."""
    raw = zlib.compress(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8"), 9)
    return letters_of(raw)


def unpack_letters(blob: str, max_bytes: int = 64 * 2**20):
    """The inverse of pack_letters; raises ValueError on anything malformed."""
    if not isinstance(blob, str):
        raise ValueError("not a packed blob")
    try:
        raw = bytes_of_letters(blob)
        text = zlib.decompressobj().decompress(raw, max_bytes)
        return json.loads(text)
    except (UnicodeError, zlib.error) as exc:
        raise ValueError(f"not a packed blob ({exc})") from None

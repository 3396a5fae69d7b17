"""The probe runtime: answers the grader's `hwkit_probe_request` shell messages.

A request names a function of a problem kernel (its source travels with the request and is compiled into
a namespace of its own) or of hwkit_kernel.builtin, and carries the inputs (JSON and .npy buffers). The
function gets a Student view of the notebook's globals and the decoded inputs; what it returns is sent
back as data in a `hwkit_probe_reply` on the shell channel.

Requests never pass through IPython: no input transformers, AST transformers or cell hooks see them, and
nothing here is looked up in the notebook's globals. The runtime keeps its own references, taken when the
kernel starts (before any student code), to what it calls. Student code runs in this very interpreter and
can still change anything here; that is why the grader trusts only outputs on inputs it drew itself and
compares them with references it computes outside the kernel (docs/architecture.md)."""
from __future__ import annotations

import builtins
import hashlib
import json

from hwkit_kernel import builtin as builtin_probes
from hwkit_kernel.student import NotAnswered, Student
from hwkit_kernel.wire import decode, encode

REQUEST = "hwkit_probe_request"
REPLY = "hwkit_probe_reply"
DEFAULT_MAX_BYTES = 8_000_000

_compile, _exec, _len, _getattr = builtins.compile, builtins.exec, builtins.len, builtins.getattr
_isinstance, _str, _type = builtins.isinstance, builtins.str, builtins.type
_dumps, _sha256 = json.dumps, hashlib.sha256


class Runtime:
    def __init__(self, kernel, namespace: dict):
        self._kernel = kernel
        self._student = Student(namespace)
        self._builtins = dict(builtins.__dict__)     # the builtins as they were before any student cell
        self._modules: dict[str, dict] = {}

    def install(self) -> None:
        self._kernel.shell_handlers[REQUEST] = self.handle

    def handle(self, stream, idents, msg) -> None:
        reply, buffers = self.answer(msg.get("content") or {}, msg.get("buffers") or [])
        self._kernel.session.send(stream, REPLY, reply, parent=msg, ident=idents, buffers=buffers)

    def answer(self, content: dict, buffers: list) -> tuple[dict, list[bytes]]:
        """The reply (content and buffers) to one request; never raises."""
        nonce = _str(content.get("nonce", ""))[:64]
        max_bytes = content.get("max_bytes")
        max_bytes = max_bytes if _isinstance(max_bytes, int) and max_bytes > 0 else DEFAULT_MAX_BYTES
        try:
            function = self._function(content.get("module"), _str(content.get("function", "")))
            inputs = decode(content.get("inputs"), buffers)
            value, out = encode(function(self._student, inputs))
            if _len(_dumps(value)) + sum(_len(b) for b in out) > max_bytes:
                return self._error(nonce, "ReplyTooLarge", f"the answer is larger than {max_bytes} bytes"), []
            return {"nonce": nonce, "ok": True, "value": value}, out
        except NotAnswered as exc:
            return self._error(nonce, "NotAnswered", exc), []
        except KeyboardInterrupt:          # the grader's interrupt after the time limit, or the code's own
            return self._error(nonce, "KeyboardInterrupt", "interrupted"), []
        except BaseException as exc:  # noqa: BLE001 (SystemExit from student code included: report, carry on)
            return self._error(nonce, _type(exc).__name__, exc), []

    @staticmethod
    def _error(nonce: str, kind: str, message) -> dict:
        return {"nonce": nonce, "ok": False, "error_type": kind[:80], "message": _str(message)[:300]}

    def _function(self, module, name: str):
        if not name.isidentifier() or name.startswith("_"):
            raise LookupError(f"no probe named {name!r}")
        if module is None:
            found = _getattr(builtin_probes, name, None)
        else:
            found = self._namespace(module).get(name)
        if not callable(found):
            raise LookupError(f"no probe named {name!r}")
        return found

    def _namespace(self, module: dict) -> dict:
        source, label = _str(module.get("source", "")), _str(module.get("name", "kernel"))[:64]
        key = _sha256(source.encode("utf-8")).hexdigest()
        if key not in self._modules:
            namespace = {"__name__": f"hwkit_probe_{label}", "__builtins__": self._builtins}
            _exec(_compile(source, f"<hwkit kernel {label}>", "exec"), namespace)
            self._modules[key] = namespace
        return self._modules[key]

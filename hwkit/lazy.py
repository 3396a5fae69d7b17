"""Re-exporting a package's names lazily: a submodule is imported only when one of its names is used (the
warm zygote imports parts of hwkit.sandbox and hwkit.warm without jupyter_client or torch's grader side)."""
from __future__ import annotations

import importlib
from typing import Callable


def lazy_exports(package: str, namespace: dict, exports: dict[str, tuple[str, ...]]) -> Callable[[str], object]:
    """The module-level __getattr__ for `package`: each name in exports[submodule] comes from that submodule,
    imported on first use and then kept in the package's namespace."""
    where = {name: module for module, names in exports.items() for name in names}
    namespace["__all__"] = sorted(where)

    def __getattr__(name: str):
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__

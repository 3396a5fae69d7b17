"""What a cluster worker must share with the grader that sends it work: the same hwkit (version and code), and,
because references are computed on the worker, the same Python, torch and numpy. No distributed import."""
from __future__ import annotations

import functools
import hashlib
import platform
from importlib import metadata
from pathlib import Path

import hwkit
import hwkit_kernel

_ENGINE_SUFFIXES = (".py", ".html", ".j2", ".json")


@functools.lru_cache(maxsize=1)
def engine_digest() -> str:
    """A digest of hwkit's and hwkit_kernel's own files: two installs of the same version from different code
    (an edited checkout) differ here."""
    h = hashlib.sha256()
    for package in (hwkit, hwkit_kernel):
        top = Path(package.__file__).resolve().parent
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(top.parent)
            if "__pycache__" in rel.parts or path.suffix not in _ENGINE_SUFFIXES or not path.is_file():
                continue
            data = path.read_bytes()
            h.update(f"{rel.as_posix()}\0{len(data)}\0".encode())
            h.update(data)
    return h.hexdigest()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def software() -> dict[str, str]:
    """The versions that decide what a worker computes: hwkit (and its code), Python, torch, numpy."""
    return {"hwkit": hwkit.__version__, "engine": engine_digest(), "python": platform.python_version(),
            "torch": _version("torch"), "numpy": _version("numpy"), "distributed": _version("distributed")}


def differences(mine: dict[str, str], theirs: dict[str, str]) -> list[str]:
    """What differs between two `software()` reports, in words; [] when they agree."""
    said = []
    for key in ("hwkit", "python", "torch", "numpy", "distributed"):
        if mine.get(key) != theirs.get(key):
            said.append(f"{key} {theirs.get(key, '?')} (the grader has {mine.get(key, '?')})")
    if mine.get("hwkit") == theirs.get("hwkit") and mine.get("engine") != theirs.get("engine"):
        said.append(f"hwkit {theirs.get('hwkit')} from other code (engine {str(theirs.get('engine'))[:12]}, "
                    f"the grader's {str(mine.get('engine'))[:12]})")
    return said

"""What of the host's Python a kernel sees: the interpreter's roots read-only, the hwkit_kernel package at a
fixed path, and nothing of the grader or the course bank, however hwkit is installed.

An editable install leaves hwkit and the bank in the checkout, which is never bound. A wheel puts packages
into the site-packages the jail binds: every grader or bank package found in an import directory under a
bound root is covered by a tombstone, a read-only package whose __init__ raises ModuleNotFoundError (an empty
directory would still import, as a namespace package). Found generically: the names hwkit, solutions and
templates, and every other top-level name of a distribution that ships one of them (its top_level.txt or
RECORD), as a package, a module, a compiled module or a cached .pyc; hwkit_kernel excepted."""
from __future__ import annotations

import functools
import importlib.metadata
import os
import site
import sys
from pathlib import Path

from hwkit.sandbox.spec import GRADER_PACKAGES, KERNEL_MODULE, HostView

_NOT_MODULES = (".dist-info", ".egg-info", ".pth", ".egg-link")


def under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def python_roots() -> list[Path]:
    """Directories holding the running interpreter, its stdlib and its site-packages (bound read-only)."""
    candidates = [sys.base_prefix, sys.prefix, *site.getsitepackages()]
    roots: list[Path] = []
    for raw in candidates:
        path = Path(os.path.realpath(raw))
        if not path.is_dir() or under(path, Path("/usr")):
            continue
        if any(under(path, r) for r in roots):
            continue
        roots = [r for r in roots if not under(r, path)] + [path]
    return roots


def kernel_package_dir() -> Path:
    """The directory of the hwkit_kernel package, wherever it is installed (a checkout or site-packages)."""
    import hwkit_kernel
    return Path(os.path.realpath(hwkit_kernel.__file__)).parent


def import_dirs(roots: list[Path]) -> list[Path]:
    """Directories under the roots a grader or bank package could be imported from: the kernel's default
    sys.path (this process's, .pth additions included), where this process imported such packages from, the
    bank folder, and the roots themselves (a student can put any directory they can see on sys.path)."""
    found: list[Path] = []
    for raw in [*sys.path, *site.getsitepackages(), *_grader_locations(), *map(str, roots)]:
        if not raw:
            continue
        path = Path(os.path.realpath(raw))
        if path.is_dir() and any(under(path, r) for r in roots) and path not in found:
            found.append(path)
    return found


def _grader_locations() -> list[str]:
    """The folders this process imported hwkit and the bank from (their packages' parents), and the bank's."""
    from hwkit.bank import BANK_ENV

    found = [os.environ.get(BANK_ENV, "")]
    for name in GRADER_PACKAGES:
        module = sys.modules.get(name)
        paths = list(getattr(module, "__path__", None) or []) or [getattr(module, "__file__", None) or ""]
        found += [os.path.dirname(p) for p in paths if p]
    return found


def grader_names(dirs: list[Path]) -> set[str]:
    """Top-level import names to hide: the grader's and the bank's, and the other names of their distributions."""
    names = set(GRADER_PACKAGES)
    for dist in importlib.metadata.distributions(path=[str(d) for d in dirs]):
        tops = _top_level(dist)
        if tops & set(GRADER_PACKAGES):
            names |= tops
    return names - {KERNEL_MODULE}


def _top_level(dist) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text is not None:
        return {line.strip() for line in text.splitlines() if line.strip()}
    tops = set()
    for file in dist.files or ():
        first = file.parts[0] if file.parts else ""
        if first and first != ".." and not first.endswith(_NOT_MODULES) and first != "__pycache__":
            if len(file.parts) > 1 or first.endswith(".py"):
                tops.add(first.split(".")[0])
    return tops


def grader_entries(dirs: list[Path]) -> list[Path]:
    """Every package dir, module file and cached .pyc of a hidden name in these import directories."""
    names = grader_names(dirs)
    found: list[Path] = []
    for directory in dirs:
        for holder in (directory, directory / "__pycache__"):
            try:
                entries = sorted(os.scandir(holder), key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.name.split(".")[0] in names and not entry.name.endswith(_NOT_MODULES):
                    path = Path(os.path.realpath(entry.path))
                    if path not in found and any(under(path, d) for d in dirs):
                        found.append(path)
    return found


@functools.lru_cache(maxsize=8)
def view_of(roots: tuple[Path, ...] | list[Path]) -> HostView:
    roots = tuple(roots)
    return HostView(roots, tuple(grader_entries(import_dirs(list(roots)))), kernel_package_dir())


def host_view() -> HostView:
    """The view of this grader's Python (computed once per set of roots)."""
    return view_of(tuple(python_roots()))

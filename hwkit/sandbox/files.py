"""Reading what a student left in the work dir without ever following a link they planted."""
from __future__ import annotations

import os
import stat
from pathlib import Path


def read_file_nofollow(base: Path, relpath: str, max_bytes: int) -> bytes | None:
    """Read at most max_bytes of base/relpath if it is a regular file reached without any symlink."""
    parts = [p for p in relpath.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or relpath.startswith("/"):
        return None
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    directory = getattr(os, "O_DIRECTORY", 0)
    if not nofollow or not hasattr(os, "O_PATH"):
        return _read_file_portable(base, parts, max_bytes)
    try:
        fd = os.open(base, os.O_PATH | directory | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_PATH | directory | nofollow | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], os.O_RDONLY | nofollow | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISREG(os.fstat(leaf).st_mode):
            return None
        return _read_upto(leaf, max_bytes)
    except OSError:
        return None
    finally:
        os.close(leaf)


def _read_upto(fd: int, max_bytes: int) -> bytes:
    chunks, left = [], max_bytes
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_file_portable(base: Path, parts: list[str], max_bytes: int) -> bytes | None:
    """Windows/macOS fallback for LocalKernel (the student's own files on their own machine)."""
    path = base
    for part in parts:
        path = path / part
        if path.is_symlink():
            return None
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as f:
            return f.read(max_bytes)
    except OSError:
        return None

"""The user-facing error and its one helper: a leaf that imports nothing of hwkit."""
from __future__ import annotations

import difflib


class HwkitError(Exception):
    """A user-facing error: the message is one line naming the file and the fix."""


def did_you_mean(name: str, known) -> str:
    """' (did you mean 'x'?)' for the closest known names, or nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""

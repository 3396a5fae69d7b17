"""The student's figures, read from the executed notebook that grading keeps, for the feedback page.

A figure belongs to the parts of the answer cell that drew it, or, when a given cell draws it (the statement's
"run this cell to see your batch"), to the parts of the nearest answer cell above. Each figure is a PNG data
URI; one figure and all of a page's figures are bounded, past that a figure is left out and counted."""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field

from hwkit.notebooks import tagged_parts

FIGURE_CHARS = 400_000          # one figure's base64 text (about 300 kB of PNG)
PAGE_FIGURE_CHARS = 2_000_000   # all figures of one feedback page
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass
class PartFigures:
    """What the feedback page shows of the executed notebook: data URIs per part, and how many were left out."""
    by_part: dict[str, list[str]] = field(default_factory=dict)
    left_out: int = 0


def _png_payload(output) -> str | None:
    """The base64 text of an output's PNG, if it really is one (a kernel's output is data, not markup)."""
    data = output.get("data") if isinstance(output, dict) else None
    text = data.get("image/png") if isinstance(data, dict) else None
    if isinstance(text, list):
        text = "".join(str(t) for t in text)
    if not isinstance(text, str):
        return None
    text = "".join(text.split())
    try:
        head = base64.b64decode(text[:16], validate=True)
    except (binascii.Error, ValueError):
        return None
    return text if head.startswith(_PNG_MAGIC) and _is_base64(text) else None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def part_figures(executed: str | None) -> PartFigures:
    """Figures per part from an executed notebook's JSON text; nothing when it did not run or cannot be read."""
    found = PartFigures()
    try:
        cells = json.loads(executed).get("cells", []) if executed else []
    except (ValueError, AttributeError):
        return found
    owner: list[str] = []
    budget = PAGE_FIGURE_CHARS
    for cell in cells if isinstance(cells, list) else []:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        owner = tagged_parts(cell) or owner
        for output in cell.get("outputs") or []:
            payload = _png_payload(output)
            if payload is None:
                continue
            if not owner or len(payload) > FIGURE_CHARS or len(payload) > budget:
                found.left_out += 1
                continue
            budget -= len(payload)
            found.by_part.setdefault(owner[0], []).append("data:image/png;base64," + payload)
    return found

"""Render a problem's jinja2 template into notebook cells.

A template is a text file of cells. A line `#%% markdown` or `#%% code` starts a cell; a code cell may
carry `answer=PART[,PART]` (the cell where the student answers, tagged in its metadata). The template
sees `lang`，`solution` (render reference code instead of the starter), `number`，`params` and
whatever the problem's `context(params)` adds."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2
import nbformat

_MARKER = re.compile(r"^#%%\s+(markdown|code)(?:\s+answer=([A-Za-z0-9_,-]+))?\s*$")


@lru_cache(maxsize=None)
def _environment(folder: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)


def render_text(template: Path, variables: dict) -> str:
    return _environment(template.parent).get_template(template.name).render(**variables)


def split_cells(text: str, problem_id: str) -> list:
    cells, kind, answer, lines = [], None, None, []

    def flush():
        body = "\n".join(lines).strip("\n")
        if kind is None or not body.strip():
            return
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(body))
            return
        cell = nbformat.v4.new_code_cell(body)
        if answer:
            cell.metadata["tags"] = ["hwkit-answer"]
            cell.metadata["hwkit"] = {"problem": problem_id, "parts": answer.split(",")}
        cells.append(cell)

    for line in text.splitlines():
        match = _MARKER.match(line)
        if match:
            flush()
            kind, answer, lines = match.group(1), match.group(2), []
        else:
            lines.append(line)
    flush()
    return cells


def render_problem_cells(template: Path, problem_id: str, variables: dict) -> list:
    return split_cells(render_text(template, variables), problem_id)

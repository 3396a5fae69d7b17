"""Reading a submitted notebook file: bounded in size, UTF-8, JSON, nbformat 4 (v3 is upgraded).

Used by grading and by the student's self-check; every failure is a reason in words, never an exception."""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import nbformat

from hwkit import pysyntax
from hwkit.course import LANGS
from hwkit_kernel.wire import scrub

MAX_NOTEBOOK_BYTES = 20 * 2**20


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    try:
        size = path.stat().st_size
        if size > MAX_NOTEBOOK_BYTES:
            return None, f"the file is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit"
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None, "the file is not UTF-8 text"
    except OSError as exc:
        return None, f"the file could not be read ({exc.strerror})"
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return None, f"the file is not valid notebook JSON ({str(exc)[:100]})"
    except RecursionError:
        return None, "the file is JSON nested too deeply to be a notebook"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        return None, "the file is JSON but not a Jupyter notebook"
    try:
        nb = scrub(nbformat.reads(text, as_version=4))     # JSON can carry lone surrogates; UTF-8 cannot
    except Exception as exc:  # nbformat raises many types on malformed notebooks
        return None, f"the notebook could not be read as nbformat 4 ({type(exc).__name__}: {str(exc)[:100]})"
    if not isinstance(nb.get("cells"), list):
        return None, "the notebook has no cell list"
    return nb, ""


ANSWER_CHARS = 4000     # what a reviewer is shown of one part's answer


def notebook_lang(nb) -> str:
    """The language the notebook was released in (its metadata), or "" (unknown)."""
    meta = nb.metadata.get("hwkit") if nb is not None and isinstance(nb.metadata, dict) else None
    lang = meta.get("lang") if isinstance(meta, dict) else None
    return lang if isinstance(lang, str) and lang in LANGS else ""


def _tagged_parts(cell) -> list:
    parts = ((cell.get("metadata") or {}).get("hwkit") or {}).get("parts", [])
    return parts if isinstance(parts, list) else []


def answer_sources(nb, part_id: str) -> list[str]:
    """The sources of the code cells tagged as the part's answer, as submitted."""
    return [str(c.get("source", "")) for c in nb.get("cells", [])
            if c.get("cell_type") == "code" and part_id in _tagged_parts(c)]


def answer_fingerprint(nb, part_id: str) -> str:
    """A hash of everything that can change the part's answer: its own answer cells and every code cell that is
    no part's answer (setup cells, cells the student added, which may redefine anything). Other parts' answer
    cells do not count, so changing one answer does not unsettle the decisions on the others."""
    own = answer_sources(nb, part_id)
    shared = [str(c.get("source", "")) for c in nb.get("cells", [])
              if c.get("cell_type") == "code" and not _tagged_parts(c)]
    return hashlib.sha256(json.dumps([own, shared], ensure_ascii=False).encode("utf-8")).hexdigest()


def answer_text(nb, part_id: str, value) -> str:
    """What a reviewer reads: a written answer's text, else the code of the part's answer cells (bounded)."""
    text = value if isinstance(value, str) else "\n\n".join(answer_sources(nb, part_id))
    return text if len(text) <= ANSWER_CHARS else text[:ANSWER_CHARS - 1] + "…"


# The notebook's own self-check (hwkit.student) runs the saved notebook in another kernel: when a notebook is run
# for grading or checking, its cells that only call it are not run (the jail cannot import hwkit, and a check
# must not start another check).
SELF_CHECK_MODULE = "hwkit.student"


def self_check_cells(nb) -> set[int]:
    """Indexes of the code cells that do nothing but import hwkit.student and call its check()."""
    aliases: set[str] = set()
    found = set()
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        names = _self_check_only("".join(source) if isinstance(source, list) else str(source), aliases)
        if names is not None:
            aliases |= names
            found.add(index)
    return found


def _self_check_only(source: str, known: set[str]) -> set[str] | None:
    """The names a cell binds to hwkit.student if it only imports it and calls `<name>.check(...)`, else None."""
    try:
        body = pysyntax.parse(source).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    bound: set[str] = set()
    for stmt in body:
        if isinstance(stmt, ast.Import) and all(a.name == SELF_CHECK_MODULE for a in stmt.names):
            bound |= {a.asname or "hwkit" for a in stmt.names}
        elif isinstance(stmt, ast.ImportFrom) and stmt.module == "hwkit" and all(a.name == "student" for a in stmt.names):
            bound |= {a.asname or "student" for a in stmt.names}
        elif not _is_check_call(stmt, known | bound):
            return None
    return bound if body else None


def _is_check_call(stmt, names: set[str]) -> bool:
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute) or call.func.attr != "check":
        return False
    owner = call.func.value
    if isinstance(owner, ast.Attribute) and isinstance(owner.value, ast.Name):   # hwkit.student.check()
        return owner.value.id == "hwkit" and owner.attr == "student" and "hwkit" in names
    return isinstance(owner, ast.Name) and owner.id in names and owner.id != "hwkit"

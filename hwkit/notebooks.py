"""Reading a submitted notebook file: bounded in size, UTF-8, JSON, nbformat 4 (v3 is upgraded).

Used by grading and by the student's self-check; every failure is a reason in words, never an exception."""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path

import nbformat

from hwkit import pysyntax
from hwkit.course import LANGS
from hwkit_kernel.wire import scrub

MAX_NOTEBOOK_BYTES = 20 * 2**20
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


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
        nb = _as_v4(raw, text)
        if _SURROGATE_ESCAPE.search(text):   # JSON can carry lone surrogates (as \uD800-\uDFFF escapes); UTF-8 cannot
            nb = scrub(nb)
    except Exception as exc:  # nbformat raises many types on malformed notebooks
        return None, f"the notebook could not be read as nbformat 4 ({type(exc).__name__}: {str(exc)[:100]})"
    if not isinstance(nb.get("cells"), list):
        return None, "the notebook has no cell list"
    return nb, ""


def _as_v4(raw: dict, text: str):
    """The notebook as nbformat 4 nodes. A v4 file is taken from the JSON already parsed, as nbformat.reads takes
    it (nodes, multi-line strings joined, transient fields dropped) but without its schema validation, which
    only logs what it finds, and which costs seconds on a notebook of 10^5 cells. Older formats are upgraded
    by nbformat."""
    if raw.get("nbformat") == 4:
        try:
            return nbformat.v4.to_notebook_json(raw)
        except AttributeError as exc:            # as nbformat.reads says it
            raise nbformat.ValidationError(f"The notebook is invalid and is missing an expected key: {exc}") from None
    return nbformat.reads(text, as_version=4)


ANSWER_CHARS = 4000     # what a reviewer is shown of one part's answer


def notebook_lang(nb) -> str:
    """The language the notebook was released in (its metadata), or "" (unknown)."""
    meta = nb.metadata.get("hwkit") if nb is not None and isinstance(nb.metadata, dict) else None
    lang = meta.get("lang") if isinstance(meta, dict) else None
    return lang if isinstance(lang, str) and lang in LANGS else ""


def tagged_parts(cell) -> list[str]:
    """The parts a cell is tagged as answering; metadata of any other shape (a student's notebook may hold
    anything there) tags nothing."""
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    tag = meta.get("hwkit") if isinstance(meta, dict) else None
    parts = tag.get("parts") if isinstance(tag, dict) else None
    return [p for p in parts if isinstance(p, str)] if isinstance(parts, list) else []


def cell_digest(cell) -> str:
    """A cell's type and text, blind to whitespace at line ends and around the cell."""
    source = cell.get("source", "")
    source = "".join(map(str, source)) if isinstance(source, list) else str(source)
    text = "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").split("\n")).strip("\n")
    return hashlib.sha256(f"{cell.get('cell_type')}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()[:20]


class AnswerCells:
    """A notebook's code cells as the parts' answers see them, read once: per part the sources of the code cells
    tagged as its answer, and the code cells no part claims (setup cells, cells the student added). Asking
    about a part then costs its own cells, not a walk over every cell of the notebook (10^5 Markdown cells)
    for each of its parts. The functions below take a notebook or an AnswerCells."""

    def __init__(self, nb):
        self.own: dict[str, list[str]] = {}
        self.shared: list[str] = []
        for cell in nb.get("cells", []):
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            source = str(cell.get("source", ""))
            parts = tagged_parts(cell)
            if not parts:
                self.shared.append(source)
            for part_id in dict.fromkeys(p for p in parts if isinstance(p, str)):
                self.own.setdefault(part_id, []).append(source)
        self._shared_json = json.dumps(self.shared, ensure_ascii=False)
        self._shared_digests: list[str] | None = None

    def sources(self, part_id: str) -> list[str]:
        return list(self.own.get(part_id, ()))

    def added(self, given: set[str]) -> list[str]:
        """The code cells no part claims that are not among the `given` ones (cell_digest of the release's
        statement and given cells): the cells the student added, or whose tags they deleted."""
        if self._shared_digests is None:
            self._shared_digests = [cell_digest({"cell_type": "code", "source": source}) for source in self.shared]
        return [source for source, digest in zip(self.shared, self._shared_digests) if digest not in given]

    def fingerprint(self, part_id: str) -> str:
        own = json.dumps(self.sources(part_id), ensure_ascii=False)
        return hashlib.sha256(f"[{own}, {self._shared_json}]".encode("utf-8")).hexdigest()   # json.dumps([own, shared])


def answer_cells(nb) -> AnswerCells:
    return nb if isinstance(nb, AnswerCells) else AnswerCells(nb)


def answer_sources(nb, part_id: str) -> list[str]:
    """The sources of the code cells tagged as the part's answer, as submitted."""
    return answer_cells(nb).sources(part_id)


def answer_fingerprint(nb, part_id: str) -> str:
    """A hash of everything that can change the part's answer: its own answer cells and every code cell that is
    no part's answer (setup cells, cells the student added, which may redefine anything). Other parts' answer
    cells do not count, so changing one answer does not unsettle the decisions on the others."""
    return answer_cells(nb).fingerprint(part_id)


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

"""Which of a student's own code cells a part's answer reaches, read statically.

A part's probe calls or reads names in the notebook's globals, so what answers it is its answer cells plus
whatever they use, wherever the student put it: a helper or an alias in a cell of their own, a later cell that
defines the answer again. A check of the code (a forbidden shortcut) reads exactly that: the top-level statements
of the other cells that bind a name the answer uses or defines, and, in turn, what those use. A cell of the
student's own that the answer never reaches (a test against nn.LSTM, say) is not the answer.

Static: a name made at run time (globals()[...], exec) is not followed; a cell that does not parse is taken
whole, as reaching everything."""
from __future__ import annotations

import ast
from dataclasses import dataclass

from hwkit import pysyntax

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass
class Statement:
    source: str
    binds: set[str] | None       # None: the cell did not parse and may bind anything
    uses: set[str]


def statements(source: str) -> list[Statement]:
    """A cell's top-level statements; an IPython line (%magic, !shell) is read as a blank line."""
    lines = source.split("\n")
    python = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)
    try:
        tree = pysyntax.parse(python)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return [Statement(source, None, set())]
    found = []
    for node in tree.body:
        binds, uses = set(), set()
        _names(node, binds, uses)
        found.append(Statement(ast.get_source_segment(python, node) or "", binds, uses))
    return found


def _names(node: ast.AST, binds: set[str], uses: set[str]) -> None:
    """The names a statement binds in its scope and the free names it uses (a function's own locals and
    parameters are neither)."""
    if isinstance(node, _SCOPES):
        if not isinstance(node, ast.Lambda):
            binds.add(node.name)
        args = getattr(node, "args", None)
        outer = [*getattr(node, "decorator_list", []), *getattr(node, "bases", []), *getattr(node, "keywords", [])]
        if args is not None:
            outer += [d for d in args.defaults + args.kw_defaults if d is not None]
        for child in outer:
            _names(child, binds, uses)
        inner_binds, inner_uses = set(), set()
        for child in node.body if isinstance(node.body, list) else [node.body]:
            _names(child, inner_binds, inner_uses)
        params = {a.arg for a in ast.walk(args) if isinstance(a, ast.arg)} if args is not None else set()
        uses |= inner_uses - inner_binds - params
        return
    if isinstance(node, ast.Name):
        (uses if isinstance(node.ctx, ast.Load) else binds).add(node.id)
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            binds.add(alias.asname or alias.name.split(".")[0])
        return
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        binds.update(node.names)
        return
    for child in ast.iter_child_nodes(node):
        _names(child, binds, uses)


def reached(answer: list[str], others: list[str]) -> list[str]:
    """The statements of `others` (cell sources) that the `answer` cells reach: those binding a name the answer
    binds (defining it again) or uses, and, in turn, those binding what they use."""
    wanted: set[str] = set()
    for source in answer:
        for statement in statements(source):
            if statement.binds is not None:
                wanted |= statement.binds | statement.uses
    pool = [s for source in others for s in statements(source)]
    kept = [False] * len(pool)
    grew = True
    while grew:
        grew = False
        for i, statement in enumerate(pool):
            if kept[i] or not (statement.binds is None or statement.binds & wanted):
                continue
            kept[i], grew = True, True
            wanted |= statement.uses
    return [s.source for s, keep in zip(pool, kept) if keep]

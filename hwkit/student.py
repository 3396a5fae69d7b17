"""Self-check from inside the notebook: `import hwkit.student as hw; hw.check()` (or `hw.check("lstm_cell")`).

It runs exactly what `hwkit check` runs (hwkit.checkcmd.run_check): the notebook as last saved, in a separate
kernel (sandboxed where the machine can), never in the student's own kernel, whose state the student's code can
change. It saves nothing, finds the notebook being edited from what Jupyter and VS Code tell the kernel, and shows
a table (HTML, with a plain-text fallback). This module is part of the engine a student installs; grading kernels
cannot import it, and grading and checking skip the cells that only call it (hwkit/notebooks.py)."""
from __future__ import annotations

import os
import time
from pathlib import Path

_COLOURS = {"pass": "#176b2c", "fail": "#b42318", "not answered": "#9a6700", "could not run": "#b42318",
            "answered (checked at grading)": "#176b2c"}

_PAGE = """<div class="hwkit-check">
<p><b>{{ saved }}</b></p>
<table style="border-collapse:collapse">
<tr>{% for h in headers %}<th style="border:1px solid #ccc;padding:.3em .5em;text-align:left">{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for c in r.cells %}<td style="border:1px solid #ccc;padding:.3em .5em;text-align:left;\
{% if loop.index == 4 %}color:{{ r.colour }};font-weight:bold{% endif %}">{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
{% if errors %}<p>{{ errors }}</p>{% endif %}
{% for line in summary %}<p>{{ line }}</p>{% endfor %}
</div>"""


class NotebookNotFound(Exception):
    """hw.check() cannot tell which notebook is being edited."""


def _inside_hwkit_kernel() -> bool:
    """True in a kernel that hwkit itself runs (grading, `hwkit check`): its environment sets the output cap."""
    return "HWKIT_OUTPUT_LIMIT" in os.environ


def _user_namespace() -> dict:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return getattr(shell, "user_ns", {}) or {}


def find_notebook(environ=None, user_ns=None, cwd: Path | None = None) -> Path:
    """The notebook being edited: VS Code's `__vsc_ipynb_file__`, Jupyter's JPY_SESSION_NAME or IPython's
    `__session__` (a path, absolute or relative to the server's root, while the kernel runs in the notebook's folder)."""
    environ = os.environ if environ is None else environ
    user_ns = _user_namespace() if user_ns is None else user_ns
    cwd = Path.cwd() if cwd is None else cwd
    named = [user_ns.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME"), user_ns.get("__session__")]
    for name in [n for n in named if isinstance(n, str) and n.strip().endswith(".ipynb")]:
        path = Path(name.strip()).expanduser()
        for candidate in ([path] if path.is_absolute() else [cwd / path, cwd / path.name]):
            if candidate.is_file():
                return candidate
    raise NotebookNotFound("hw.check() could not tell which notebook you are editing; give its path, e.g. "
                           'hw.check(path="nn-homework.ipynb")')


def check(part: str | list[str] | None = None, *, path: str | os.PathLike | None = None, lang: str | None = None):
    """Run the public checks on the last saved version of this notebook (or of `path`) and show a table."""
    if _inside_hwkit_kernel():
        print("hw.check() does nothing while hwkit runs this notebook (grading or `hwkit check`).")
        return None
    from hwkit.checkcmd import run_check

    notebook = Path(path) if path is not None else find_notebook()
    parts = [part] if isinstance(part, str) else list(part or [])
    report = run_check(notebook, parts, lang)
    show(report)
    return None


def _saved_line(report) -> str:
    from hwkit.checkcmd import TEXT

    try:
        stamp = time.strftime("%H:%M:%S", time.localtime(report.notebook.stat().st_mtime))
    except OSError:
        stamp = "?"
    return TEXT[report.lang]["saved"].format(name=f"{report.notebook.name} ({stamp})")


def _rows(report) -> list[dict]:
    from hwkit.checkcmd import status_word

    return [{"cells": [r.problem, r.title.get(report.lang, r.part), f"{r.points:g}", status_word(r.status, report.lang),
                       r.hint], "colour": _COLOURS.get(r.status, "#222")} for r in report.results]


def as_html(report) -> str:
    import jinja2

    from hwkit.checkcmd import TEXT

    return jinja2.Environment(autoescape=True).from_string(_PAGE).render(
        saved=_saved_line(report), headers=TEXT[report.lang]["headers"],
        rows=_rows(report), errors="; ".join(report.cell_errors[:5]), summary=report.summary_lines())


def as_text(report) -> str:
    from hwkit.checkcmd import TEXT

    rows = [list(TEXT[report.lang]["headers"])] + [r["cells"] for r in _rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    extra = ["; ".join(report.cell_errors[:5])] if report.cell_errors else []
    return "\n".join([_saved_line(report), *lines, *extra, *report.summary_lines()])


def show(report) -> None:
    """The table in the notebook (HTML where the front end shows it, text otherwise), or printed."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({"text/html": as_html(report), "text/plain": as_text(report)}, raw=True)
    else:
        print(as_text(report))

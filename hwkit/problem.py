"""What a problem author writes with: the records (hwkit.records) and `variable_part`, the common part.

A problem lives in templates/<id>/: problem.py (sampler, parts, references), notebook.j2 (statement and
cells) and kernel.py (its kernel-side probe code, if any). See docs/problem-authoring.md."""
from __future__ import annotations

from typing import Any

from hwkit.probes import read_variable
from hwkit.records import KernelModule, Mistake, Outcome, Part, Probe, Problem, Reply, Text, say

__all__ = ["KernelModule", "Mistake", "Outcome", "Part", "Probe", "Problem", "Reply", "Text", "say", "variable_part"]


def variable_part(part_id: str, points: float, title: Text, *, answer: Any, check: Any,
                  mistakes: list[Mistake] = (), kind: str = "value") -> Part:
    """The common part: the student sets a variable named like the part; its reference is fixed by the
    variant's parameters, and so are its known mistakes."""
    mistakes = list(mistakes)
    return Part(part_id, points, title, probe=lambda rng: read_variable(part_id),
                reference=lambda probe: answer, check=check, mistakes=lambda probe: mistakes, kind=kind)

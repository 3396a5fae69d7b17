"""The shape of one homework problem and the records that move between generation and grading.

A problem lives in templates/<id>/: problem.py (sampler, parts, references) and notebook.j2 (statement
and cells). A part says how to probe the kernel for the student's answer (`probe`), what the reference
reply is for that probe (`reference`, computed outside the kernel from the parameters), how the two
are compared (`check`), and which wrong replies are known mistakes (`mistakes`)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

Text = dict  # {"en": "...", "zh": "..."}


def say(en: str, zh: str) -> Text:
    return {"en": en, "zh": zh}


@dataclass(frozen=True)
class Probe:
    """Kernel-side code plus its inputs. The code sees `ns` (the student's namespace) and `inputs`
    (JSON values and numpy arrays) and must set `result` to JSON values and arrays: data only."""
    source: str
    inputs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    fraction: float
    note: str
    feedback: Text
    needs_review: bool = False   # written answers: provisional score, a person should confirm
    undecided: bool = False      # a formula the checker could not decide in time


@dataclass(frozen=True)
class Mistake:
    """A known wrong answer: if the reply matches `value` (same shape as a reference reply; for a
    dict reply only the keys given are compared), the outcome carries this note and feedback."""
    note: str
    value: Any
    feedback: Text


def _no_mistakes(probe: Probe) -> list[Mistake]:
    return []


@dataclass
class Part:
    id: str
    points: float
    title: Text
    probe: Callable[[random.Random], Probe]
    reference: Callable[[Probe], Any]
    check: Any                      # a hwkit.checks.Check
    mistakes: Callable[[Probe], list[Mistake]] = _no_mistakes
    kind: str = "value"             # value | formula | code | written | choice
    hidden_inputs: bool = False     # True: grading draws fresh inputs; self-check uses public ones
    # The self-check's probe, where it must differ from grading's (e.g. a statistical part whose public
    # reply is made deterministic in the kernel; grading never lets the kernel apply a tolerance).
    public_probe: Callable[[random.Random], Probe] | None = None
    # Turns the kernel's raw data into the values the check compares, in the grader (outside the
    # sandbox), so no judgement is ever made by code the student can tamper with.
    interpret: Callable[[Any, Probe], Any] | None = None

    def self_check_probe(self, rng: random.Random) -> Probe:
        return (self.public_probe or self.probe)(rng)


@dataclass
class Problem:
    """One bank entry, loaded from templates/<id>/problem.py."""
    id: str
    title: Text
    points: float
    sample: Callable[[random.Random], dict]
    note: Callable[[dict], str]
    parts: Callable[[dict], list[Part]]
    template: Path
    answers: Callable[[dict], dict]           # reference answers for answers.json (JSON values)
    context: Callable[[dict], dict] = lambda params: {}   # extra template variables (e.g. solution code)
    data: Callable[[Path], None] | None = None  # writes shared data files for the release, deterministic
    topic: str = "homework"

    def part_ids(self) -> list[str]:
        return [p.id for p in self.parts(self.sample(random.Random(0)))]


def variable_part(part_id: str, points: float, title: Text, *, answer: Any, check: Any,
                  mistakes: list[Mistake] = (), kind: str = "value") -> Part:
    """The common part: the student sets a variable named like the part; its reference is fixed by the
    variant's parameters, and so are its known mistakes."""
    from hwkit.probes import read_variable  # probes imports this module

    mistakes = list(mistakes)
    return Part(part_id, points, title, probe=lambda rng: read_variable(part_id),
                reference=lambda probe: answer, check=check, mistakes=lambda probe: mistakes, kind=kind)

"""The student's notebook namespace as the probes see it: names are looked up, never executed as text."""
from __future__ import annotations


class NotAnswered(Exception):
    """The answer is missing: the name is undefined, or not a function where a function was asked for."""


class Student:
    """Read access to the notebook's globals (the dict the cells ran in)."""

    def __init__(self, namespace: dict):
        self._namespace = namespace

    def value(self, name: str):
        if name not in self._namespace:
            raise NotAnswered(f"'{name}' is not defined")
        return self._namespace[name]

    def function(self, name: str):
        found = self.value(name)
        if not callable(found):
            raise NotAnswered(f"'{name}' is not a function")
        return found

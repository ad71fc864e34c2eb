"""Answers of the pure sizing functions, kept for the rest of the process.

The policies ask the same question of the same vLLM server in every scope that holds it (the
Flux and the Argo CD entry point of one environment), so `plan` and `simulate_karpenter` remember
their answers by the value of their arguments. Their inputs are frozen dataclasses, dicts,
tuples and numbers, whose `repr` spells out every field: equal reprs mean equal inputs.
Objects that are shared rather than compared (the instance catalog, loaded once per process)
are keyed by identity, and kept alive by the entry so an identity is never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

R = TypeVar("R")
MAX_ENTRIES = 4096  # a long test session plans thousands of variants: start over then


class ValueMemo:
    """One function's answers by argument value."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, tuple[Any, Any]] = {}

    def get(self, key: Hashable, compute: Callable[[], R], keep_alive: object = None) -> R:
        if key not in self._answers:
            if len(self._answers) >= MAX_ENTRIES:
                self._answers.clear()
            self._answers[key] = (compute(), keep_alive)
        answer: R = self._answers[key][0]
        return answer


def value_key(*parts: object) -> str:
    """A key that two calls share only when their arguments are equal field by field."""
    return repr(parts)

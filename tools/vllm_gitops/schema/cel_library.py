"""The Kubernetes CEL libraries that cel-python lacks, as functions for `celpy` programs.

Kubernetes adds to standard CEL: the cel-go strings extension (split, lowerAscii, ...),
regex `find`/`findAll`, list helpers (isSorted, sum, min, max, indexOf) and `quantity`
(https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-list-library and the
sections after it). Implemented: what the locked schemas use (find, split) and the rest of
those libraries that need no extra dependency. Not implemented (a rule using them is reported
as unevaluable): url, ip/cidr, format, authz, semver.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from fractions import Fraction
from functools import lru_cache
from typing import Any

from celpy import celtypes
from celpy.evaluation import CELEvalError

from vllm_gitops.sizing.quantity import exact_quantity


def _error(message: str) -> CELEvalError:
    return CELEvalError(message, ValueError, None)


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# --- strings (https://pkg.go.dev/github.com/google/cel-go/ext#Strings) -------------------

def _split(text: str, separator: str, limit: int = -1) -> celtypes.ListType:
    if limit == 0:
        return celtypes.ListType([])
    parts = str(text).split(str(separator), int(limit) - 1 if limit > 0 else -1) \
        if separator else list(str(text))
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


def _index_of(target: Any, item: Any, start: int = 0) -> celtypes.IntType:
    if isinstance(target, celtypes.ListType):
        return celtypes.IntType(next((i for i, x in enumerate(target) if x == item), -1))
    return celtypes.IntType(str(target).find(str(item), int(start)))


def _last_index_of(target: Any, item: Any) -> celtypes.IntType:
    if isinstance(target, celtypes.ListType):
        found = [i for i, x in enumerate(target) if x == item]
        return celtypes.IntType(found[-1] if found else -1)
    return celtypes.IntType(str(target).rfind(str(item)))


def _substring(text: str, start: int, end: int | None = None) -> celtypes.StringType:
    stop = len(text) if end is None else int(end)
    if not 0 <= int(start) <= stop <= len(text):
        raise _error(f"substring out of range: {start}..{stop} of {len(text)}")
    return celtypes.StringType(str(text)[int(start):stop])


def _replace(text: str, old: str, new: str, limit: int = -1) -> celtypes.StringType:
    return celtypes.StringType(str(text).replace(str(old), str(new), int(limit)))


def _join(items: celtypes.ListType, separator: str = "") -> celtypes.StringType:
    return celtypes.StringType(str(separator).join(str(x) for x in items))


def _char_at(text: str, index: int) -> celtypes.StringType:
    if not 0 <= int(index) <= len(text):
        raise _error(f"index out of range: {index}")
    return celtypes.StringType(str(text)[int(index):int(index) + 1])


# --- regex (https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-regex-library) ---

def _find(text: str, pattern: str) -> celtypes.StringType:
    match = _regex(str(pattern)).search(str(text))
    return celtypes.StringType(match.group(0) if match else "")


def _find_all(text: str, pattern: str, limit: int = -1) -> celtypes.ListType:
    found = [m.group(0) for m in _regex(str(pattern)).finditer(str(text))]
    found = found if int(limit) < 0 else found[:int(limit)]
    return celtypes.ListType([celtypes.StringType(x) for x in found])


# --- lists (https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-list-library) ---

def _is_sorted(items: list[Any]) -> celtypes.BoolType:
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


def _sum(items: list[Any]) -> Any:
    total: Any = celtypes.IntType(0)
    for item in items:
        total = item if total == 0 and not isinstance(item, celtypes.IntType) else total + item
    return total


def _min(items: list[Any]) -> Any:
    if not items:
        raise _error("min called on an empty list")
    return min(items)


def _max(items: list[Any]) -> Any:
    if not items:
        raise _error("max called on an empty list")
    return max(items)


# --- quantity (https://kubernetes.io/docs/reference/using-api/cel/#kubernetes-quantity-library)

class Quantity:
    """A resource quantity, exact (a Fraction of base units)."""

    def __init__(self, value: Fraction) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def _quantity(text: str) -> Quantity:
    value = exact_quantity(text)
    if value is None:
        raise _error(f"invalid quantity {text!r}")
    return Quantity(value)


def _other(value: Any) -> Fraction:
    if isinstance(value, Quantity):
        return value.value
    if isinstance(value, celtypes.IntType | int):
        return Fraction(int(value))
    raise _error("quantity arithmetic needs a quantity or an int")


QUANTITY_METHODS: dict[str, Callable[..., Any]] = {
    "isQuantity": lambda text: celtypes.BoolType(exact_quantity(text) is not None),
    "quantity": _quantity,
    "isGreaterThan": lambda q, o: celtypes.BoolType(q.value > _other(o)),
    "isLessThan": lambda q, o: celtypes.BoolType(q.value < _other(o)),
    "compareTo": lambda q, o: celtypes.IntType((q.value > _other(o)) - (q.value < _other(o))),
    "add": lambda q, o: Quantity(q.value + _other(o)),
    "sub": lambda q, o: Quantity(q.value - _other(o)),
    "sign": lambda q: celtypes.IntType((q.value > 0) - (q.value < 0)),
    "isInteger": lambda q: celtypes.BoolType(q.value.denominator == 1),
    "asInteger": lambda q: celtypes.IntType(int(q.value)),
    "asApproximateFloat": lambda q: celtypes.DoubleType(float(q.value)),
}

KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "split": _split, "indexOf": _index_of, "lastIndexOf": _last_index_of,
    "substring": _substring, "replace": _replace, "join": _join, "charAt": _char_at,
    "lowerAscii": lambda text: celtypes.StringType(str(text).lower()),
    "upperAscii": lambda text: celtypes.StringType(str(text).upper()),
    "trim": lambda text: celtypes.StringType(str(text).strip()),
    "find": _find, "findAll": _find_all,
    "isSorted": _is_sorted, "sum": _sum, "min": _min, "max": _max,
    **QUANTITY_METHODS,
}

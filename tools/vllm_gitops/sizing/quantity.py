"""Kubernetes resource quantities ("500m", "64Gi", "1.5", "10G") as plain numbers."""

from __future__ import annotations

import re
from fractions import Fraction

from vllm_gitops.errors import ToolError

MB = 1_000_000  # network and disk rates are quoted in decimal megabytes
MIB = 2.0**20
GIB = 2.0**30

# https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/
_SUFFIX = {
    "": Fraction(1), "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18), "Ki": Fraction(2**10),
    "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|([a-zA-Z]*))$")


def exact_quantity(text: str) -> Fraction | None:
    """A quantity's exact value in base units, or None when it is not a quantity."""
    match = _QUANTITY.match(str(text))
    if not match or (match.group(3) or "") not in _SUFFIX:
        return None
    number = Fraction(match.group(1))
    if match.group(2):
        return number * Fraction(10) ** int(match.group(2)[1:])
    return number * _SUFFIX[match.group(3) or ""]


def parse_quantity(value: object) -> float:
    """A quantity in base units: cores for cpu, bytes for memory, a count otherwise."""
    if isinstance(value, bool):
        raise ToolError(f"invalid resource quantity {value!r}")
    if isinstance(value, int | float):
        return float(value)
    exact = exact_quantity(str(value).strip())
    if exact is None:
        raise ToolError(f"invalid resource quantity {value!r}")
    return float(exact)

"""Kubernetes resource quantities ("500m", "64Gi", "1.5", "10G") as plain numbers."""

from __future__ import annotations

import re

from vllm_gitops.errors import ToolError

MB = 1_000_000  # network and disk rates are quoted in decimal megabytes
MIB = 2.0**20
GIB = 2.0**30

_SUFFIX = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}
_QUANTITY = re.compile(r"^([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")


def parse_quantity(value: object) -> float:
    """A quantity in base units: cores for cpu, bytes for memory, a count otherwise."""
    if isinstance(value, bool):
        raise ToolError(f"invalid resource quantity {value!r}")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ToolError(f"invalid resource quantity {value!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]

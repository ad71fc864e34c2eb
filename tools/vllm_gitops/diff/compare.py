"""Resources of one cluster at two revisions: what is added, removed, changed, and how."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from vllm_gitops.diff.hazards import (
    Hazard,
    Key,
    describe,
    hazards_of_change,
    hazards_of_moves,
    hazards_of_removals,
    prunes,
    unit_label,
)
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope


def resource_key(doc: dict[str, Any]) -> Key:
    api_version = str(doc.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return (group, str(doc.get("kind", "")), str(meta.get("namespace") or ""),
            str(meta.get("name", "")))


@dataclass
class ResourceChange:
    key: Key
    status: str  # added | removed | changed
    diff: str  # unified YAML diff (the whole object for added/removed)

    @property
    def title(self) -> str:
        return describe(self.key)

    def to_dict(self) -> dict[str, Any]:
        group, kind, namespace, name = self.key
        return {"status": self.status, "group": group, "kind": kind,
                "namespace": namespace or None, "name": name, "diff": self.diff}


@dataclass
class ClusterChanges:
    resources: list[ResourceChange] = field(default_factory=list)
    hazards: list[Hazard] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.resources if r.status == status)


def documents_by_key(scope: Scope | None) -> dict[Key, dict[str, Any]]:
    return {resource_key(r.doc): r.doc for r in scope.resources} if scope else {}


def compare(base: Scope | None, head: Scope | None, serving: set[Key]) -> ClusterChanges:
    """`serving`: keys of the vLLM workloads (at either revision)."""
    before, after = documents_by_key(base), documents_by_key(head)
    out = ClusterChanges()
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "changed"
        out.resources.append(ResourceChange(key, status, yaml_diff(old, new, describe(key))))
        if old is not None and new is not None:
            out.hazards += hazards_of_change(key, old, new, key in serving)
    removed = {k: v for k, v in before.items() if k not in after}
    added = {k: v for k, v in after.items() if k not in before}
    out.hazards += hazards_of_removals(removed, added)
    out.hazards += hazards_of_moves(_moves(base, head))
    return out


def _sync_units(scope: Scope | None) -> dict[Key, Resource]:
    """Each object's Flux Kustomization / Argo CD Application."""
    units = {}
    for resource in scope.resources if scope else []:
        unit = scope.sync_parent(resource) if scope else None
        if unit is not None:
            units[resource_key(resource.doc)] = unit
    return units


def _moves(base: Scope | None, head: Scope | None) -> dict[tuple[str, str], list[Key]]:
    """(old unit, new unit) -> the objects that move between them and that the old one may
    prune (it prunes, and the object applied from the base does not opt out)."""
    before, after = _sync_units(base), _sync_units(head)
    docs = documents_by_key(base)
    moves: dict[tuple[str, str], list[Key]] = {}
    for key in sorted(before.keys() & after.keys()):
        old, new = unit_label(before[key]), unit_label(after[key])
        if old != new and prunes(before[key], docs[key]):
            moves.setdefault((old, new), []).append(key)
    return moves


def yaml_diff(old: dict[str, Any] | None, new: dict[str, Any] | None, title: str) -> str:
    a = _dump(old).splitlines(keepends=True)
    b = _dump(new).splitlines(keepends=True)
    lines = difflib.unified_diff(a, b, fromfile=f"a/{title}" if old else "/dev/null",
                                 tofile=f"b/{title}" if new else "/dev/null", n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _dump(doc: dict[str, Any] | None) -> str:
    if doc is None:
        return ""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=100,
                          allow_unicode=True)

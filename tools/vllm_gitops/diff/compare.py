"""Resources of one cluster at two revisions: what is added, removed, changed, and how."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import yaml

from vllm_gitops.diff.hazards import (
    Hazard,
    Key,
    Move,
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
    out.hazards += hazards_of_moves(_moves(base, head, before))
    return out


def _sync_units(scope: Scope | None) -> dict[Key, Resource]:
    """Each object's Flux Kustomization / Argo CD Application."""
    if scope is None:
        return {}
    units = ((resource_key(r.doc), scope.sync_parent(r)) for r in scope.resources)
    return {key: unit for key, unit in units if unit is not None}


def _moves(base: Scope | None, head: Scope | None, before: dict[Key, dict[str, Any]]
           ) -> dict[tuple[str, str], tuple[Move, list[Key]]]:
    """The objects that move from one sync unit to another and that the old one may prune
    (it prunes, and the object applied from the base, `before`, does not opt out)."""
    old_units, new_units = _sync_units(base), _sync_units(head)
    moves: dict[tuple[str, str], tuple[Move, list[Key]]] = {}
    for key in sorted(old_units.keys() & new_units.keys()):
        old, new = old_units[key], new_units[key]
        labels = unit_label(old), unit_label(new)
        if labels[0] != labels[1] and prunes(old, before[key]):
            moves.setdefault(labels, ((old, new), []))[1].append(key)
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

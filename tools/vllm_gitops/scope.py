"""One Scope is everything one target syncs: a cluster entry point with all it points at,
an overlay, a base, or the documents of the paths given on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vllm_gitops.findings import Finding
from vllm_gitops.resources import Resource


@dataclass
class Scope:
    name: str  # repo-relative target path, e.g. "clusters/prod" or "overlays/dev"
    kind: str  # "cluster" | "overlay" | "base" | "paths"
    resources: list[Resource] = field(default_factory=list)
    # Findings raised while rendering/loading (bad YAML, kustomize errors): reported as they are.
    findings: list[Finding] = field(default_factory=list)
    # The folder that resources' source files are named relative to (the repository), for
    # the few rules that look at files beside the manifests (Flux bootstrap layout).
    root: Path | None = None
    # id(resource) -> the Flux Kustomization / Argo CD Application in scope that syncs it
    # (see sync_parent); resources of the entry point itself have none.
    synced_by: dict[int, Resource] = field(default_factory=dict)
    # The folders rendered whole into the scope, each rendered without failure (coverage.py).
    rendered: list[Path] = field(default_factory=list)
    _by_kind: dict[str, list[Resource]] = field(default_factory=dict, repr=False, compare=False)
    _indexed: int = field(default=-1, repr=False, compare=False)

    def of_kind(self, *kinds: str) -> Iterator[Resource]:
        """The scope's objects of these kinds, in scope order."""
        index = self._kind_index()
        if len(kinds) == 1:
            return iter(index.get(kinds[0], ()))
        wanted = {id(r) for kind in kinds for r in index.get(kind, ())}
        return (r for r in self.resources if id(r) in wanted)

    def holds_any(self, *kinds: str) -> bool:
        """Whether the scope has any object of these kinds: a reference check (X names a Y
        that must exist) runs only where Y could live, so a partial target (one base, the
        apps of an overlay without its infrastructure) raises no false alarm."""
        index = self._kind_index()
        return any(kind in index for kind in kinds)

    def _kind_index(self) -> dict[str, list[Resource]]:
        """Objects by kind; rebuilt when the scope grew (while it is being loaded)."""
        if self._indexed != len(self.resources):
            self._by_kind = {}
            for resource in self.resources:
                self._by_kind.setdefault(resource.kind, []).append(resource)
            self._indexed = len(self.resources)
        return self._by_kind

    def sync_parent(self, resource: Resource) -> Resource | None:
        """The Flux Kustomization or Argo CD Application in scope that applies `resource`."""
        return self.synced_by.get(id(resource))

    def find(self, kind: str, name: str, namespace: str | None = None) -> Resource | None:
        for res in self.resources:
            if res.kind == kind and res.name == name and (
                namespace is None or res.namespace in (None, namespace)
            ):
                return res
        return None

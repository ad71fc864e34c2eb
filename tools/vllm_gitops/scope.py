"""One Scope is everything one target syncs: a cluster entry point with all it points at,
an overlay, a base, or the documents of the paths given on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from vllm_gitops.findings import Finding
from vllm_gitops.resources import Resource


@dataclass
class Scope:
    name: str  # repo-relative target path, e.g. "clusters/prod" or "overlays/dev"
    kind: str  # "cluster" | "overlay" | "base" | "paths"
    resources: list[Resource] = field(default_factory=list)
    # Findings raised while rendering/loading (bad YAML, kustomize errors): reported as they are.
    findings: list[Finding] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> Iterator[Resource]:
        return (r for r in self.resources if r.kind in kinds)

    def find(self, kind: str, name: str, namespace: str | None = None) -> Resource | None:
        for res in self.resources:
            if res.kind == kind and res.name == name and (
                namespace is None or res.namespace in (None, namespace)
            ):
                return res
        return None

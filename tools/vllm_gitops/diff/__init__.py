"""`tools/diff`: what a pull request changes in each cluster, rendered.

Every cluster entry point (`clusters/<env>/<controller>`, with what its Flux Kustomizations and
Argo CD Applications sync) is rendered at the base revision (a temporary git worktree) and at
the head (another worktree, or the working tree itself). Per cluster: the resources added,
removed and changed with a YAML diff of each; the changes the apply refuses or that lose data
(`hazards.py`); the serving pods a change restarts; the hourly cost before and after and the
models whose fit or context changes (`cost.py`, from the sizing planner).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vllm_gitops.changes import Closure, scope_units
from vllm_gitops.diff.compare import ClusterChanges, compare
from vllm_gitops.diff.cost import ClusterCost, ModelChange, cluster_cost, model_changes
from vllm_gitops.diff.hazards import KINDS, RESTART, Hazard, describe
from vllm_gitops.findings import Severity
from vllm_gitops.pipeline import ScopeLoader, discover_targets
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings


@dataclass
class ClusterDiff:
    name: str  # e.g. clusters/prod/flux
    status: str  # added | removed | present
    changes: ClusterChanges
    cost_before: tuple[float, float] | None
    cost_after: tuple[float, float] | None
    unpriced: bool  # a server's instance (so its price) is unknown at one revision
    models: list[ModelChange] = field(default_factory=list)
    render_errors: dict[str, list[str]] = field(default_factory=dict)  # side -> messages

    @property
    def environment(self) -> str:
        parts = self.name.split("/")
        return parts[1] if len(parts) > 1 else self.name

    @property
    def unchanged(self) -> bool:
        return not (self.changes.resources or self.models or self.render_errors
                    or self.status != "present")

    def hazard_count(self, kind: str) -> int:
        return sum(1 for h in self.changes.hazards if h.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.name,
            "environment": self.environment,
            "status": self.status,
            "summary": {"added": self.changes.count("added"),
                        "removed": self.changes.count("removed"),
                        "changed": self.changes.count("changed"),
                        **{kind: self.hazard_count(kind) for kind in KINDS}},
            "cost_usd_per_hour": {"before": _range(self.cost_before),
                                  "after": _range(self.cost_after),
                                  "complete": not self.unpriced},
            "hazards": [h.to_dict() for h in self.changes.hazards],
            "models": [m.to_dict() for m in self.models],
            "resources": [r.to_dict() for r in self.changes.resources],
            "render_errors": self.render_errors,
        }


def _range(value: tuple[float, float] | None) -> dict[str, float] | None:
    return {"min": value[0], "max": value[1]} if value else None


@dataclass
class DiffReport:
    base: str  # "REF (sha)"
    head: str
    clusters: list[ClusterDiff]

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "head": self.head,
                "clusters": [c.to_dict() for c in self.clusters]}


def render_clusters(root: Path) -> dict[str, Scope]:
    """Every cluster entry point of the checkout at `root`, rendered into its Scope."""
    settings = load_settings(root)
    targets = [t for t in discover_targets(settings)  # entry points: clusters/<env>/<tool>
               if t.kind == "cluster" and len(Path(t.name).parts) == 3]
    memo: dict[Path, Closure] = {}  # closures shared between the targets
    # What they sync (transitively) renders in the same parallel batch.
    folders = {unit for t in targets for unit in scope_units(t.path, root, memo)}
    loader = ScopeLoader(settings, closures=memo)
    loader.prefetch(sorted(f for f in folders if f.is_dir()))
    return {t.name: loader.load(t) for t in targets}


def diff_clusters(base: dict[str, Scope], head: dict[str, Scope]) -> list[ClusterDiff]:
    out = []
    for name in sorted(base.keys() | head.keys()):
        old, new = base.get(name), head.get(name)
        status = "added" if old is None else "removed" if new is None else "present"
        errors = {side: _render_errors(scope) for side, scope in (("base", old), ("head", new))}
        if any(errors.values()):
            # A side that does not render would show as "everything removed": compare nothing.
            out.append(ClusterDiff(name, status, ClusterChanges(), None, None, True,
                                   render_errors={k: v for k, v in errors.items() if v}))
            continue
        before, after = cluster_cost(old), cluster_cost(new)
        changes = compare(old, new, before.servers.keys() | after.servers.keys())
        changes.hazards = [_with_restart_time(h, after) for h in changes.hazards]
        out.append(ClusterDiff(
            name, status, changes, before.hourly() if old else None,
            after.hourly() if new else None, not (before.priced and after.priced),
            model_changes(before, after)))
    return out


def _with_restart_time(hazard: Hazard, after: ClusterCost) -> Hazard:
    """A restart says how long each replica is out, from the planner's startup estimate."""
    if hazard.kind != RESTART:
        return hazard
    server = next((s for s in after.servers.values() if describe(s.key) == hazard.resource),
                  None)
    seconds = server.facts.get("restart_seconds") if server else None
    if not seconds:
        return hazard
    return replace(hazard, message=f"{hazard.message} Each replica is out for about "
                   f"{seconds / 60:.0f} min (model load from its volume, compile, CUDA graphs).")


def _render_errors(scope: Scope | None) -> list[str]:
    if scope is None:
        return []
    return sorted({f"{f.location or f.target}: {f.message}" for f in scope.findings
                   if f.severity is Severity.ERROR})

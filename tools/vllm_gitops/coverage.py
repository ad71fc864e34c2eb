"""Which targets are checked inside another: each kustomization is rendered once.

kustomize builds a folder that another kustomization includes exactly as it builds it alone,
then applies the includer's changes (namespace, labels, patches). So a base inside every
overlay, or an overlay a cluster entry point syncs (`apps`, each model folder) is already
rendered, and checked, as part of the bigger target: in the context it is deployed in (beside
the gateway, the other models, the NodePools). Rendering and checking it again alone would repeat
the work and judge it without that context. Such a target is *covered*; the biggest scopes
(cluster entry points first) are *checked*.

A kustomization that only lists other kustomization folders (`overlays/prod`: infrastructure,
apps and models; `overlays/prod/models`: one folder per model) renders nothing of its own: it
is covered when each folder it lists is.

The plan is read from the source files (changes.py) and confirmed after rendering: a target is
covered only by a scope whose render of an including folder succeeded. A target under a render
that failed is checked on its own, so a failure is reported by the innermost kustomization
that fails (`innermost_render_failures`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic

from vllm_gitops.changes import Closure, T, kustomization_closure, scope_units
from vllm_gitops.findings import Finding
from vllm_gitops.kustomization import is_remote, kustomization_file
from vllm_gitops.yamlsafe import YamlProblem, load_file_cached

RENDER_FAILED = "kustomize/render-failed"
# A kustomization with only these fields adds nothing to what it lists.
AGGREGATION_KEYS = {"apiVersion", "kind", "metadata", "resources"}


@dataclass
class Coverage(Generic[T]):
    """Targets to check as scopes, and for each covered one the target that includes it."""

    checked: list[T]
    covered: dict[str, str] = field(default_factory=dict)
    units: dict[str, list[Path]] = field(default_factory=dict)  # checked name -> folders
    parts: dict[str, list[Path]] = field(default_factory=dict)  # covered name -> folders


def plan(targets: Sequence[T], repo_root: Path, memo: dict[Path, Closure]) -> Coverage[T]:
    """Cluster entry points first, then the targets that reach most folders: each is checked
    unless a scope checked before it reaches its folder."""
    units = {t.name: scope_units(t.path, repo_root, memo) for t in targets}
    reach = {name: _folders(folders, memo) for name, folders in units.items()}
    order = sorted(targets, key=lambda t: (t.kind != "cluster", -len(reach[t.name]), t.name))
    checked: list[T] = []
    covered: dict[str, str] = {}
    parts: dict[str, list[Path]] = {}
    targets_at = {Path(os.path.normpath(t.path)) for t in targets}
    for target in order:
        folders = aggregated_parts(Path(os.path.normpath(target.path)))
        by = next((c for c in checked if all(f in reach[c.name] for f in folders)), None)
        if by is None:
            by, folders = _split(target, folders, checked, units, targets_at)
        if by is None:
            checked.append(target)
        else:
            covered[target.name], parts[target.name] = by.name, folders
    names = {t.name for t in checked}
    kept = [t for t in targets if t.name in names]  # in the given order
    return Coverage(kept, covered, {t.name: units[t.name] for t in kept}, parts)


def _split(target: T, folders: list[Path], checked: list[T], units: dict[str, list[Path]],
           targets_at: set[Path]) -> tuple[T | None, list[Path]]:
    """An aggregation of sync units (overlays/<env>: infrastructure, apps, each model) that a
    cluster syncs only in part is not checked whole: there its other parts (a model nothing
    syncs) would be judged as if deployed beside the rest. Each part is a target of its own.
    -> (a cluster syncing some parts, those parts)."""
    clusters = [c for c in checked if c.kind == "cluster"]
    synced = [f for f in folders if any(f in units[c.name] for c in clusters)]
    if folders == [Path(os.path.normpath(target.path))] or not synced or not all(
            f in targets_at for f in folders if f not in synced):
        return None, folders
    return next(c for c in clusters if synced[0] in units[c.name]), synced


def aggregated_parts(folder: Path, walking: frozenset[Path] = frozenset()) -> list[Path]:
    """The kustomization folders a pure aggregation lists (recursively; none when it lists
    nothing, like the models of an environment without any), else [folder]."""
    kfile = kustomization_file(folder)
    try:
        docs = load_file_cached(kfile, str(kfile)) if kfile else ()
    except YamlProblem:
        return [folder]
    data = docs[0].data if len(docs) == 1 else None
    if not isinstance(data, dict) or set(data) - AGGREGATION_KEYS or data.get(
            "kind", "Kustomization") != "Kustomization":
        return [folder]
    entries = data.get("resources") or []
    if not isinstance(entries, list) or not all(
            isinstance(e, str) and not is_remote(e) and not os.path.isabs(e) for e in entries):
        return [folder]
    children = [Path(os.path.normpath(folder / entry)) for entry in entries]
    walking = walking | {folder}
    if any(child in walking or kustomization_file(child) is None for child in children):
        return [folder]  # a file, a plain folder or a loop: kustomize's own business
    return [part for child in children for part in aggregated_parts(child, walking)]


def reached(rendered_units: Iterable[Path], memo: dict[Path, Closure]) -> frozenset[Path]:
    """Folders inside the units a scope really rendered (each without a render failure)."""
    return frozenset(_folders(rendered_units, memo))


def unconfirmed(targets: Sequence[T], coverage: Coverage[T],
                confirmed: Iterable[Path]) -> list[T]:
    """Covered targets that no checked scope really rendered: they are checked on their own."""
    folders = {Path(os.path.normpath(folder)) for folder in confirmed}
    return [t for t in targets if t.name in coverage.covered
            and not all(part in folders for part in coverage.parts[t.name])]


def innermost_render_failures(findings: list[Finding], repo_root: Path,
                              memo: dict[Path, Closure]) -> list[Finding]:
    """A kustomization fails when one it includes fails: report the included one only."""
    failed = {f.location.file for f in findings if f.rule == RENDER_FAILED and f.location}
    folders = {name: Path(os.path.normpath(repo_root / name)).parent for name in failed}

    def caused_by_another(finding: Finding) -> bool:
        """It includes another failing folder that does not include it back (a cycle of
        kustomizations is reported by each)."""
        if finding.rule != RENDER_FAILED or finding.location is None:
            return False
        own = folders[finding.location.file]
        inside = _folders([own], memo) - {own}
        return any(folder in inside and own not in _folders([folder], memo)
                   for folder in folders.values())

    return [f for f in findings if not caused_by_another(f)]


def _folders(units: Iterable[Path], memo: dict[Path, Closure]) -> set[Path]:
    found: set[Path] = set()
    for folder in (Path(os.path.normpath(unit)) for unit in units):
        if kustomization_file(folder) is None:
            continue  # a plain folder of YAML includes no kustomization
        found |= (memo[folder] if folder in memo
                  else kustomization_closure(folder, memo)).folders
    return found

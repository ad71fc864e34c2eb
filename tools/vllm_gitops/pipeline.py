"""The validation pipeline: discover → render → load → schema → policies → report.

Each stage lives in its own module; this one wires them and owns the Scope of each target:
for a cluster entry point that is everything Flux or Argo CD would sync from it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_gitops.cache import (
    SCHEMA_VERDICTS,
    CheckCache,
    CheckedTarget,
    Inputs,
    RenderCache,
    render_cache,
)
from vllm_gitops.changes import Closure, gitops_paths
from vllm_gitops.coverage import (
    RENDER_FAILED,
    Coverage,
    innermost_render_failures,
    reached,
    unconfirmed,
)
from vllm_gitops.coverage import plan as plan_coverage
from vllm_gitops.errors import ToolError
from vllm_gitops.findings import Finding, Severity, SourceLocation, sort_key
from vllm_gitops.kustomization import YAML_SUFFIXES, kustomization_file, preflight
from vllm_gitops.load import resources_from_file, resources_from_render, source_documents
from vllm_gitops.render import Renderer, RenderFailed, find_renderer
from vllm_gitops.resources import Resource, SourceLayer
from vllm_gitops.schema.locations import SchemaKey, SchemaLocations
from vllm_gitops.scope import Scope
from vllm_gitops.settings import Settings, find_repo_root

# The policies (with the sizing engine) and the schema engine (with jsonschema) take a third of a
# second to import: they are imported when first needed, which is after the renders started,
# so the import runs while kustomize does, and a run served from the cache never imports them.
if TYPE_CHECKING:
    from vllm_gitops.schema.engine import Problem, SchemaEngine, Verdict

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Target:
    path: Path  # absolute
    name: str  # repo-relative, as shown in findings
    kind: str  # cluster | overlay | base | paths


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    targets: int = 0
    resources: int = 0
    scopes: int = 0  # targets checked as a whole; the others are checked inside them

    def checked_whole(self) -> str:
        """"N checked whole, " when some targets were checked inside others, else ""."""
        return f"{self.scopes} checked whole, " if self.scopes < self.targets else ""

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity is severity)

    def summary(self) -> dict[str, int]:
        return {"errors": self.count(Severity.ERROR), "warnings": self.count(Severity.WARNING),
                "targets": self.targets, "scopes": self.scopes, "resources": self.resources}


def discover_targets(settings: Settings) -> list[Target]:
    """Every kustomization under clusters/, overlays/ and base/ (components are not targets)."""
    targets = []
    kinds = {"clusters": "cluster", "overlays": "overlay", "base": "base"}
    for root_name in settings.discover_roots:
        root = settings.repo_root / root_name
        for kfile in sorted(root.rglob("kustomization.y*ml")) if root.is_dir() else []:
            if any(part.startswith(".") for part in kfile.relative_to(root).parts):
                continue
            docs = source_documents(kfile)
            if docs and isinstance(docs[0].data, dict) and docs[0].data.get("kind") == "Component":
                continue
            folder = kfile.parent
            name = folder.relative_to(settings.repo_root).as_posix()
            targets.append(Target(folder, name, kinds.get(root_name, "base")))
    return targets


def repo_relative(path: Path, repo_root: Path) -> str:
    """A user-given path as shown in findings: repo-relative inside the repository, else
    relative to the current folder (or absolute); exit 2 when it does not exist."""
    if not path.exists():
        raise ToolError(f"no such file or folder: {path}")
    resolved = path.resolve()
    if resolved == repo_root or repo_root in resolved.parents:
        return resolved.relative_to(repo_root).as_posix() or "."
    return display_path(resolved)


def display_path(path: Path) -> str:
    """How a researcher can open a file outside the repository: from the current folder."""
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def confinement_root(path: Path, repo_root: Path) -> Path:
    """The tree a user-given path's references must stay in: this repository, or the
    repository (or, failing that, the folder) the path lives in."""
    resolved = path.resolve()
    if resolved == repo_root or repo_root in resolved.parents:
        return repo_root
    return find_repo_root(resolved if resolved.is_dir() else resolved.parent)


def targets_from_paths(paths: list[Path], settings: Settings) -> Target:
    """The documents of all given paths form one scope (CLI contract)."""
    names = [repo_relative(path, settings.repo_root) for path in paths]
    return Target(settings.repo_root, " + ".join(names), "paths")


@dataclass
class RenderedFolder:
    """One kustomization rendered once, shared by every scope that includes it."""

    resources: list[Resource] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    ok: bool = True  # kustomize rendered it (pre-flight did not block it, it did not fail)
    cacheable: bool = True  # False after a transient failure (a timeout)


class ScopeLoader:
    """Renders targets into Scopes, following Flux/Argo CD paths from cluster entry points.

    Each folder is rendered once (a cluster entry point reuses its overlays' renders), and
    `prefetch` renders many folders in parallel: kustomize runs as separate processes.
    """

    def __init__(self, settings: Settings, use_cache: bool = True,
                 closures: dict[Path, Closure] | None = None) -> None:
        self.settings = settings
        self._renderer: Renderer | None = None
        self._rendered: dict[Path, RenderedFolder] = {}
        self._pending: dict[Path, Future[RenderedFolder]] = {}
        self._pool: ThreadPoolExecutor | None = None
        # kustomization closures (changes.py) of this run, shared by the cache and coverage
        self.closures: dict[Path, Closure] = {} if closures is None else closures
        self._use_cache = use_cache
        self._cache: RenderCache | None = None

    @property
    def cache(self) -> RenderCache | None:
        """Renders kept on disk (cache.py); None when disabled."""
        if self._use_cache and self._cache is None:
            try:
                command = self.renderer.command
            except ToolError:  # no kustomize: a render (if any is needed) will say so
                command = ("no-kustomize",)
            self._cache = render_cache(self.settings, command)
            self._use_cache = self._cache is not None
        return self._cache

    @property
    def renderer(self) -> Renderer:
        if self._renderer is None:
            self._renderer = find_renderer(self.settings.kustomize,
                                           self.settings.render_timeout_seconds)
        return self._renderer

    def prefetch(self, folders: list[Path], progress: Progress | None = None) -> None:
        """Render many folders at once, reporting each as it finishes."""
        self.start(folders)
        self.wait(progress)

    def start(self, folders: list[Path]) -> None:
        """Start rendering folders in the background (kustomize runs as separate processes,
        in parallel); `load` and `wait` take the results."""
        todo = [f.resolve() for f in folders if kustomization_file(f) is not None]
        todo = [f for f in dict.fromkeys(todo) if f not in self._rendered and f not in
                self._pending]
        if not todo:
            return
        _ = self.renderer  # resolve the binary (or fail) once, before the threads start
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2))
        self._pending.update({folder: self._pool.submit(self._render_folder, folder)
                              for folder in todo})

    def wait(self, progress: Progress | None = None) -> None:
        """Take every started render, reporting each as it finishes."""
        pending = {future: folder for folder, future in self._pending.items()}
        for done, future in enumerate(as_completed(pending), start=1):
            folder = pending[future]
            self._take(folder)
            if progress:
                name = folder.relative_to(self.settings.repo_root).as_posix()
                progress(done, len(pending), f"rendered {name}")
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _take(self, folder: Path) -> RenderedFolder:
        """A folder's render: started earlier, or now."""
        if folder in self._pending:
            self._rendered[folder] = self._pending.pop(folder).result()
        elif folder not in self._rendered:
            self._rendered[folder] = self._render_folder(folder)
        return self._rendered[folder]

    def load(self, target: Target, paths: list[Path] | None = None) -> Scope:
        """The scope of a target, or of user-given paths (which may lie in other trees)."""
        scope = Scope(target.name, target.kind, root=self.settings.repo_root)
        visited: set[Path] = set()
        roots = {path: confinement_root(path, self.settings.repo_root)
                 for path in paths or [target.path]}
        for path, root in roots.items():
            if root == self.settings.repo_root:
                self._load_path(scope, path.resolve(), visited)
        self._follow_gitops(scope, visited)
        for path, root in roots.items():
            if root != self.settings.repo_root:
                self._add(scope, *self._load_foreign(target, path, root))
        return scope

    def _load_foreign(self, target: Target, path: Path, root: Path) -> tuple[
            list[Resource], list[Finding]]:
        """A path outside the repository, read with this repository's settings; its
        references stay confined to its own tree, its files are named as the user can open
        them."""
        foreign = ScopeLoader(replace(self.settings, repo_root=root)).load(target, [path])

        def shown(location: SourceLocation | None) -> SourceLocation | None:
            return location and SourceLocation(display_path(root / location.file),
                                               location.line)

        for resource in foreign.resources:
            resource.layers = [SourceLayer(display_path(root / layer.file), layer.document)
                               for layer in resource.layers]
        return foreign.resources, [replace(f, location=shown(f.location))
                                   for f in foreign.findings]

    def _load_path(self, scope: Scope, path: Path, visited: set[Path]) -> None:
        if not path.is_dir():
            self._load_file(scope, path, visited)
            return
        if path in visited:
            return
        visited.add(path)
        if kustomization_file(path) is not None:
            rendered = self._take(path)
            if rendered.ok:
                scope.rendered.append(path)
            resources = [Resource(r.doc, scope.name, r.layers) for r in rendered.resources]
            findings = [replace(f, target=scope.name) for f in rendered.findings]
            self._add(scope, resources, findings)
        else:
            for file in sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES):
                if not any(part.startswith(".") for part in file.relative_to(path).parts):
                    self._load_file(scope, file, visited)

    def _load_file(self, scope: Scope, file: Path, visited: set[Path]) -> None:
        """One YAML file, read once per scope and never followed out of the repository."""
        root = self.settings.repo_root
        real = Path(os.path.realpath(file))
        if real in visited or not (real.is_file() or file.is_symlink()):
            return  # already read (overlapping paths), or a folder/FIFO named *.yaml
        visited.add(real)
        if real != root and root not in real.parents:
            rel = Path(os.path.abspath(file)).relative_to(root).as_posix()
            scope.findings.append(Finding(
                "yaml/path-outside-repo", Severity.ERROR,
                f"{rel} is a symlink that leads outside the repository (or nowhere); "
                "Flux and Argo CD only see this repository, so it is not read", scope.name,
                location=SourceLocation(rel, None)))
            return
        self._add(scope, *resources_from_file(file, root, scope.name))

    def _render_folder(self, folder: Path) -> RenderedFolder:
        """A render from the cache while none of its input files changed, else kustomize."""
        cache = self.cache
        inputs = cache.inputs(folder, self.closures) if cache else None  # before the render
        cached = cache.get(folder, inputs) if cache else None
        if isinstance(cached, RenderedFolder):
            return cached
        result = self._render_uncached(folder)
        if cache and result.cacheable:
            cache.put(folder, inputs, result)
        return result

    def _render_uncached(self, folder: Path) -> RenderedFolder:
        root = self.settings.repo_root
        target = folder.relative_to(root).as_posix() if root in folder.parents else str(folder)
        check = preflight(folder, root, target, self.settings.allow_remote_bases)
        result = RenderedFolder(findings=list(check.findings))
        if check.blocked or check.is_component:
            result.ok = False  # components only render inside a kustomization that uses them
            return result
        try:
            output, base_dir = self.renderer.render(folder, root)
        except RenderFailed as exc:
            kfile = kustomization_file(folder)
            rel = kfile.relative_to(root).as_posix() if kfile else target
            result.findings.append(Finding(RENDER_FAILED, Severity.ERROR, str(exc),
                                           target, location=SourceLocation(rel, None)))
            result.ok, result.cacheable = False, not exc.transient
            return result
        resources, findings = resources_from_render(output, base_dir, root, target,
                                                    check.patches, check.generated)
        result.resources, result.findings = resources, result.findings + findings
        return result

    @staticmethod
    def _add(scope: Scope, resources: list[Resource], findings: list[Finding]) -> None:
        scope.resources += resources
        scope.findings += findings

    def _follow_gitops(self, scope: Scope, visited: set[Path]) -> None:
        """Render what each Flux Kustomization / Argo CD Application in scope points at."""
        seen = 0
        while seen < len(scope.resources):
            resource = scope.resources[seen]
            seen += 1
            for field_path, path in gitops_paths(resource):
                folder = (self.settings.repo_root / path).resolve()
                root = self.settings.repo_root
                if (folder != root and root not in folder.parents) or not folder.is_dir():
                    scope.findings.append(Finding(
                        "gitops/path-missing", Severity.ERROR,
                        f"{resource.kind} {resource.name} syncs path {path!r}, which is not a "
                        "folder of this repository: the sync would fail", scope.name,
                        resource.ref, resource.location_of(field_path)))
                    continue
                before = len(scope.resources)
                self._load_path(scope, folder, visited)
                for synced in scope.resources[before:]:
                    scope.synced_by[id(synced)] = resource


def make_engine(settings: Settings,
                known: dict[Verdict, list[Problem]] | None = None) -> SchemaEngine:
    """The schema engine of the settings; `known`: verdicts of documents by content, from
    an earlier run with the same fingerprint (cache.py), for the in-process engine."""
    from vllm_gitops.schema.engine import JsonSchemaEngine
    from vllm_gitops.schema.kubeconform import KubeconformEngine

    if settings.engine == "kubeconform":
        return KubeconformEngine(schema_locations(settings), settings.missing_schema_is_error)
    return JsonSchemaEngine(schema_locations(settings), settings.missing_schema_is_error, known)


def schema_locations(settings: Settings) -> SchemaLocations:
    """Where the settings say schemas are (schema/locations.py)."""
    return SchemaLocations(settings.schema_locations, settings.kubernetes_version,
                           settings.repo_root, settings.cache_dir,
                           settings.schema_fetch_timeout_seconds)


def validate(targets: list[Target], settings: Settings, progress: Progress | None = None,
             paths: list[Path] | None = None,
             closures: dict[Path, Closure] | None = None) -> Report:
    """Run every stage over every target; the Report holds all findings, sorted, each defect
    once (with every target it affects). Targets inside another are checked within it
    (coverage.py). `closures`: kustomization closures already walked in this run."""
    loader = ScopeLoader(settings, closures=closures)
    closures = loader.closures
    coverage = (plan_coverage(targets, settings.repo_root, closures) if paths is None
                else Coverage(list(targets)))
    checks = _check_cache(loader, settings, closures) if paths is None else None
    run = _Run(loader, settings, checks, progress, paths)
    run.check(coverage.checked, coverage.units)
    alone = unconfirmed(targets, coverage, reached(run.rendered, closures))
    run.check(alone, {})  # under a failed render, or not really synced
    run.keep_verdicts()
    if progress:
        progress(run.done, run.done, "")
    report = Report(targets=len(targets), scopes=len(coverage.checked) + len(alone),
                    resources=run.resources)
    kinds = {t.name: t.kind for t in targets}
    found = innermost_render_failures(run.findings, settings.repo_root, closures)
    report.findings = _once_per_message(_collapse_missing_schemas(
        merge_across_targets(found, kinds)))
    return report


@dataclass
class _Run:
    """Checks targets as scopes, each from the check cache while nothing it reads changed."""

    loader: ScopeLoader
    settings: Settings
    checks: CheckCache | None
    progress: Progress | None
    paths: list[Path] | None
    findings: list[Finding] = field(default_factory=list)
    rendered: set[Path] = field(default_factory=set)  # folders rendered without failure
    resources: int = 0
    done: int = 0
    engine: SchemaEngine | None = None

    def schema_engine(self) -> SchemaEngine:
        """One engine per run, starting from the verdicts an earlier run kept."""
        if self.engine is None:
            cache = self.loader.cache
            known = cache.get_named(SCHEMA_VERDICTS, Inputs()) if cache else None
            self.engine = make_engine(self.settings, known if isinstance(known, dict) else None)
        return self.engine

    def keep_verdicts(self) -> None:
        """Store the verdicts for later runs, when this run reached new ones."""
        if self.engine is None:
            return  # nothing was checked
        from vllm_gitops.schema.engine import JsonSchemaEngine

        cache = self.loader.cache
        if cache and isinstance(self.engine, JsonSchemaEngine) and self.engine.fresh:
            cache.put_named(SCHEMA_VERDICTS, Inputs(), self.engine.verdicts_to_keep())

    def check(self, targets: list[Target], units: dict[str, list[Path]]) -> None:
        """Check each target's scope; `units` names the folders a scope renders whole."""
        checks = self.checks
        inputs = {t.name: checks.inputs(t.path) for t in targets} if checks else {}
        hits = {t.name: checks.get(t.name, inputs[t.name]) for t in targets} if checks else {}
        todo = [t for t in targets if hits.get(t.name) is None]
        for hit in filter(None, hits.values()):  # nothing it reads changed since then
            self.resources += hit.resources
            self.findings += hit.findings
            self.rendered |= {self.settings.repo_root / name for name in hit.rendered}
        if not todo:
            return
        self.loader.start([folder for t in todo for folder in units.get(t.name, [t.path])])
        engine = self.schema_engine()  # while kustomize runs
        from vllm_gitops.policies.registry import run_policies
        from vllm_gitops.schema.engine import check_each_once

        self.loader.wait(self.progress)
        scopes = [self.loader.load(target, self.paths) for target in todo]
        verdicts = check_each_once(engine,
                                   (r for s in scopes for r in s.resources))
        for target, scope in zip(todo, scopes, strict=True):
            if self.progress:
                self.progress(self.done, len(todo), f"checking {target.name}")
            self.done += 1
            self.resources += len(scope.resources)
            self.rendered |= set(scope.rendered)
            schema = [replace(f, target=scope.name) for r in scope.resources
                      for f in verdicts.get(id(r.doc), [])]
            checked = [*scope.findings, *schema,
                       *run_policies(scope, overrides=self.settings.severity_overrides)]
            self.findings += checked
            if checks:
                rendered = [os.path.relpath(f, self.settings.repo_root) for f in scope.rendered]
                checks.put(target.name, inputs.get(target.name), CheckedTarget(
                    checked, len(scope.resources), _missing_schemas(checked), rendered))


def _check_cache(loader: ScopeLoader, settings: Settings,
                 closures: dict[Path, Closure]) -> CheckCache | None:
    """Whole-target results (cache.py), valid while no input file changed."""
    renders = loader.cache
    if renders is None:
        return None
    locations = schema_locations(settings)
    return CheckCache(renders, lambda api_version, kind: locations.find(
        SchemaKey.of(api_version, kind)) is not None, closures)


def _missing_schemas(findings: list[Finding]) -> list[tuple[str, str]]:
    """Kinds checked without a schema: a later run that finds one must check again."""
    return sorted({(f.resource.api_version, f.resource.kind) for f in findings
                   if f.rule == "schema/missing" and f.resource is not None})


def merge_across_targets(findings: list[Finding], kinds: dict[str, str]) -> list[Finding]:
    """One defect, one finding: identical findings of several targets become one, naming
    them all; its `target` is the first affected cluster entry point, else the first one."""
    order = {name: i for i, name in enumerate(kinds)}
    groups: dict[tuple[object, ...], list[Finding]] = {}
    seen_in_target: dict[tuple[object, ...], int] = {}
    for finding in sorted(findings, key=lambda f: f.message):
        # Several findings of one rule at one line of one target stay apart (a ConfigMap key
        # with two leaked tokens); the n-th of them pairs with the n-th of another target.
        key = (finding.target, *finding.identity)
        nth = seen_in_target[key] = seen_in_target.get(key, -1) + 1
        groups.setdefault((*finding.identity, nth), []).append(finding)
    merged = []
    for group in groups.values():
        targets = sorted({t for f in group for t in f.affected},
                         key=lambda name: (order.get(name, len(order)), name))
        first = next((name for name in targets if kinds.get(name) == "cluster"), targets[0])
        shown = next((f for f in group if first in f.affected), group[0])
        merged.append(replace(shown, target=first, targets=tuple(targets)))
    return sorted(merged, key=sort_key)


def _first_per(findings: list[Finding], rule: str, key: Callable[[Finding], object]
               ) -> tuple[list[Finding], dict[int, int]]:
    """Findings of `rule` with the same key are one problem (key None: each its own): the
    first is kept. -> (kept, position in kept -> how many more it stands for)."""
    first: dict[object, int] = {}
    more: dict[int, int] = {}
    kept: list[Finding] = []
    for finding in findings:
        found = key(finding) if finding.rule == rule else None
        if found is not None and found in first:
            more[first[found]] = more.get(first[found], 0) + 1
            continue
        if found is not None:
            first[found] = len(kept)
        kept.append(finding)
    return kept, more


def _once_per_message(findings: list[Finding]) -> list[Finding]:
    """A CEL rule this tool cannot evaluate, met in many objects, is one problem."""
    return _first_per(findings, "schema/cel-unevaluable", lambda f: f.message)[0]


def _collapse_missing_schemas(findings: list[Finding]) -> list[Finding]:
    """Offline, every custom resource lacks a schema: warn once per kind, not per object."""
    kept, more = _first_per(findings, "schema/missing", lambda f: (
        f.resource.api_version, f.resource.kind)
        if f.resource is not None and f.severity is Severity.WARNING else None)
    for position, count in more.items():
        original = kept[position]
        kind = original.resource.kind if original.resource else ""
        kept[position] = replace(original, message=f"{original.message}; {count} more "
                                 f"{kind} object(s) in this run are not validated either")
    return kept


def load_scopes(paths: list[Path], repo_root: Path) -> list[Scope]:
    """Scopes for other tools (plan, new-model): one per path given."""
    from vllm_gitops.settings import load_settings

    settings = load_settings(repo_root)
    loader = ScopeLoader(settings)
    scopes = []
    for path in paths:
        name = repo_relative(path, settings.repo_root)
        scopes.append(loader.load(Target(path.resolve(), name, "paths")))
    return scopes

"""GitOps rules: what Argo CD and Flux do with these manifests at sync time (order of
application, self-management, diffs that never settle), plus the cluster-wide names and
labels that collide with what those controllers or other teams own."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from vllm_gitops.changes import Closure, gitops_paths, kustomization_closure
from vllm_gitops.coverage import aggregated_parts
from vllm_gitops.durations import duration_hours, go_duration
from vllm_gitops.findings import Severity
from vllm_gitops.kustomization import is_remote, kustomization_file
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, SourceLayer
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.startup import NODE_AND_PULL_S
from vllm_gitops.sizing.workload import VllmWorkload
from vllm_gitops.topology import per_scope, startup_plan, vllm_servers
from vllm_gitops.yamlsafe import YamlProblem, load_file_cached

WAVE = "argocd.argoproj.io/sync-wave"
INSTANCE_LABEL = "app.kubernetes.io/instance"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
BOOTSTRAP_FOLDER = "flux-system"
BOOTSTRAP_FILES = ("gotk-components.yaml", "gotk-sync.yaml")
# Classes that clusters commonly have already: EKS (gp2, and gp3/ebs-sc from add-ons and
# the EBS CSI docs), EKS Auto Mode (auto-ebs-sc), GKE (standard, standard-rwo, premium-rwo),
# AKS (default, managed-csi, managed-premium), kind/k3s (standard, local-path).
SHARED_CLASS_NAMES = frozenset({
    "gp2", "gp3", "io1", "io2", "st1", "sc1", "ebs-sc", "auto-ebs-sc", "standard",
    "standard-rwo", "premium-rwo", "default", "managed", "managed-csi", "managed-premium",
    "local-path", "hostpath",
})


# ---------------------------------------------------------------- Argo CD sync waves

def sync_wave(resource: Resource) -> int:
    """The resource's Argo CD sync wave (0 when unset or not a number)."""
    try:
        return int(resource.annotations.get(WAVE, "0").strip())
    except ValueError:
        return 0


def _group(resource: Resource) -> str:
    return resource.api_version.rpartition("/")[0]


def _dependencies(scope: Scope) -> Iterator[tuple[Resource, Resource]]:
    """(object, what it needs to exist first) pairs that are both in scope."""
    namespaces = {r.name: r for r in scope.of_kind("Namespace")}
    crds = {(str(r.get("spec", "group", default="")),
             str(r.get("spec", "names", "kind", default=""))): r
            for r in scope.of_kind("CustomResourceDefinition")}
    for resource in scope.resources:
        if resource.kind == "Application" and _group(resource) == "argoproj.io":
            project = scope.find("AppProject", str(resource.get("spec", "project") or ""))
            if project is not None:
                yield resource, project
        crd = crds.get((_group(resource), resource.kind))
        if crd is not None:
            yield resource, crd
        namespace = namespaces.get(resource.namespace or "")
        if namespace is not None and resource.kind != "Namespace":
            yield resource, namespace


def _is_application(resource: Resource) -> bool:
    return resource.kind == "Application" and _group(resource) == "argoproj.io"


def _argo_order(scope: Scope, resource: Resource) -> tuple[int, ...] | None:
    """Sync waves from the outermost Application down to the resource; None when a Flux
    Kustomization applies it (Flux ignores waves)."""
    chain = [resource]
    parent = scope.sync_parent(resource)
    while parent is not None:
        if not _is_application(parent):
            return None
        chain.append(parent)
        parent = scope.sync_parent(parent)
    return tuple(sync_wave(r) for r in reversed(chain))


def _flux_runs_after(scope: Scope, later: Resource, earlier: Resource) -> bool:
    """Whether Flux Kustomization `later` (transitively) dependsOn `earlier` (once per pair
    and scope: every object of a unit asks the same)."""
    return per_scope(scope, ("flux-after", id(later), id(earlier)),
                     lambda: _depends_on(scope, later, earlier))


def _depends_on(scope: Scope, later: Resource, earlier: Resource) -> bool:
    todo, seen = [later], set()
    while todo:
        current = todo.pop()
        for dep in current.get("spec", "dependsOn") or []:
            name = dep.get("name") if isinstance(dep, dict) else None
            found = scope.find("Kustomization", str(name),
                               dep.get("namespace") or current.namespace)
            if found is None or not _is_flux_kustomization(found) or id(found) in seen:
                continue
            if found is earlier:
                return True
            seen.add(id(found))
            todo.append(found)
    return False


def _order_problem(scope: Scope, dependent: Resource, needed: Resource) -> str | None:
    first, then = scope.sync_parent(dependent), scope.sync_parent(needed)
    if first is not None and then is not None and first is not then and (
            _is_flux_kustomization(first) and _is_flux_kustomization(then)):
        if _flux_runs_after(scope, then, first):
            return (f"is applied by Flux Kustomization {first.name}, before {needed.kind} "
                    f"{needed.name} it needs, which {then.name} applies later (dependsOn)")
        return None
    mine, theirs = _argo_order(scope, dependent), _argo_order(scope, needed)
    if mine is None or theirs is None or not mine < theirs:
        return None
    shown = "/".join(str(w) for w in mine), "/".join(str(w) for w in theirs)
    return (f"syncs in wave {shown[0]}, before {needed.kind} {needed.name} it needs "
            f"(wave {shown[1]})")


@rule(
    "argocd/sync-wave-order", Severity.ERROR,
    "an object syncs before an object it needs (Argo CD wave or Flux dependsOn order)",
    why="""Argo CD applies sync waves in order and waits for each wave to be healthy; Flux
    applies a Kustomization only after those it dependsOn are ready. An Application synced
    before its AppProject is refused ('project does not exist'), a custom resource before its
    CRD or an object before its Namespace fails to apply, so that step never completes and
    nothing after it (the model servers) is ever deployed.""",
    fix="""Give the needed object (AppProject, CRD, Namespace) a lower
    argocd.argoproj.io/sync-wave than everything that uses it, e.g. "-2" for the AppProject
    when the Applications use waves -1, 0 and 1; with Flux, move it to a Kustomization that the
    user's Kustomization dependsOn.""",
)
def sync_wave_order(scope: Scope) -> Iterator[Violation]:
    by_unit: dict[tuple[int, str], tuple[Resource, list[Resource]]] = {}
    for dependent, needed in _dependencies(scope):
        problem = _order_problem(scope, dependent, needed)
        if not problem:
            continue
        unit = scope.sync_parent(dependent)
        if unit is None or WAVE in dependent.annotations:  # the order is the object's own
            yield Violation(dependent, problem, _order_field(dependent))
        else:  # the order is its sync unit's: one finding there for all it applies too early
            by_unit.setdefault((id(unit), problem), (unit, []))[1].append(dependent)
    for (_, problem), (unit, objects) in by_unit.items():
        yield Violation(unit, f"{_first_of(objects)} {problem}",
                        _order_field(unit))


def _first_of(objects: list[Resource]) -> str:
    """"StatefulSet vllm-qwen3 (and 4 more)": the objects one finding stands for."""
    more = f" (and {len(objects) - 1} more)" if len(objects) > 1 else ""
    return f"{objects[0].kind} {objects[0].name}{more}"


def _order_field(resource: Resource) -> tuple[str, ...]:
    """Where a resource's place in the order is written: its wave, dependsOn, or metadata."""
    if WAVE in resource.annotations:
        return ("metadata", "annotations", WAVE)
    return ("spec", "dependsOn") if resource.get("spec", "dependsOn") else ("metadata",)


def _unordered_flux_units(scope: Scope) -> Iterator[tuple[Resource, Resource, Resource]]:
    """(unit, object it applies, what that needs) where another Flux Kustomization applies
    the needed object and neither dependsOn the other."""
    for dependent, needed in _dependencies(scope):
        first, then = scope.sync_parent(dependent), scope.sync_parent(needed)
        if (first is not None and then is not None and first is not then
                and _is_flux_kustomization(first) and _is_flux_kustomization(then)
                and not _flux_runs_after(scope, first, then)
                and not _flux_runs_after(scope, then, first)):
            yield first, dependent, needed


@rule(
    "flux/dependency-unordered", Severity.WARNING,
    "a Flux Kustomization applies objects whose Namespace or CRD another one creates, unordered",
    why="""Flux reconciles Kustomizations in parallel unless one dependsOn the other. On a new
    cluster the one applying a model can run before the one creating the model's Namespace
    (or a CRD it uses): its apply fails ('namespace not found') and the model waits for the
    next retry (retryInterval, by default the interval) before it even starts to deploy.""",
    fix="""Add `dependsOn: [{name: <the Kustomization that creates it>}]` to the Kustomization
    named in the message (the models here depend on `apps`, which creates the namespace).""",
)
def dependency_unordered(scope: Scope) -> Iterator[Violation]:
    grouped: dict[tuple[int, int], tuple[Resource, Resource, list[Resource]]] = {}
    for unit, dependent, needed in _unordered_flux_units(scope):
        grouped.setdefault((id(unit), id(needed)), (unit, needed, []))[2].append(dependent)
    for unit, needed, objects in grouped.values():  # one finding per unit and needed object
        creator = scope.sync_parent(needed)
        yield Violation(unit, (
            f"applies {_first_of(objects)}, which needs {needed.kind} "
            f"{needed.name} that {creator.name if creator else 'another Kustomization'} "
            "creates, but neither Kustomization dependsOn the other"), _order_field(unit))


# ---------------------------------------------------------------- Flux waits for the model

def _flux_wait_seconds(unit: Resource) -> float | None:
    """How long a Flux Kustomization waits for what it applies to be healthy (spec.timeout,
    by default spec.interval); None when it does not wait (no `wait`, no healthChecks)."""
    if unit.get("spec", "wait") is not True and not unit.get("spec", "healthChecks"):
        return None
    text = unit.get("spec", "timeout") or unit.get("spec", "interval")
    hours = duration_hours(text) if isinstance(text, str) else None
    return hours * 3600 if hours is not None else None


def _first_rollout_s(scope: Scope, server: VllmWorkload) -> float | None:
    planned = startup_plan(scope, server)
    if planned is None or planned.result is None or planned.result.startup is None:
        return None  # unknown model or hardware: say nothing rather than guess
    return planned.result.startup.cold_s + NODE_AND_PULL_S


@rule(
    "flux/wait-shorter-than-startup", Severity.WARNING,
    "a Flux Kustomization stops waiting before the vLLM server it applies can be ready",
    why="""With `wait: true` (or healthChecks) Flux waits for what it applied to be ready, up
    to spec.timeout (by default spec.interval). A new model is ready only after Karpenter
    launched a GPU node, the node pulled the vLLM image and vLLM downloaded and loaded the
    weights: often longer than an hour for a large model. A shorter timeout makes Flux report
    the rollout failed, alert, and apply it again while vLLM is still loading.""",
    fix="""Raise spec.timeout of the Kustomization above the time in the message (tools/plan
    shows the cold start; tools/new-model sets it for the models it writes).""",
)
def wait_shorter_than_startup(scope: Scope) -> Iterator[Violation]:
    slowest: dict[int, tuple[Resource, float, float, VllmWorkload]] = {}
    for server in vllm_servers(scope):
        unit = scope.sync_parent(server.resource)
        waits = _flux_wait_seconds(unit) if unit and _is_flux_kustomization(unit) else None
        needed = _first_rollout_s(scope, server) if unit and waits is not None else None
        if unit is None or waits is None or needed is None or needed <= waits:
            continue
        if id(unit) not in slowest or needed > slowest[id(unit)][2]:
            slowest[id(unit)] = (unit, waits, needed, server)
    for unit, waits, needed, server in slowest.values():  # one finding per Kustomization
        field = ("spec", "timeout") if unit.get("spec", "timeout") else ("spec", "interval")
        yield Violation(unit, (
            f"waits {go_duration(waits)} for {server.resource.kind} {server.resource.name}, "
            f"whose first rollout takes about {go_duration(needed)} (GPU node and image "
            f"~{NODE_AND_PULL_S // 60} min, then a cold start of "
            f"{go_duration(needed - NODE_AND_PULL_S)})"), field)


# ---------------------------------------------------------------- Flux bootstrap layout

def _is_flux_kustomization(resource: Resource) -> bool:
    return resource.kind == "Kustomization" and _group(resource) == "kustomize.toolkit.fluxcd.io"


def _is_kustomize_file(resource: Resource) -> bool:
    return resource.kind == "Kustomization" and _group(resource) == "kustomize.config.k8s.io"


def _folder(resource: Resource) -> PurePosixPath | None:
    return PurePosixPath(resource.layers[0].file).parent if resource.layers else None


def _repo_path(path: str) -> PurePosixPath:
    """A repository path as Flux and Argo CD read it: "./x", "x/" and "x" are one folder."""
    return PurePosixPath(posixpath.normpath(path.strip() or "."))


def _entry_folders(scope: Scope) -> list[PurePosixPath]:
    """Folders holding Flux Kustomizations that no Flux Kustomization in scope syncs and that
    are not inside another such folder (clusters/<env>/flux, not its models/): the paths
    someone applies by hand or bootstraps Flux at."""
    flux = [r for r in scope.resources if _is_flux_kustomization(r)]
    synced = {_repo_path(str(r.get("spec", "path") or ".")) for r in flux}
    folders = {f for f in (_folder(r) for r in flux) if f is not None}
    return sorted(f for f in folders if f.name != BOOTSTRAP_FOLDER
                  and not any(s == f or s in f.parents for s in synced)
                  and not any(outer in f.parents for outer in folders))


def _on_disk(scope: Scope, folder: PurePosixPath) -> Resource | None:
    """The folder's kustomization file as a Resource (for its file and line), if any."""
    if scope.root is None:
        return None
    for name in KUSTOMIZATION_FILES:
        path = Path(scope.root) / folder / name
        if path.is_file():
            try:
                docs = load_file_cached(path, str(folder / name))
            except YamlProblem:
                return None
            if docs and isinstance(docs[0].data, dict):
                return Resource(docs[0].data, scope.name,
                                [SourceLayer((folder / name).as_posix(), docs[0])])
    return None


def _kustomization_of(scope: Scope, folder: PurePosixPath) -> Resource | None:
    """A kustomization document given as plain YAML in that folder, else the file on disk."""
    given = next((r for r in scope.resources if _is_kustomize_file(r) and _folder(r) == folder),
                 None)
    return given or _on_disk(scope, folder)


def _listed(kustomization: Resource) -> set[str]:
    entries = kustomization.get("resources") or []
    return {_repo_path(str(e)).as_posix() for e in entries if isinstance(e, str)}


@rule(
    "flux/bootstrap-not-reconciled", Severity.WARNING,
    "a Flux entry folder's kustomization.yaml leaves out the flux-system folder bootstrap adds",
    why="""`flux bootstrap --path=<folder>` writes Flux's own manifests into <folder>/flux-system
    and syncs <folder>. Flux builds a folder that has a kustomization.yaml exactly as that
    file says, so when it does not list flux-system, Flux never applies its own manifests
    from git: upgrades and sync settings committed there silently do nothing. A
    flux-system/kustomization.yaml that does not list gotk-components.yaml and gotk-sync.yaml
    is kept as it is by bootstrap, which then installs nothing.""",
    fix="""List `flux-system` in the entry folder's kustomization.yaml, with a flux-system/
    folder whose kustomization.yaml lists gotk-components.yaml and gotk-sync.yaml (empty
    files until bootstrap fills them, as Flux documents for bootstrap customisation); or
    delete the hand-written kustomization.yaml so that Flux includes every file itself.""",
)
def bootstrap_not_reconciled(scope: Scope) -> Iterator[Violation]:
    for folder in _entry_folders(scope):
        kustomization = _kustomization_of(scope, folder)
        if kustomization is None:
            continue  # Flux generates one that includes every file and sub-folder
        if BOOTSTRAP_FOLDER not in _listed(kustomization):
            yield Violation(kustomization, f"{folder.as_posix()} is a Flux entry point whose "
                            f"kustomization does not list {BOOTSTRAP_FOLDER}: after flux "
                            "bootstrap at this path, Flux does not manage itself",
                            ("resources",))
            continue
        inner = _on_disk(scope, folder / BOOTSTRAP_FOLDER)
        if inner is not None and not set(BOOTSTRAP_FILES) <= _listed(inner):
            yield Violation(inner, f"{(folder / BOOTSTRAP_FOLDER).as_posix()}/kustomization"
                            " does not list " + " and ".join(BOOTSTRAP_FILES) + ": flux "
                            "bootstrap keeps it as it is and installs nothing", ("resources",))


# ---------------------------------------------------------------- one sync unit per folder

@dataclass
class _Synced:
    """The repository folders a scope's Flux Kustomizations / Argo CD Applications sync, and
    every kustomization folder their renders include (repo-relative)."""

    root: Path
    folders: set[PurePosixPath]
    rendered: set[PurePosixPath] = field(init=False)

    def __post_init__(self) -> None:
        memo: dict[Path, Closure] = {}
        self.rendered = {self._relative(f) for synced in self.folders
                         for f in kustomization_closure(self.root / synced, memo).folders}

    def _relative(self, path: Path) -> PurePosixPath:
        return PurePosixPath(Path(os.path.relpath(path, self.root)).as_posix())

    def parts(self, folder: PurePosixPath) -> list[PurePosixPath]:
        """What a pure aggregation lists, recursively (coverage.py), else [folder]."""
        return [self._relative(p) for p in aggregated_parts(self.root / folder)]

    def deployed(self, folder: PurePosixPath) -> bool:
        return all(part in self.rendered for part in self.parts(folder))


def _synced(scope: Scope) -> _Synced | None:
    """The scope's synced folders; None for no repository, or for one sync object alone (an
    example, a file given on the command line): not a cluster's whole list of sync units."""
    paths = {_repo_path(path) for r in scope.resources for _, path in gitops_paths(r)}
    folders = {p for p in paths if not p.is_absolute() and ".." not in p.parts}
    if scope.root is None or (len(folders) < 2 and scope.kind != "cluster"):
        return None
    return _Synced(scope.root, folders)


def _folder_entries(root: Path, kustomization: Resource,
                    folder: PurePosixPath) -> Iterator[tuple[int, str, PurePosixPath]]:
    """(index, entry as written, repo folder) of each kustomization folder it lists."""
    for index, entry in enumerate(kustomization.get("resources") or []):
        if not isinstance(entry, str) or is_remote(entry) or os.path.isabs(entry):
            continue
        path = PurePosixPath(posixpath.normpath((folder / entry.strip()).as_posix()))
        if ".." not in path.parts and kustomization_file(root / path) is not None:
            yield index, entry.strip(), path


def _lists_synced(scope: Scope, synced: _Synced, folder: PurePosixPath) -> bool:
    kustomization = _on_disk(scope, folder)
    return kustomization is not None and any(path in synced.folders for _, _, path in
                                             _folder_entries(synced.root, kustomization, folder))


def _aggregations(scope: Scope, synced: _Synced) -> list[PurePosixPath]:
    """The folders above the synced ones (where a layout lists them) that list one."""
    above = {parent for folder in synced.folders for parent in folder.parents}
    return sorted(f for f in above if _lists_synced(scope, synced, f))


def _not_deployed(scope: Scope, synced: _Synced, folder: PurePosixPath, top: PurePosixPath,
                  judged: set[PurePosixPath]) -> Iterator[Violation]:
    """Entries of `folder` that nothing in scope deploys, each at its own line; aggregations
    are looked into (once each: a cycle of kustomizations ends here)."""
    kustomization = _on_disk(scope, folder)
    if folder in judged or kustomization is None:
        return
    judged.add(folder)
    where = ("beside folders this cluster syncs" if _lists_synced(scope, synced, folder)
             else f"(inside {top.as_posix()}, which lists folders this cluster syncs)")
    for index, entry, path in _folder_entries(synced.root, kustomization, folder):
        if synced.deployed(path):
            continue
        if synced.parts(path) != [path] or _lists_synced(scope, synced, path):
            yield from _not_deployed(scope, synced, path, top, judged)
        else:
            yield Violation(kustomization, f"{folder.as_posix()} lists {entry} {where}, but no "
                            "Flux Kustomization or Argo CD Application here syncs it: it is "
                            "never deployed", ("resources", index))


@rule(
    "gitops/listed-not-synced", Severity.ERROR,
    "a folder is listed beside folders the cluster syncs one by one, but nothing syncs it",
    why="""Each model folder (overlays/<env>/models/<name>) is its own sync unit: the cluster
    deploys it only through its own Flux Kustomization and Argo CD Application
    (clusters/<env>/flux/models/<name>.yaml, clusters/<env>/argocd/models/<name>.yaml).
    Nothing syncs the folder that lists them all, so a folder listed there without its own
    sync object renders and validates fine but never reaches the cluster: the model is never
    deployed and the gateway gets no working route to it.""",
    fix="""Add the missing sync object: tools/new-model writes both for a model
    (clusters/<env>/flux/models/<name>.yaml and clusters/<env>/argocd/models/<name>.yaml,
    each listed in its folder's kustomization.yaml); or remove the entry from the listing
    kustomization.yaml if the folder is not meant to be deployed.""",
)
def listed_not_synced(scope: Scope) -> Iterator[Violation]:
    synced = _synced(scope)
    if synced is None:
        return
    judged: set[PurePosixPath] = set()
    for aggregation in _aggregations(scope, synced):
        yield from _not_deployed(scope, synced, aggregation, aggregation, judged)


# ---------------------------------------------------------------- server-side apply drift

# Fields of ExternalSecret remote references that the CRD defaults (external-secrets.io/v1);
# left out, they make Argo CD report drift forever: https://github.com/argoproj/argo-cd/issues/13004
ESO_DEFAULTED = ("conversionStrategy", "decodingStrategy", "metadataPolicy")


def _vct_drift(statefulset: Resource) -> Iterator[Violation]:
    templates = statefulset.get("spec", "volumeClaimTemplates") or []
    for index, template in enumerate(templates):
        if not isinstance(template, dict):
            continue
        missing = [key for key in ("apiVersion", "kind") if key not in template]
        if missing:
            name = (template.get("metadata") or {}).get("name", index)
            yield Violation(statefulset, f"volumeClaimTemplates {name!s} has no "
                            + " and no ".join(missing), ("spec", "volumeClaimTemplates", index))


def _external_secret_drift(secret: Resource) -> Iterator[Violation]:
    refs: list[tuple[tuple[str | int, ...], Any]] = [
        (("spec", "data", i, "remoteRef"), item.get("remoteRef"))
        for i, item in enumerate(secret.get("spec", "data") or []) if isinstance(item, dict)]
    refs += [(("spec", "dataFrom", i, "extract"), item.get("extract"))
             for i, item in enumerate(secret.get("spec", "dataFrom") or [])
             if isinstance(item, dict)]
    for path, ref in refs:
        if isinstance(ref, dict):
            missing = [key for key in ESO_DEFAULTED if key not in ref]
            if missing:
                yield Violation(secret, f"{path[-1]} of {ref.get('key', '?')} leaves out "
                                + ", ".join(missing) + " (defaulted by the CRD)", path)
                return  # one finding per ExternalSecret: the fix is the same for every entry


@rule(
    "argocd/server-side-apply-drift", Severity.WARNING,
    "a field the API server fills in is missing, so Argo CD server-side apply never syncs",
    why="""The API server fills in some fields the manifest leaves out: apiVersion/kind of a
    StatefulSet's volumeClaimTemplates, and the fields an operator's CRD defaults (the
    strategies of an ExternalSecret's remoteRef). With Argo CD's ServerSideApply=true the
    manifest from Git then never equals the live object: the application stays OutOfSync
    forever, a real drift is lost in the noise and auto-sync keeps re-applying.""",
    fix="""Write the defaulted fields out: `apiVersion: v1` and `kind: PersistentVolumeClaim` on
    each volumeClaimTemplate (https://github.com/argoproj/argo-cd/issues/11143);
    conversionStrategy: Default, decodingStrategy: None, metadataPolicy: None on each
    ExternalSecret remoteRef (https://github.com/argoproj/argo-cd/issues/13004).""",
)
def server_side_apply_drift(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        if resource.kind == "StatefulSet":
            yield from _vct_drift(resource)
        elif resource.kind == "ExternalSecret" and _group(resource) == "external-secrets.io":
            yield from _external_secret_drift(resource)


# ---------------------------------------------------------------- cluster-wide names/labels

@rule(
    "storage/shared-class-name", Severity.WARNING,
    "StorageClass from Git uses a name clusters commonly already have (gp2, gp3, standard...)",
    why="""Many clusters already have a StorageClass called gp3, gp2 or standard, created by
    another team or an add-on. StorageClass parameters cannot be changed, so syncing ours
    onto theirs fails; or the GitOps controller adopts their class, changes who owns it, and
    deletes it when ours is removed from Git, breaking their volumes.""",
    fix="""Give the class a name of your own (e.g. vllm-gp3) and use that name in every
    storageClassName that means it.""",
)
def shared_class_name(scope: Scope) -> Iterator[Violation]:
    for storage_class in scope.of_kind("StorageClass"):
        if storage_class.name in SHARED_CLASS_NAMES:
            yield Violation(storage_class, f"StorageClass {storage_class.name!r} may already "
                            "exist in the cluster, owned by someone else",
                            ("metadata", "name"))


def _selector_keys(selector: Any) -> set[str]:
    if not isinstance(selector, dict):
        return set()
    keys = {str(k) for k in (selector.get("matchLabels") or {})}
    keys |= {str(e.get("key")) for e in selector.get("matchExpressions") or []
             if isinstance(e, dict)}
    return keys


@rule(
    "observability/tracking-label", Severity.WARNING,
    "ServiceMonitor relies on the Service's app.kubernetes.io/instance label",
    why="""Argo CD before 3.0 tracks what it manages by writing the Application's name into
    the app.kubernetes.io/instance label of every object it syncs, Services included. A
    ServiceMonitor that copies that label from Services (targetLabels) then tags every
    model's metrics with the same Application name, and one that selects Services by it
    finds nothing: dashboards and autoscaling can no longer tell models apart.""",
    fix="""Copy the label from the pods instead (podTargetLabels: pod templates keep their
    labels), or use a label of your own such as vllm-gitops.io/model; select Services by
    app.kubernetes.io/name/component.""",
)
def tracking_label(scope: Scope) -> Iterator[Violation]:
    for monitor in scope.of_kind("ServiceMonitor"):
        targets = monitor.get("spec", "targetLabels") or []
        if INSTANCE_LABEL in targets:
            yield Violation(monitor, f"targetLabels copies {INSTANCE_LABEL} from Services",
                            ("spec", "targetLabels", targets.index(INSTANCE_LABEL)))
        if INSTANCE_LABEL in _selector_keys(monitor.get("spec", "selector")):
            yield Violation(monitor, f"selects Services by {INSTANCE_LABEL}",
                            ("spec", "selector"))

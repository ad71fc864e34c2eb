"""One `tools/new-model` run: request -> choice -> files -> staged routes + validation -> apply."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vllm_gitops.errors import ToolError
from vllm_gitops.findings import Finding, Severity
from vllm_gitops.newmodel import edit, inputs, scaffold, sync
from vllm_gitops.newmodel.choose import Choice, Constraints, choose, offers
from vllm_gitops.newmodel.inputs import Request
from vllm_gitops.newmodel.repo import POOL_LABEL, Base, Infrastructure, Repo
from vllm_gitops.newmodel.sync import SyncFile
from vllm_gitops.newmodel.transaction import (
    ChangeSet,
    effective,
    read_text,
    staging_copy,
    unified_diff,
    write_plain,
)
from vllm_gitops.pipeline import Report, ScopeLoader, Target, discover_targets, validate
from vllm_gitops.resources import Resource
from vllm_gitops.routes import Route, expected_routes_text, routes_files, routes_of, routes_scope
from vllm_gitops.settings import load_settings
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.karpenter import KarpenterChoice
from vllm_gitops.sizing.models import ModelSpec, load_model, load_model_config
from vllm_gitops.sizing.planner import plan_workload, storage_for
from vllm_gitops.sizing.quantity import parse_quantity
from vllm_gitops.sizing.startup import GP3_DEFAULT_MIB_S
from vllm_gitops.sizing.version import DEFAULT_VERSION, parse_version
from vllm_gitops.sizing.workload import find_vllm_workloads

GPU = "nvidia.com/gpu"


class Refused(ToolError):
    """The model exists with other settings and --force was not given (exit 2)."""

    def __init__(self, message: str, diff: str) -> None:
        super().__init__(message)
        self.diff = diff


@dataclass
class Outcome:
    """Everything the summary shows."""

    request: Request
    changes: ChangeSet  # only what differs from the repository
    diff: str = ""
    model: ModelSpec | None = None
    choice: Choice | None = None
    sizing: scaffold.Sizing | None = None
    karpenter: KarpenterChoice | None = None
    report: Report | None = None
    new_errors: list[Finding] = field(default_factory=list)
    old_errors: int = 0
    notes: list[str] = field(default_factory=list)
    sync: list[SyncFile] = field(default_factory=list)  # written (or deleted by --remove)

    @property
    def nothing_to_change(self) -> bool:
        return not self.changes.files and not self.changes.folders


def model_spec(req: Request, root: Path) -> ModelSpec:
    if req.model_config is not None:
        return load_model_config(req.model_config, req.model_id)
    return load_model(req.model_id, [root / "catalog" / "models"])


def _base_args(base: Base) -> EngineArgs:
    """The base's flags (gpu-memory-utilization, batched tokens...) with the sized ones open."""
    return EngineArgs(
        gpu_memory_utilization=base.workload.engine_args.gpu_memory_utilization,
        max_num_batched_tokens=base.workload.engine_args.max_num_batched_tokens,
        kv_cache_dtype=base.workload.engine_args.kv_cache_dtype,
        enforce_eager=base.workload.engine_args.enforce_eager,
    )


def _choose(req: Request, model: ModelSpec, repo: Repo, base: Base,
            infra: Infrastructure) -> Choice:
    constraints = Constraints(req.gpu_family, req.instance_type, req.tensor_parallel_size,
                              req.max_model_len, req.min_replicas)
    tolerations = tuple(base.pod_spec.get("tolerations") or ())
    found = offers(repo.families(), infra, repo.pool_sources(), tolerations, constraints)
    if not found:
        pinned = req.instance_type or req.gpu_family
        raise ToolError(f"no GPU family of the repository can launch {pinned} within its "
                        "NodePool's limits" if pinned else
                        "no GPU family of the repository offers any instance type")
    version = base.workload.version or parse_version(DEFAULT_VERSION)
    # The apps overlay is synced (and checked) without the StorageClass, where the cache volume
    # counts at gp3's baseline: size the cold start for the slower of the two.
    throughput = min(infra.storage_throughput_mib_s or GP3_DEFAULT_MIB_S, GP3_DEFAULT_MIB_S)
    storage = storage_for(None, throughput)
    return choose(model, found, _base_args(base), version, storage, constraints, req.env)


def plan_changes(req: Request, root: Path, outcome: Outcome) -> tuple[ChangeSet, Base]:
    """The change set before routes: model folder, its sync files, list entries,
    infrastructure."""
    repo = Repo(root)
    base = repo.base()
    inputs.check_name(req.name, max(base.object_names, key=len))
    inputs.check_statefulset_name(f"{base.statefulset.name}-{req.name}")
    if req.remove:
        outcome.sync = sync.to_remove(root, req.env, req.name)
        return _removal(req, root, outcome.sync), base
    model = outcome.model = model_spec(req, root)
    infra = repo.infrastructure(req.env)
    infra.gpus_in_use = repo.gpus_in_use(req.env, f"{base.statefulset.name}-{req.name}")
    choice = outcome.choice = _choose(req, model, repo, base, infra)
    pool = choice.offer.pool
    node_class = infra.node_classes.get(pool.node_class or "")
    folder = scaffold.folder_of(req)
    gateway = repo.gateway(req.env)
    sizing = outcome.sizing = scaffold.size(choice, model, base, node_class)
    units = outcome.sync = sync.to_add(root, req.env, req.name, folder, gateway.namespace,
                                       sizing.startup_s)
    if not units:
        outcome.notes.append(f"no clusters/{req.env}/{{flux,argocd}}/kustomization.yaml: "
                             "nothing deploys the model folder; add its Flux Kustomization "
                             "or Argo CD Application by hand")
    files = scaffold.model_files(req, choice, model, base, sizing, root, gateway, units)
    changes = ChangeSet(files={unit.path: unit.text for unit in units},
                        folders={folder: {Path(p).name: text for p, text in files.items()}})
    changes.files.update(sync.entry_point_edits(root, req.env, units))
    changes.files.update(_edit_lists(root, _lists(req, units), False, changes.files))
    if choice.offer.pool_folder_to_add:
        changes.files.update(_add_pool(root, req.env, choice.offer.pool_folder_to_add))
    if req.model_config is not None:
        changes.files.update(_catalog_entry(root, req))
    return changes, base


def _removal(req: Request, root: Path, units: list[SyncFile]) -> ChangeSet:
    """Folder, sync files and list entries go; an error when none of them is there."""
    folder = scaffold.folder_of(req)
    changes = ChangeSet(files={unit.path: None for unit in units}, folders={folder: None})
    changes.files.update(_edit_lists(root, _lists(req, units), True, changes.files))
    if not effective(changes, root).paths():
        raise ToolError(f"there is no model {req.name!r} in {req.env}: no folder {folder}, no "
                        f"entry in {scaffold.models_list(req.env)}, no clusters/{req.env}/"
                        f"*/models/{req.name}.yaml")
    return changes


def _lists(req: Request, units: list[SyncFile]) -> list[tuple[str, str]]:
    """(kustomization, entry) of every list that names the model."""
    return [(scaffold.models_list(req.env), req.name), *[(u.listing, u.entry) for u in units]]


def _edit_lists(root: Path, lists: list[tuple[str, str]], remove: bool,
                planned: dict[str, str | None]) -> dict[str, str]:
    """Each list (as `planned` so far, else as it is) with the entry added (sorted among the
    others) or removed."""
    out = {}
    for path, entry in lists:
        text = planned[path] if path in planned else read_text(root, path)
        if text is None and remove:
            continue
        if text is None:
            overlay = Path(path).parent.parent.as_posix()
            raise ToolError(f"{path} not found: create it (a kustomization whose resources "
                            f"list the model folders) and list `models` in {overlay}/"
                            "kustomization.yaml")
        out[path] = (edit.remove_resource(text, entry, path) if remove
                     else edit.add_resource(text, entry, path, ""))
    return out


def _catalog_entry(root: Path, req: Request) -> dict[str, str]:
    """A --model-config goes into the catalog, so that tools/plan, the policies and a rerun
    without the option know the model too (an entry already there is left alone)."""
    rel = f"catalog/models/{req.model_id}/config.json"
    if (root / rel).exists() or req.model_config is None:
        return {}
    return {rel: req.model_config.read_text(encoding="utf-8")}


def _add_pool(root: Path, env: str, pool_folder: str) -> dict[str, str]:
    infra = f"overlays/{env}/infrastructure/kustomization.yaml"
    text = read_text(root, infra)
    if text is None:
        raise ToolError(f"{infra} not found")
    entry = Path(os.path.relpath(root / pool_folder, (root / infra).parent)).as_posix()
    group = entry.rsplit("/", 1)[0] + "/"
    return {infra: edit.add_resource(text, entry, infra, group)}


def regenerate_routes(staged: Path, env: str, changes: ChangeSet) -> None:
    """The environment's gateway routes, by the same generator as `tools/routes` (the models
    deployed beside the gateway: routes.routes_scope), on the staged copy."""
    path = staged / scaffold.routes_file(env)
    if path not in routes_files(staged):
        return
    scope = routes_scope(path, ScopeLoader(load_settings(staged)))
    _check_unique_routes(list(routes_of(scope)))
    text = expected_routes_text(scope)
    if path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
        changes.files[path.relative_to(staged).as_posix()] = text


def _check_unique_routes(found: list[tuple[Resource, Route | None]]) -> None:
    seen: dict[str, str] = {}
    for workload, route in found:
        if route is None:
            continue
        other = seen.setdefault(route.model_name, workload.name)
        if other != workload.name:
            raise ToolError(f"route {route.model_name!r} would be served by both {other} and "
                            f"{workload.name}: pass a different --route")


def env_targets(root: Path, env: str) -> list[Target]:
    """The environment's overlay (infrastructure, apps, models and each model folder) and its
    cluster entry points (which sync each model folder on its own)."""
    settings = load_settings(root)
    prefixes = (f"overlays/{env}/", f"clusters/{env}/")
    return [t for t in discover_targets(settings)
            if t.name == f"overlays/{env}" or t.name.startswith(prefixes)]


def validate_env(root: Path, env: str) -> Report:
    settings = load_settings(root)
    return validate(env_targets(root, env), settings)


def _error_key(finding: Finding) -> tuple[str, str, str]:
    return finding.rule, finding.message, finding.file or ""


def _check_rendered(staged: Path, req: Request, base: Base, outcome: Outcome) -> None:
    """What Karpenter would launch for the rendered model (tools/plan's simulation), and
    whether its NodePool's GPU limit holds every model on it at their maximum replicas."""
    env_folder = staged / "overlays" / req.env
    scope = ScopeLoader(load_settings(staged)).load(
        Target(env_folder, f"overlays/{req.env}", "paths"))
    wanted = f"{base.statefulset.name}-{req.name}"
    workloads = find_vllm_workloads(scope)
    for workload in workloads:
        if workload.resource.name == wanted:
            outcome.karpenter = plan_workload(workload, scope,
                                              [staged / "catalog" / "models"]).karpenter
    chosen = outcome.karpenter.chosen if outcome.karpenter else None
    planned = outcome.choice.instance.name if outcome.choice else None
    if outcome.karpenter is not None and chosen is None:
        outcome.notes.append(f"Karpenter would launch no node for this pod: "
                             f"{outcome.karpenter.reason}")
    elif chosen is not None and chosen.instance.name != planned:
        outcome.notes.append(f"sized for {planned}, but Karpenter would launch "
                             f"{chosen.instance.name} (${chosen.instance.usd_per_hour}/h)")
    pool = scope.find("NodePool", chosen.nodepool) if chosen else None
    limit = (pool.get("spec", "limits", default={}) or {}).get(GPU) if pool else None
    if pool is None or limit is None:
        return
    users = [w for w in workloads if w.scheduling.node_selector.get(POOL_LABEL) == pool.name]
    needed = sum((w.gpus or 0) * w.max_replicas for w in users)
    if needed > parse_quantity(limit):
        outcome.notes.append(
            f"at their maximum replicas the {len(users)} model(s) on NodePool {pool.name} need "
            f"{needed} GPUs but its limit is {limit}: raise spec.limits.{GPU} in "
            f"overlays/{req.env}/infrastructure or lower the replicas")


def run(req: Request, root: Path, force: bool = False) -> Outcome:
    """Compute the change, stage it, regenerate routes and validate there. Writes nothing."""
    outcome = Outcome(req, ChangeSet())
    wanted, base = plan_changes(req, root, outcome)
    changes = effective(wanted, root)
    if not changes.files and not changes.folders:
        outcome.changes = changes
        return outcome
    folder = scaffold.folder_of(req)
    if not req.remove and not force and folder in changes.folders and (root / folder).exists():
        raise Refused(f"model {req.name!r} already exists in {req.env} with other settings "
                      f"({folder}); the diff above shows what would change. Rerun with --force "
                      "to replace it, or pick another --name", unified_diff(changes, root))
    with staging_copy(root) as staged:
        write_plain(staged, changes)
        regenerate_routes(staged, req.env, changes)
        outcome.changes = changes
        if not req.remove:
            _check_rendered(staged, req, base, outcome)
        outcome.diff = unified_diff(changes, root)
        outcome.report = validate_env(staged, req.env)
    errors = [f for f in (outcome.report.findings if outcome.report else [])
              if f.severity is Severity.ERROR]
    if errors:
        before = {_error_key(f) for f in validate_env(root, req.env).findings
                  if f.severity is Severity.ERROR}
        outcome.new_errors = [f for f in errors if _error_key(f) not in before]
        outcome.old_errors = len(errors) - len(outcome.new_errors)
    return outcome

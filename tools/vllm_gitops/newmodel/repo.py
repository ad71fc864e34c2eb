"""What the repository offers, read at generation time (never hard-coded here).

- GPU families: the components `base/components/gpu-*`, each selecting one NodePool
  (`karpenter.sh/nodepool` in its patch's nodeSelector) and a node shape.
- NodePools: `base/karpenter/nodepools/<folder>` (what could be added to an environment) and
  the ones an environment's `infrastructure` renders (what its cluster offers today).
- The vLLM base (`base/vllm`): the StatefulSet whose flags, probe period, tolerations and
  object names the generated folder builds on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.findings import Severity
from vllm_gitops.kustomization import kustomization_file
from vllm_gitops.load import source_documents
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings
from vllm_gitops.sizing.karpenter import NodeClass, NodePool
from vllm_gitops.sizing.workload import VllmWorkload, find_vllm_workloads
from vllm_gitops.topology import karpenter_nodepools, node_classes, pod_spec

VLLM_BASE = "base/vllm"
COMPONENTS = "base/components"
NODEPOOLS = "base/karpenter/nodepools"
POOL_LABEL = "karpenter.sh/nodepool"
# What a model folder repeats from its environment's gateway when the gateway says nothing.
DEFAULT_NAMESPACE = "inference"
ENV_LABEL = "vllm-gitops.io/environment"


@dataclass(frozen=True)
class Family:
    """A GPU-family component: which NodePool and node shape a model folder selects."""

    component: str  # folder name, e.g. "gpu-g6e-1x"
    nodepool: str  # NodePool name its nodeSelector picks
    node_selector: dict[str, str] = field(hash=False)


@dataclass(frozen=True)
class PoolSource:
    """A NodePool the repository defines, and the folder an environment includes to get it."""

    folder: str  # e.g. "base/karpenter/nodepools/gpu-g6e"
    pool: NodePool


@dataclass
class Infrastructure:
    """What one environment's cluster has: NodePools, EC2NodeClasses, StorageClasses."""

    pools: dict[str, NodePool]
    node_classes: dict[str, NodeClass]
    storage_throughput_mib_s: float | None
    # GPUs the environment's other models already hold per NodePool (at their min replicas).
    gpus_in_use: dict[str, int] = field(default_factory=dict)


@dataclass
class Base:
    """The vLLM base the model folders instantiate."""

    workload: VllmWorkload
    object_names: list[str]

    @property
    def statefulset(self) -> Resource:
        return self.workload.resource

    @property
    def pod_spec(self) -> dict[str, Any]:
        return pod_spec(self.statefulset) or {}

    @property
    def container(self) -> dict[str, Any]:
        for container in self.pod_spec.get("containers") or []:
            if container.get("name") == self.workload.container:
                return dict(container)
        return {}


@dataclass(frozen=True)
class Gateway:
    """What every model folder of an environment repeats from its gateway's kustomization:
    the namespace (the routes point there) and the environment labels (no selectors)."""

    folder: str  # overlays/<env>/apps
    namespace: str
    labels: dict[str, str] = field(hash=False)


class Repo:
    """Reads (and renders, with the real kustomize) what the generator needs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loader = ScopeLoader(load_settings(root))

    def render(self, rel: str) -> Scope:
        folder = self.root / rel
        scope = self.loader.load(Target(folder, rel, "paths"))
        problems = [f for f in scope.findings if f.severity is Severity.ERROR]
        if problems:
            where = problems[0].file or rel
            raise ToolError(f"cannot render {rel}: {problems[0].message} [{problems[0].rule}]",
                            file=where, line=problems[0].line)
        return scope

    def base(self) -> Base:
        scope = self.render(VLLM_BASE)
        workloads = [w for w in find_vllm_workloads(scope) if w.resource.kind == "StatefulSet"]
        if len(workloads) != 1:
            raise ToolError(f"{VLLM_BASE} must render exactly one vLLM StatefulSet, "
                            f"found {len(workloads)}")
        return Base(workloads[0], [r.name for r in scope.resources])

    def families(self) -> list[Family]:
        found = []
        for folder in sorted((self.root / COMPONENTS).glob("gpu-*")):
            family = _family(folder)
            if family is not None:
                found.append(family)
        return found

    def pool_sources(self) -> dict[str, PoolSource]:
        """NodePool name -> its base folder, for every pool the repository defines."""
        sources: dict[str, PoolSource] = {}
        folders = sorted(p for p in (self.root / NODEPOOLS).iterdir() if p.is_dir()) \
            if (self.root / NODEPOOLS).is_dir() else []
        self.loader.prefetch(folders)
        for folder in folders:
            rel = folder.relative_to(self.root).as_posix()
            for pool in karpenter_nodepools(self.render(rel)):
                sources[pool.name] = PoolSource(rel, pool)
        return sources

    def gateway(self, env: str) -> Gateway:
        folder = f"overlays/{env}/apps"
        kfile = kustomization_file(self.root / folder)
        docs = source_documents(kfile) if kfile else ()
        data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
        entries = [e.get("pairs") for e in data.get("labels") or []
                   if isinstance(e, dict) and not e.get("includeSelectors")]
        labels = next((p for p in entries if isinstance(p, dict) and p), {ENV_LABEL: env})
        return Gateway(folder, str(data.get("namespace") or DEFAULT_NAMESPACE),
                       {str(k): str(v) for k, v in labels.items()})

    def gpus_in_use(self, env: str, skip: str) -> dict[str, int]:
        """GPUs per NodePool the environment's vLLM servers take at their minimum replicas
        (the StatefulSet named `skip`, the model being replaced, excluded), in the render of
        everything the environment runs (overlays/<env>: infrastructure, apps, models)."""
        overlay = f"overlays/{env}"
        if kustomization_file(self.root / overlay) is None:
            return {}
        used: dict[str, int] = {}
        for server in find_vllm_workloads(self.render(overlay)):
            pool = server.scheduling.node_selector.get(POOL_LABEL)
            if pool and server.resource.name != skip:
                used[pool] = used.get(pool, 0) + (server.gpus or 0) * server.replicas
        return used

    def infrastructure(self, env: str) -> Infrastructure:
        rel = f"overlays/{env}/infrastructure"
        if not (self.root / rel).is_dir():
            raise ToolError(f"environment {env!r} has no {rel} folder")
        scope = self.render(rel)
        throughput = None
        for sc in scope.of_kind("StorageClass"):
            raw = (sc.get("parameters") or {}).get("throughput")
            if raw:
                throughput = float(raw)
        # EC2 NodePools only: EKS Auto Mode pools are not simulated (topology.is_ec2_nodepool).
        return Infrastructure(
            pools={pool.name: pool for pool in karpenter_nodepools(scope)},
            node_classes=dict(node_classes(scope)),
            storage_throughput_mib_s=throughput,
        )


def _family(folder: Path) -> Family | None:
    kfile = kustomization_file(folder)
    docs = source_documents(kfile) if kfile else ()
    if not docs or not isinstance(docs[0].data, dict):
        return None
    for patch in docs[0].data.get("patches") or []:
        if not isinstance(patch, dict) or not patch.get("path"):
            continue
        for doc in source_documents(folder / str(patch["path"])):
            data = doc.data if isinstance(doc.data, dict) else {}
            selector = (((data.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
                "nodeSelector") or {}
            if POOL_LABEL in selector:
                return Family(folder.name, str(selector[POOL_LABEL]),
                              {str(k): str(v) for k, v in selector.items()})
    return None

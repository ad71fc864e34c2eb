"""Storage rules: volume claims name a StorageClass that exists, the model cache holds the
weights, and a ReadWriteOnce volume is never mounted by two pods at once.

Decisions:
- StorageClass names are checked where classes are managed (the scope holds a StorageClass) and
  in whole clusters. An EKS cluster creates the `gp2` class itself
  (https://docs.aws.amazon.com/eks/latest/userguide/create-storage-class.html), so a cluster
  scope may name it. A claim without storageClassName uses the default class: a scope that
  holds StorageClasses must mark one default (EKS 1.30+ marks none); a cluster scope with no
  StorageClass at all is assumed to get its default from outside git.
- The model cache needs the checkpoint size plus CACHE_HEADROOM (10%: Hugging Face downloads
  into `.incomplete` files beside the blobs, and vLLM keeps its compile cache there too).
- Oversized: more than CACHE_OVERSIZE_FACTOR times the weights and more than
  CACHE_OVERSIZE_MIN_EXCESS_GIB unused (gp3 bills provisioned GiB; a small model on a modest
  volume is not worth a warning).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, as_list, as_map, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.quantity import GIB, parse_quantity
from vllm_gitops.sizing.weights import checkpoint_bytes
from vllm_gitops.sizing.workload import replica_range
from vllm_gitops.topology import catalog_model, vllm_servers
from vllm_gitops.yamlsafe import FieldPath

CACHE_HEADROOM = 0.10
CACHE_OVERSIZE_FACTOR = 3.0
CACHE_OVERSIZE_MIN_EXCESS_GIB = 100.0
EKS_PROVIDED_CLASSES = {"gp2"}
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
EBS_PROVISIONERS = {"ebs.csi.aws.com", "ebs.csi.eks.amazonaws.com", "kubernetes.io/aws-ebs"}
SINGLE_NODE_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}


# ---------------------------------------------------------------- storage classes


def _claims(scope: Scope) -> Iterator[tuple[Resource, FieldPath, dict[str, Any]]]:
    """(owner, path of the claim spec, claim spec) of every PVC and volumeClaimTemplate."""
    for resource in scope.resources:
        if resource.kind == "PersistentVolumeClaim":
            spec = resource.get("spec")
            if isinstance(spec, dict):
                yield resource, ("spec",), spec
        for index, template in enumerate(as_list(resource.get("spec", "volumeClaimTemplates"))):
            if resource.kind == "StatefulSet" and isinstance(template, dict):
                spec = template.get("spec")
                if isinstance(spec, dict):
                    yield resource, ("spec", "volumeClaimTemplates", index, "spec"), spec


def _claim_label(owner: Resource, path: FieldPath) -> str:
    if owner.kind == "PersistentVolumeClaim":
        return "the claim"
    template = owner.get(*path[:-1], "metadata", "name")
    return f"volumeClaimTemplate {template!r}"


@rule(
    "storage/class-missing", Severity.ERROR,
    "a volume claim names a StorageClass that does not exist (or relies on a missing default)",
    why="""A PersistentVolumeClaim is provisioned by the StorageClass it names. If that class
    does not exist in the cluster, the claim stays Pending forever, and so does the pod that
    mounts it (for vLLM: the model cache, so the model never starts).""",
    fix="""Name a StorageClass that is deployed (in this repository: the one in base/storage),
    or deploy the class; for claims without storageClassName, mark one class
    storageclass.kubernetes.io/is-default-class: "true".""",
)
def class_missing(scope: Scope) -> Iterator[Violation]:
    classes = {sc.name: sc for sc in scope.of_kind("StorageClass")}
    if not classes and scope.kind != "cluster":
        return
    has_default = any(sc.annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
                      for sc in classes.values())
    for owner, path, spec in _claims(scope):
        name = spec.get("storageClassName")
        label = _claim_label(owner, path)
        if name is None:
            if classes and not has_default:
                yield Violation(owner, f"{label} names no storageClassName and no StorageClass "
                                "here is the default: it stays Pending", path)
        elif name and name not in classes and not (
                scope.kind == "cluster" and name in EKS_PROVIDED_CLASSES):
            yield Violation(owner, f"{label} names StorageClass {name!r}, which is not "
                            "deployed", (*path, "storageClassName"))


@rule(
    "storage/binding-immediate", Severity.WARNING,
    "an EBS StorageClass binds volumes immediately instead of when the pod is scheduled",
    why="""EBS volumes live in one availability zone. With volumeBindingMode Immediate (the
    default when the field is absent) the volume is created in an arbitrary zone before the pod
    is scheduled, which pins the pod to that zone: if it has no free GPU capacity, the model
    stays Pending although other zones have GPUs.""",
    fix="""Set volumeBindingMode: WaitForFirstConsumer on the StorageClass (a StorageClass
    cannot be changed in place: create it under a new name, or delete and recreate it).""",
)
def binding_immediate(scope: Scope) -> Iterator[Violation]:
    for storage_class in scope.of_kind("StorageClass"):
        if storage_class.get("provisioner") not in EBS_PROVISIONERS:
            continue
        mode = storage_class.get("volumeBindingMode")
        if mode in (None, "Immediate"):
            yield Violation(storage_class, "volumeBindingMode is Immediate"
                            + (" (the default)" if mode is None else ""),
                            ("volumeBindingMode",) if mode else ("provisioner",))


# ---------------------------------------------------------------- model cache size


@dataclass(frozen=True)
class ClaimSize:
    bytes: float
    path: FieldPath  # where the size is written, in the resource that owns it
    owner: Resource


def _claim_size(scope: Scope, workload: Resource, claim: str) -> ClaimSize | None:
    templates = as_list(workload.get("spec", "volumeClaimTemplates"))
    for index, template in enumerate(templates):
        if as_map(as_map(template).get("metadata")).get("name") == claim:
            path: FieldPath = ("spec", "volumeClaimTemplates", index, "spec", "resources",
                               "requests", "storage")
            return _size(workload, path)
    pvc = scope.find("PersistentVolumeClaim", claim, workload.namespace)
    return _size(pvc, ("spec", "resources", "requests", "storage")) if pvc else None


def _size(owner: Resource, path: FieldPath) -> ClaimSize | None:
    try:
        return ClaimSize(parse_quantity(owner.get(*path)), path, owner)
    except ToolError:
        return None


def _cache_sizes(scope: Scope) -> Iterator[tuple[str, float, ClaimSize]]:
    """(model, checkpoint bytes, cache claim size) of every vLLM server with a cache PVC."""
    seen: set[tuple[int, str]] = set()
    for server in vllm_servers(scope):
        if server.cache.kind != "pvc" or not server.cache.claim or not server.model:
            continue
        if (id(server.resource), server.cache.claim) in seen:
            continue
        seen.add((id(server.resource), server.cache.claim))
        size = _claim_size(scope, server.resource, server.cache.claim)
        if size is None:
            continue
        model = catalog_model(server)
        if model is None:  # a model the catalog does not know: nothing to compare with
            continue
        yield server.model, checkpoint_bytes(model), size


@rule(
    "storage/cache-too-small", Severity.ERROR,
    "the model cache volume is too small to hold the model's weights",
    why="""vLLM downloads the weights into the Hugging Face cache on the volume before it can
    load them. When the volume is smaller than the checkpoint (plus room for the partial
    download and vLLM's compile cache), the download fails with "No space left on device" and
    the pod restarts, downloading again, forever.""",
    fix="""Request at least the checkpoint size plus 10% on the cache claim (resources.requests.
    storage); an EBS volume can be grown in place when its StorageClass allows volume
    expansion.""",
)
def cache_too_small(scope: Scope) -> Iterator[Violation]:
    for model, weights, size in _cache_sizes(scope):
        needed = weights * (1 + CACHE_HEADROOM)
        if size.bytes < needed:
            yield Violation(size.owner, f"the model cache holds {size.bytes / GIB:.1f} GiB but "
                            f"{model}'s weights take {weights / GIB:.1f} GiB; with "
                            f"{CACHE_HEADROOM:.0%} headroom it needs {math.ceil(needed / GIB)} GiB",
                            size.path)


@rule(
    "storage/cache-oversized", Severity.WARNING,
    "the model cache volume is many times larger than the model's weights",
    why="""EBS bills every provisioned GiB, every hour, whether used or not, and per replica
    (each StatefulSet replica gets its own volume). A cache many times the size of the weights
    is money spent on empty disk (gp3's baseline speed does not grow with size).""",
    fix="""Size the cache claim to the checkpoint plus a margin (e.g. 1.5x, or the next model
    you plan to serve); EBS volumes can grow later but never shrink.""",
)
def cache_oversized(scope: Scope) -> Iterator[Violation]:
    for model, weights, size in _cache_sizes(scope):
        excess_gib = (size.bytes - weights) / GIB
        if size.bytes > CACHE_OVERSIZE_FACTOR * weights and \
                excess_gib > CACHE_OVERSIZE_MIN_EXCESS_GIB:
            yield Violation(size.owner, f"the model cache holds {size.bytes / GIB:.0f} GiB for "
                            f"{weights / GIB:.1f} GiB of {model} weights "
                            f"({size.bytes / weights:.0f}x; {excess_gib:.0f} GiB never used)",
                            size.path)


# ---------------------------------------------------------------- ReadWriteOnce sharing


@dataclass(frozen=True)
class RwoMount:
    workload: Resource
    claim: str
    path: FieldPath  # the volume's claimName field
    max_pods: int | None  # None: one per node (DaemonSet)


def _rwo_mounts(scope: Scope) -> Iterator[RwoMount]:
    """Every mount of a single-node (ReadWriteOnce/-Pod) claim by a workload's pods."""
    for resource in scope.resources:
        spec_path = pod_spec_path(resource)
        if spec_path is None or resource.kind in ("Job", "CronJob"):
            continue
        for index, volume in enumerate(as_list(resource.get(*spec_path, "volumes"))):
            claim = as_map(as_map(volume).get("persistentVolumeClaim")).get("claimName")
            pvc = scope.find("PersistentVolumeClaim", str(claim), resource.namespace) \
                if claim else None
            modes = {str(m) for m in as_list(pvc.get("spec", "accessModes"))} if pvc else set()
            if not modes or not modes <= SINGLE_NODE_MODES:
                continue
            if resource.kind == "DaemonSet":
                pods: int | None = None
            elif resource.kind == "Pod":
                pods = 1
            else:
                pods = replica_range(resource, scope)["max_replicas"]
            yield RwoMount(resource, str(claim), (*spec_path, "volumes", index,
                                                  "persistentVolumeClaim", "claimName"), pods)


@rule(
    "storage/rwo-shared", Severity.ERROR,
    "a ReadWriteOnce volume is mounted by more than one pod (replicas or autoscaler maximum)",
    why="""An EBS volume (ReadWriteOnce) attaches to one node at a time. A second replica,
    which on GPU nodes always lands on another node, waits forever in ContainerCreating with a
    Multi-Attach error, so scaling out or a second model sharing the cache never serves.""",
    fix="""Give every replica its own volume: a StatefulSet with volumeClaimTemplates (as in
    base/vllm), or a ReadWriteMany file system (EFS) for a shared cache; or keep the workload
    at one replica (replicas and autoscaler maximum).""",
)
def rwo_shared(scope: Scope) -> Iterator[Violation]:
    by_claim: dict[tuple[str | None, str], list[RwoMount]] = {}
    for mount in _rwo_mounts(scope):
        by_claim.setdefault((mount.workload.namespace, mount.claim), []).append(mount)
    for (_, claim), mounts in by_claim.items():
        pods = [m.max_pods for m in mounts]
        if None not in pods and sum(p or 0 for p in pods) <= 1:
            continue
        total = "one pod per node" if None in pods else f"up to {sum(p or 0 for p in pods)} pods"
        users = ", ".join(sorted(f"{m.workload.kind} {m.workload.name}" for m in mounts))
        for mount in mounts:
            yield Violation(mount.workload, f"ReadWriteOnce claim {claim!r} is mounted by "
                            f"{total} ({users})", mount.path)


def _surges(deployment: Resource) -> bool:
    """Whether a Deployment's rollout starts a new pod before the old one is gone."""
    strategy = as_map(deployment.get("spec", "strategy"))
    if strategy.get("type") == "Recreate":
        return False
    surge = as_map(strategy.get("rollingUpdate")).get("maxSurge", "25%")  # the API default
    return str(surge).strip() not in ("0", "0%")


@rule(
    "storage/rwo-rolling-update", Severity.WARNING,
    "a Deployment rolls out by surging a new pod onto its ReadWriteOnce volume",
    why="""A RollingUpdate (the default strategy) starts the new pod before stopping the old
    one. The new pod needs the same ReadWriteOnce volume, still attached to the old pod's node,
    and, for a GPU server, a second GPU node: the rollout hangs in a Multi-Attach error until
    someone deletes the old pod by hand.""",
    fix="""Set `strategy: {type: Recreate}` on the Deployment (or maxSurge: 0), or use a
    StatefulSet with volumeClaimTemplates, whose rolling update stops the old pod first.""",
)
def rwo_rolling_update(scope: Scope) -> Iterator[Violation]:
    seen: set[int] = set()
    for mount in _rwo_mounts(scope):
        if mount.workload.kind != "Deployment" or id(mount.workload) in seen \
                or not _surges(mount.workload):
            continue
        seen.add(id(mount.workload))
        has_strategy = mount.workload.get("spec", "strategy") is not None
        path: FieldPath = ("spec", "strategy") if has_strategy else mount.path
        yield Violation(mount.workload, f"a rolling update surges a second pod onto "
                        f"ReadWriteOnce claim {mount.claim!r}", path)

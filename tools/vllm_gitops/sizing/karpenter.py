"""Which instance type Karpenter (v1) would launch for a pending pod, and what it costs.

Follows kubernetes-sigs/karpenter v1.14 scheduling: NodePools by weight (ties: name descending);
the pod must tolerate every template taint; nodeSelector + the first required nodeAffinity term
must be compatible with the pool's requirements and labels (custom keys must be defined by the
pool) and intersect each instance type's labels; requests + DaemonSet overhead must fit the
instance's allocatable (aws/karpenter-provider-aws instancetype/types.go); instance capacity
must fit the pool's limits; survivors are ordered by price and the cheapest is launched.
DaemonSet overhead: the requests (and pod slots) of every DaemonSet in scope that would land on
the node (tolerates the pool's taints, nodeSelector / first required term compatible with the
node's labels), plus an allowance for the DaemonSets every EKS GPU node runs without them being
in the repository (EKS_DAEMONSETS).
Prices are us-east-1 on-demand: Karpenter prefers spot when a pool allows it, so the on-demand
figure is then an upper bound.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vllm_gitops.sizing.hardware import InstanceType
from vllm_gitops.sizing.memo import ValueMemo, value_key
from vllm_gitops.sizing.quantity import GIB, MIB, parse_quantity

Labels = dict[str, frozenset[str] | None]  # None: the label exists, value unknown (zone...)

VM_MEMORY_OVERHEAD = 0.075  # --vm-memory-overhead-percent default
EVICTION_MEMORY_MIB = 100.0
EVICTION_NODEFS_FRACTION = 0.10
KUBE_RESERVED_EPHEMERAL = 1 * GIB
DEFAULT_ROOT_VOLUME = 20 * GIB
CAPACITY_TYPES = frozenset({"on-demand", "spot"})
EPHEMERAL_TAINT_KEYS = (
    "node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized", "karpenter.sh/unregistered",
)
WELL_KNOWN_PREFIXES = ("karpenter.k8s.aws/", "topology.k8s.aws/")
WELL_KNOWN_KEYS = {
    "node.kubernetes.io/instance-type", "kubernetes.io/arch", "kubernetes.io/os",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region", "karpenter.sh/capacity-type",
    "karpenter.sh/nodepool", "kubernetes.io/hostname",
}
DEPRECATED_ALIASES = {
    "beta.kubernetes.io/arch": "kubernetes.io/arch",
    "beta.kubernetes.io/os": "kubernetes.io/os",
    "beta.kubernetes.io/instance-type": "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone": "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region": "topology.kubernetes.io/region",
}


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Requirement:
        key = str(doc.get("key", ""))
        return cls(DEPRECATED_ALIASES.get(key, key), str(doc.get("operator", "In")),
                   tuple(str(v) for v in doc.get("values") or ()))

    def allows(self, key_present: bool, values: frozenset[str] | None) -> bool:
        """Could a node whose label `key` has `values` (None: unknown) satisfy this?"""
        op = self.operator
        if op == "Exists":
            return key_present
        if op == "DoesNotExist":
            return not key_present
        if op == "NotIn":
            return not key_present or values is None or bool(values - set(self.values))
        if not key_present:
            return False
        if values is None:
            return True
        if op == "In":
            return bool(values & set(self.values))
        return any(self._compare(v) for v in values)

    def _compare(self, value: str) -> bool:
        try:
            left, right = int(value), int(self.values[0])
        except (ValueError, IndexError):
            return False
        return {"Gt": left > right, "Lt": left < right, "Gte": left >= right,
                "Lte": left <= right}.get(self.operator, False)


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        key, op = tol.get("key"), tol.get("operator", "Equal")
        if key and key != taint.get("key"):
            continue
        if not key and op != "Exists":
            continue
        if op == "Equal" and str(tol.get("value", "")) != str(taint.get("value", "")):
            continue
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        return True
    return False


@dataclass(frozen=True)
class PodScheduling:
    """What Karpenter reads from a pending pod."""

    requests: dict[str, float]  # cpu in cores, memory/ephemeral-storage in bytes, counts
    node_selector: dict[str, str] = field(default_factory=dict)
    required_term: tuple[Requirement, ...] = ()  # first requiredDuringScheduling term
    tolerations: tuple[dict[str, Any], ...] = ()

    @property
    def requirements(self) -> list[Requirement]:
        selected = [Requirement.from_dict({"key": k, "operator": "In", "values": [v]})
                    for k, v in self.node_selector.items()]
        return selected + list(self.required_term)

    @classmethod
    def from_pod_spec(cls, spec: Mapping[str, Any]) -> PodScheduling:
        affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {})
        required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = required.get("nodeSelectorTerms") or [{}]
        first = terms[0].get("matchExpressions") or []
        return cls(
            requests=pod_requests(spec),
            node_selector={str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()},
            required_term=tuple(Requirement.from_dict(r) for r in first),
            tolerations=tuple(spec.get("tolerations") or ()),
        )


def pod_requests(spec: Mapping[str, Any]) -> dict[str, float]:
    """Sum of container requests (a limit stands in for a missing request); init containers
    count by their maximum."""
    def container_requests(container: Mapping[str, Any]) -> dict[str, float]:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return {str(k): parse_quantity(v) for k, v in merged.items()}

    total: dict[str, float] = {}
    for container in spec.get("containers") or []:
        for key, value in container_requests(container).items():
            total[key] = total.get(key, 0.0) + value
    for container in spec.get("initContainers") or []:
        for key, value in container_requests(container).items():
            total[key] = max(total.get(key, 0.0), value)
    return total


@dataclass(frozen=True)
class DaemonSetPod:
    """One DaemonSet's pod as Karpenter counts it into a new node's overhead
    (scheduler.go buildDaemonOverheadGroups / isDaemonPodCompatible)."""

    name: str
    scheduling: PodScheduling
    gpu_nodes_only: bool = False  # the allowance's device plugin: only where there are GPUs

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> DaemonSetPod:
        spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        return cls(str((doc.get("metadata") or {}).get("name", "")),
                   PodScheduling.from_pod_spec(spec))

    def lands_on(self, pool: NodePool, labels: Labels, gpus: int) -> bool:
        if self.gpu_nodes_only and gpus == 0:
            return False
        blocking = [t for t in pool.taints if t.get("effect") != "PreferNoSchedule"]
        if any(not tolerates(self.scheduling.tolerations, t) for t in blocking):
            return False
        return _satisfies(self.scheduling.requirements, labels)


def _allowance(name: str, tolerations: tuple[dict[str, Any], ...] = ({"operator": "Exists"},),
               gpu_nodes_only: bool = False, **requests: float) -> DaemonSetPod:
    return DaemonSetPod(name, PodScheduling(requests=dict(requests), tolerations=tolerations),
                        gpu_nodes_only)


# DaemonSets an EKS GPU node runs that a GitOps repository usually does not hold (EKS add-ons,
# or installed once per cluster). Counted unless a DaemonSet of the same name is in scope.
EKS_DAEMONSETS = (
    # VPC CNI: requests cpu 25m, tolerates everything
    # https://github.com/aws/amazon-vpc-cni-k8s/blob/master/charts/aws-vpc-cni/values.yaml
    _allowance("aws-node", cpu=0.025),
    # EKS kube-proxy add-on: requests cpu 100m, tolerates everything (the EKS manifest:
    # https://gist.github.com/marccampbell/5dd25ae11166a283d97763c43e74d167)
    _allowance("kube-proxy", cpu=0.1),
    # EBS CSI node: node.resources requests cpu 10m, memory 40Mi; tolerateAllTaints: true
    # https://github.com/kubernetes-sigs/aws-ebs-csi-driver/blob/master/charts/aws-ebs-csi-driver/values.yaml
    _allowance("ebs-csi-node", cpu=0.01, memory=40 * MIB),
    # NVIDIA device plugin: resources {} (a pod slot only), tolerates nvidia.com/gpu
    # https://github.com/NVIDIA/k8s-device-plugin/blob/main/deployments/helm/nvidia-device-plugin/values.yaml
    _allowance("nvidia-device-plugin-daemonset",
               tolerations=({"key": "nvidia.com/gpu", "operator": "Exists"},
                            {"key": "CriticalAddonsOnly", "operator": "Exists"}),
               gpu_nodes_only=True),
)


def daemonset_overhead(pool: NodePool, instance: InstanceType,
                       daemonsets: Iterable[DaemonSetPod] = (), eks_allowance: bool = True,
                       labels: Labels | None = None) -> dict[str, float]:
    """Requests and pod slots of the DaemonSet pods a node of this pool and type would run
    (`labels`: the node's, when the caller has them)."""
    in_scope = list(daemonsets)
    names = {d.name for d in in_scope}
    extra = [d for d in EKS_DAEMONSETS if d.name not in names] if eks_allowance else []
    labels = _node_labels(pool, instance) if labels is None else labels
    total: dict[str, float] = {}
    for daemon in (*in_scope, *extra):
        if not daemon.lands_on(pool, labels, instance.gpus):
            continue
        for key, value in daemon.scheduling.requests.items():
            total[key] = total.get(key, 0.0) + value
        total["pods"] = total.get("pods", 0.0) + 1
    return total


@dataclass(frozen=True)
class NodeClass:
    """The EC2NodeClass fields that change allocatable and the cache volume."""

    name: str
    kubelet: dict[str, Any] = field(default_factory=dict)
    root_volume_bytes: float = DEFAULT_ROOT_VOLUME
    root_throughput_mib_s: float | None = None
    raid0_instance_store: bool = False
    bottlerocket: bool = False

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NodeClass:
        spec = doc.get("spec") or {}
        mappings = spec.get("blockDeviceMappings") or []
        root = next((m for m in mappings if m.get("rootVolume")), mappings[0] if mappings else {})
        ebs = root.get("ebs") or {}
        aliases = " ".join(str(t.get("alias", "")) for t in spec.get("amiSelectorTerms") or [])
        family = f"{spec.get('amiFamily', '')} {aliases}".lower()
        return cls(
            name=str((doc.get("metadata") or {}).get("name", "")),
            kubelet=dict(spec.get("kubelet") or {}),
            root_volume_bytes=parse_quantity(ebs["volumeSize"]) if ebs.get("volumeSize")
            else DEFAULT_ROOT_VOLUME,
            root_throughput_mib_s=float(ebs["throughput"]) if ebs.get("throughput") else None,
            raid0_instance_store=spec.get("instanceStorePolicy") == "RAID0",
            bottlerocket="bottlerocket" in family,
        )


@dataclass(frozen=True)
class NodePool:
    name: str
    weight: int = 0
    requirements: tuple[Requirement, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, Any], ...] = ()
    node_class: str | None = None
    limits: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> NodePool:
        spec = doc.get("spec") or {}
        template = spec.get("template") or {}
        tspec = template.get("spec") or {}
        return cls(
            name=str((doc.get("metadata") or {}).get("name", "")),
            weight=int(spec.get("weight") or 0),
            requirements=tuple(Requirement.from_dict(r) for r in tspec.get("requirements") or []),
            labels={str(k): str(v) for k, v in
                    ((template.get("metadata") or {}).get("labels") or {}).items()},
            taints=tuple(t for t in tspec.get("taints") or []
                         if t.get("key") not in EPHEMERAL_TAINT_KEYS),
            node_class=(tspec.get("nodeClassRef") or {}).get("name"),
            limits={str(k): parse_quantity(v) for k, v in (spec.get("limits") or {}).items()},
        )


# ---------------------------------------------------------------- allocatable


def kube_reserved_cpu_cores(vcpus: int) -> float:
    """6 % of the first core, 1 % of the second, 0.5 % of cores 3-4, 0.25 % above."""
    millis = 0.0
    for core in range(1, vcpus + 1):
        millis += 60 if core == 1 else 10 if core == 2 else 5 if core <= 4 else 2.5
    return millis / 1000


def _threshold(value: Any, capacity: float) -> float:
    text = str(value)
    return capacity * float(text[:-1]) / 100 if text.endswith("%") else parse_quantity(text)


def allocatable(instance: InstanceType, node_class: NodeClass | None = None) -> dict[str, float]:
    """Karpenter's allocatable = capacity - kube-reserved - system-reserved - eviction threshold."""
    nc = node_class or NodeClass(name="default")
    kubelet = nc.kubelet
    memory = (instance.memory_mib - math.ceil(instance.memory_mib * VM_MEMORY_OVERHEAD)) * MIB
    pods = int(kubelet.get("maxPods") or instance.eni_max_pods)
    if kubelet.get("podsPerCore") and not nc.bottlerocket:
        pods = min(pods, int(kubelet["podsPerCore"]) * instance.vcpus)
    reserved_pods = pods if nc.bottlerocket else instance.eni_max_pods
    kube = {"cpu": kube_reserved_cpu_cores(instance.vcpus),
            "memory": (11 * reserved_pods + 255) * MIB,
            "ephemeral-storage": KUBE_RESERVED_EPHEMERAL}
    kube.update({k: parse_quantity(v) for k, v in (kubelet.get("kubeReserved") or {}).items()})
    system = {k: parse_quantity(v) for k, v in (kubelet.get("systemReserved") or {}).items()}
    ephemeral = (instance.local_nvme_gb * 1e9 if nc.raid0_instance_store
                 else nc.root_volume_bytes)
    eviction = kubelet.get("evictionHard") or {}
    memory_eviction = _threshold(eviction.get("memory.available", f"{EVICTION_MEMORY_MIB}Mi"),
                                 memory)
    nodefs_eviction = _threshold(eviction.get("nodefs.available", "10%"), ephemeral)
    return {
        "cpu": instance.vcpus - kube["cpu"] - system.get("cpu", 0.0),
        "memory": memory - kube["memory"] - system.get("memory", 0.0) - memory_eviction,
        "ephemeral-storage": ephemeral - kube["ephemeral-storage"]
        - system.get("ephemeral-storage", 0.0) - nodefs_eviction,
        "pods": float(pods),
        "nvidia.com/gpu": float(instance.gpus),
    }


def capacity(instance: InstanceType) -> dict[str, float]:
    """What NodePool limits are compared with."""
    memory = (instance.memory_mib - math.ceil(instance.memory_mib * VM_MEMORY_OVERHEAD)) * MIB
    return {"cpu": float(instance.vcpus), "memory": memory, "nvidia.com/gpu": float(instance.gpus),
            "nodes": 1.0}


# ---------------------------------------------------------------- simulation


@dataclass(frozen=True)
class Candidate:
    instance: InstanceType
    nodepool: str
    capacity_types: tuple[str, ...]
    allocatable: dict[str, float] = field(compare=False)
    daemon_overhead: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def usd_per_hour(self) -> float | None:
        return self.instance.usd_per_hour if "on-demand" in self.capacity_types else None

    def to_dict(self) -> dict[str, Any]:
        return {"instance_type": self.instance.name, "nodepool": self.nodepool,
                "gpus": self.instance.gpus, "gpu": self.instance.gpu.key,
                "capacity_types": list(self.capacity_types),
                "usd_per_hour": self.instance.usd_per_hour,
                "daemonset_overhead": {k: round(v, 3) for k, v in self.daemon_overhead.items()}}


@dataclass(frozen=True)
class PoolVerdict:
    nodepool: str
    candidates: tuple[Candidate, ...]
    reason: str | None  # why no instance type qualifies

    def to_dict(self) -> dict[str, Any]:
        return {"nodepool": self.nodepool, "reason": self.reason,
                "instance_types": [c.instance.name for c in self.candidates]}


@dataclass(frozen=True)
class KarpenterChoice:
    chosen: Candidate | None
    pools: tuple[PoolVerdict, ...]

    @property
    def instance_type(self) -> str | None:
        return self.chosen.instance.name if self.chosen else None

    @property
    def usd_per_hour(self) -> float | None:
        return self.chosen.instance.usd_per_hour if self.chosen else None

    @property
    def reason(self) -> str:
        if self.chosen:
            return f"NodePool {self.chosen.nodepool} launches {self.chosen.instance.name}"
        if not self.pools:
            return "no NodePool in scope"
        return "; ".join(f"{p.nodepool}: {p.reason}" for p in self.pools)

    def to_dict(self) -> dict[str, Any]:
        return {"nodepool": self.chosen.nodepool if self.chosen else None,
                "instance_type": self.instance_type, "usd_per_hour": self.usd_per_hour,
                "capacity_types": list(self.chosen.capacity_types) if self.chosen else [],
                "pools": [p.to_dict() for p in self.pools]}


def _node_labels(pool: NodePool, instance: InstanceType) -> Labels:
    labels: Labels = {k: frozenset({v}) for k, v in instance.labels.items()}
    labels.update({
        "node.kubernetes.io/instance-type": frozenset({instance.name}),
        "kubernetes.io/os": frozenset({"linux"}),
        "karpenter.sh/nodepool": frozenset({pool.name}),
        "karpenter.sh/capacity-type": CAPACITY_TYPES,
        "topology.kubernetes.io/zone": None, "topology.kubernetes.io/region": None,
        "topology.k8s.aws/zone-id": None, "kubernetes.io/hostname": None,
    })
    if pool.node_class:
        labels["karpenter.k8s.aws/ec2nodeclass"] = frozenset({pool.node_class})
    for req in pool.requirements:  # custom keys a pool defines through its requirements
        if req.key not in labels:
            labels[req.key] = frozenset(req.values) if req.operator == "In" else None
    labels.update({k: frozenset({v}) for k, v in pool.labels.items()})
    return labels


def _allowed_capacity_types(pool: NodePool, pod: PodScheduling) -> tuple[str, ...]:
    allowed = set(CAPACITY_TYPES)
    if not any(r.key == "karpenter.sh/capacity-type" for r in pool.requirements):
        allowed = {"on-demand"}  # Karpenter's default when a pool says nothing
    for req in (*pool.requirements, *pod.requirements):
        if req.key == "karpenter.sh/capacity-type":
            allowed = {c for c in allowed if req.allows(True, frozenset({c}))}
    return tuple(sorted(allowed))


def _undefined_key(pod: PodScheduling, labels: Labels) -> str | None:
    for req in pod.requirements:
        if req.key in labels or req.key in WELL_KNOWN_KEYS:
            continue
        if req.key.startswith(WELL_KNOWN_PREFIXES):
            continue
        if req.operator in ("NotIn", "DoesNotExist"):
            continue
        return req.key
    return None


def _satisfies(requirements: Iterable[Requirement], labels: Labels) -> bool:
    return all(r.allows(r.key in labels, labels.get(r.key)) for r in requirements)


def _fits(requests: Mapping[str, float], alloc: Mapping[str, float]) -> bool:
    return all(value <= alloc.get(key, 0.0) for key, value in requests.items() if value > 0)


def _within_limits(pool: NodePool, instance: InstanceType) -> bool:
    cap = capacity(instance)
    return all(cap.get(key, 0.0) <= limit for key, limit in pool.limits.items())


def _evaluate_pool(pool: NodePool, pod: PodScheduling, node_classes: Mapping[str, NodeClass],
                   instances: list[InstanceType], daemonsets: tuple[DaemonSetPod, ...] = (),
                   eks_allowance: bool = True) -> PoolVerdict:
    untolerated = [t for t in pool.taints if not tolerates(pod.tolerations, t)]
    if untolerated:
        taint = untolerated[0]
        return PoolVerdict(pool.name, (), f"pod does not tolerate taint "
                           f"{taint.get('key')}={taint.get('value', '')}:{taint.get('effect')}")
    if node_classes and pool.node_class not in node_classes:
        return PoolVerdict(pool.name, (), f"EC2NodeClass {pool.node_class!r} not found")
    capacity_types = _allowed_capacity_types(pool, pod)
    if not capacity_types:
        return PoolVerdict(pool.name, (), "no capacity type allowed by both pool and pod")
    node_class = node_classes.get(pool.node_class or "")
    requests = dict(pod.requests)
    requests["pods"] = requests.get("pods", 0.0) + 1
    reasons: dict[str, int] = {}
    candidates = []
    for instance in instances:
        labels = _node_labels(pool, instance)
        undefined = _undefined_key(pod, labels)
        if undefined:
            return PoolVerdict(pool.name, (), f'label "{undefined}" does not have known values')
        if not _satisfies(pool.requirements, labels):
            reasons["excluded by the pool's requirements"] = 1
        elif not _satisfies(pod.requirements, labels):
            reasons["excluded by the pod's nodeSelector/affinity"] = 1
        elif not _within_limits(pool, instance):
            reasons["capacity above the pool's limits"] = 1
        else:
            alloc = allocatable(instance, node_class)
            overhead = daemonset_overhead(pool, instance, daemonsets, eks_allowance, labels)
            needed = dict(requests)
            for key, value in overhead.items():
                needed[key] = needed.get(key, 0.0) + value
            if not _fits(needed, alloc):
                reasons["requests do not fit allocatable (DaemonSets included)"] = 1
                continue
            candidates.append(Candidate(instance, pool.name, capacity_types, alloc, overhead))
    candidates.sort(key=_price_order)
    reason = None if candidates else "no instance type qualifies: " + ", ".join(reasons)
    return PoolVerdict(pool.name, tuple(candidates), reason)


def _price_order(candidate: Candidate) -> tuple[float, str]:
    price = candidate.instance.usd_per_hour
    return (price if price is not None else math.inf, candidate.instance.name)


def simulate_karpenter(
    pod: PodScheduling,
    nodepools: Iterable[NodePool],
    node_classes: Mapping[str, NodeClass],
    instances: Iterable[InstanceType],
    daemonsets: Iterable[DaemonSetPod] = (),
    eks_allowance: bool = True,
) -> KarpenterChoice:
    """The NodePool and instance type Karpenter would launch for this pod (cheapest first).
    daemonsets: the DaemonSets in scope (counted where they would land); eks_allowance: also
    count EKS_DAEMONSETS not in scope."""
    ordered = sorted(nodepools, key=lambda p: p.name, reverse=True)
    ordered.sort(key=lambda p: p.weight, reverse=True)  # stable: weight desc, then name desc
    catalog = tuple(instances)
    daemons = tuple(daemonsets)

    def compute() -> KarpenterChoice:
        verdicts = [_evaluate_pool(p, pod, node_classes, list(catalog), daemons, eks_allowance)
                    for p in ordered]
        chosen = next((v.candidates[0] for v in verdicts if v.candidates), None)
        return KarpenterChoice(chosen, tuple(verdicts))

    key = (value_key(pod, ordered, sorted(node_classes.items()), daemons, eks_allowance),
           tuple(map(id, catalog)))
    return _CHOICES.get(key, compute, keep_alive=catalog)


_CHOICES = ValueMemo()

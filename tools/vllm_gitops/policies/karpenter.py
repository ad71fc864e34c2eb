"""Karpenter rules: GPU NodePools and EC2NodeClasses that will evict serving models, waste
GPU nodes or expose them (Karpenter v1 API: https://karpenter.sh/docs/concepts/nodepools/,
https://karpenter.sh/docs/concepts/nodeclasses/, https://karpenter.sh/docs/concepts/disruption/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from vllm_gitops.durations import duration_hours
from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope
from vllm_gitops.topology import do_not_disrupt, landing, pod_spec

GPU_TAINT = "nvidia.com/gpu"
# EC2 families with GPUs: g3..g6e, g4ad/g5g, gr6, p2..p6 (https://aws.amazon.com/ec2/instance-types/).
GPU_FAMILY = re.compile(r"^(g\d+[a-z]*|gr\d+[a-z]*|p\d+[a-z]*)$")
GPU_KEYS = ("karpenter.k8s.aws/instance-gpu-count", "karpenter.k8s.aws/instance-gpu-name",
            "karpenter.k8s.aws/instance-gpu-manufacturer", "karpenter.k8s.aws/instance-gpu-memory")
MIN_EXPIRE_HOURS = 720  # Karpenter's own default (30 days)
MIN_MAX_PODS = 30
# A Kubernetes minor version inside an AMI name, e.g. amazon-eks-node-al2023-x86_64-nvidia-1.33-v...
K8S_VERSION_IN_NAME = re.compile(r"(?<![\d.])1\.(1\d|2\d|3\d|4\d)(?![\d])")


def _template_spec(pool: Resource) -> dict[str, Any]:
    spec = pool.get("spec", "template", "spec")
    return spec if isinstance(spec, dict) else {}


def _requirements(pool: Resource) -> list[dict[str, Any]]:
    return [r for r in _template_spec(pool).get("requirements") or [] if isinstance(r, dict)]


def offers_gpus(pool: Resource) -> bool:
    """Whether the NodePool's requirements or limits are about GPU instances."""
    for req in _requirements(pool):
        key, values = req.get("key"), [str(v) for v in req.get("values") or []]
        if key in GPU_KEYS and req.get("operator") not in ("DoesNotExist",):
            return True
        if req.get("operator", "In") != "In":
            continue
        if key == "karpenter.k8s.aws/instance-family" and any(GPU_FAMILY.match(v)
                                                              for v in values):
            return True
        if key == "karpenter.k8s.aws/instance-category" and set(values) & {"g", "p"}:
            return True
        if key == "node.kubernetes.io/instance-type" and any(
                GPU_FAMILY.match(v.split(".")[0]) for v in values):
            return True
    return GPU_TAINT in (pool.get("spec", "limits") or {})


def gpu_pools(scope: Scope) -> Iterator[Resource]:
    return (p for p in scope.of_kind("NodePool")
            if p.api_version.startswith("karpenter.sh/") and offers_gpus(p))


# ---------------------------------------------------------------- disruption

def _do_not_disrupt_workloads(scope: Scope) -> list[Resource]:
    return [r for r in scope.resources if do_not_disrupt(r)]


def _hosts(scope: Scope, pool: Resource, workload: Resource) -> bool:
    choice = landing(scope, workload)
    return choice is not None and any(v.nodepool == pool.name and v.candidates
                                      for v in choice.pools)


@rule(
    "karpenter/grace-period-bypasses-do-not-disrupt", Severity.WARNING,
    "NodePool terminationGracePeriod overrides karpenter.sh/do-not-disrupt on its model servers",
    why="""With terminationGracePeriod set, Karpenter starts draining a drifted node (any
    change to its EC2NodeClass, such as an AMI bump) even while pods annotated
    karpenter.sh/do-not-disrupt run on it, and deletes them when the period ends. The
    annotation you rely on to keep a loaded model serving no longer protects it: the model
    goes down and reloads for minutes, outside any planned window.""",
    fix="""Remove spec.template.spec.terminationGracePeriod from GPU NodePools that serve
    models (and keep expireAfter: Never), then roll serving pods yourself after a node class
    change; or drop the do-not-disrupt annotation if forced drains are acceptable.""",
)
def grace_period_bypasses_do_not_disrupt(scope: Scope) -> Iterator[Violation]:
    protected = _do_not_disrupt_workloads(scope)
    has_pods = any(pod_spec(r) is not None for r in scope.resources)
    for pool in scope.of_kind("NodePool"):
        if "terminationGracePeriod" not in _template_spec(pool):
            continue
        hosted = [w for w in protected if _hosts(scope, pool, w)]
        if hosted or (not has_pods and offers_gpus(pool)):
            grace = _template_spec(pool)["terminationGracePeriod"]
            who = (f"{hosted[0].kind} {hosted[0].name}" if hosted
                   else "GPU pods annotated karpenter.sh/do-not-disrupt")
            yield Violation(pool, f"terminationGracePeriod {grace} lets Karpenter drain nodes "
                            f"running {who} when they drift",
                            ("spec", "template", "spec", "terminationGracePeriod"))


@rule(
    "karpenter/short-expire-after", Severity.WARNING,
    "GPU NodePool replaces its nodes on a short timer (expireAfter)",
    why="""expireAfter makes Karpenter delete every node of the pool once it is that old,
    whether or not a model is serving on it; karpenter.sh/do-not-disrupt does not stop
    expiry. Each expiry is an outage of the models on that node while a new GPU node starts
    and the weights reload (often 10+ minutes).""",
    fix="""Set spec.template.spec.expireAfter: Never on GPU pools and renew nodes in a
    planned change (e.g. bump the AMI alias of the EC2NodeClass), or at least 720h.""",
)
def short_expire_after(scope: Scope) -> Iterator[Violation]:
    for pool in gpu_pools(scope):
        value = str(_template_spec(pool).get("expireAfter", "720h"))
        hours = duration_hours(value)
        if value != "Never" and hours is not None and hours < MIN_EXPIRE_HOURS:
            yield Violation(pool, f"expireAfter {value}: every GPU node and the model on it "
                            f"is replaced after {hours:g}h",
                            ("spec", "template", "spec", "expireAfter"))


@rule(
    "karpenter/consolidation-underutilized", Severity.WARNING,
    "GPU NodePool consolidates underutilized nodes (evicts running models to save money)",
    why="""With WhenEmptyOrUnderutilized (Karpenter v1's default) Karpenter deletes a GPU
    node whose pods it could repack elsewhere, evicting a model that is serving; it then
    reloads for minutes. On GPU pools the saving rarely pays for the outage.""",
    fix="""Set spec.disruption.consolidationPolicy: WhenEmpty with a consolidateAfter of a
    few minutes on GPU pools.""",
)
def consolidation_underutilized(scope: Scope) -> Iterator[Violation]:
    for pool in gpu_pools(scope):
        policy = pool.get("spec", "disruption", "consolidationPolicy")
        if policy in (None, "WhenEmptyOrUnderutilized"):
            shown = policy or "WhenEmptyOrUnderutilized (the default)"
            yield Violation(pool, f"consolidationPolicy {shown} on a GPU pool",
                            ("spec", "disruption", "consolidationPolicy") if policy else
                            ("spec",))


@rule(
    "karpenter/gpu-pool-untainted", Severity.WARNING,
    "NodePool offers GPU instances without a NoSchedule taint",
    why="""Without a taint, any pod (a log shipper, a web app) can be scheduled onto a GPU
    node that costs dollars per hour, take CPU or memory the model server needs, and keep
    the node from being consolidated when the model is gone.""",
    fix="""Add spec.template.spec.taints: [{key: nvidia.com/gpu, value: "true", effect:
    NoSchedule}] and tolerate it in the model servers (the NVIDIA device plugin does).""",
)
def gpu_pool_untainted(scope: Scope) -> Iterator[Violation]:
    for pool in gpu_pools(scope):
        taints = [t for t in _template_spec(pool).get("taints") or [] if isinstance(t, dict)]
        if not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in taints):
            yield Violation(pool, "GPU pool has no NoSchedule taint", ("spec", "template",
                                                                       "spec"))


# ---------------------------------------------------------------- EC2NodeClass

@rule(
    "karpenter/root-volume-unencrypted", Severity.WARNING,
    "EC2NodeClass block device is not encrypted",
    why="""The node's volumes hold container images, logs and anything pods write to local
    disk (tokens, prompts in crash dumps). A blockDeviceMappings entry without encrypted:
    true follows the account's default, which is often unencrypted.""",
    fix="""Set ebs.encrypted: true on every entry of spec.blockDeviceMappings (optionally
    with kmsKeyId).""",
)
def root_volume_unencrypted(scope: Scope) -> Iterator[Violation]:
    for node_class in scope.of_kind("EC2NodeClass"):
        for index, mapping in enumerate(node_class.get("spec", "blockDeviceMappings") or []):
            ebs = mapping.get("ebs") if isinstance(mapping, dict) else None
            if isinstance(ebs, dict) and ebs.get("encrypted") is not True and not ebs.get(
                    "snapshotID"):
                state = "false" if "encrypted" in ebs else "not set"
                yield Violation(node_class, f"{mapping.get('deviceName', index)}: encrypted "
                                f"is {state}", ("spec", "blockDeviceMappings", index, "ebs"))


@rule(
    "karpenter/max-pods-low", Severity.WARNING,
    f"EC2NodeClass kubelet.maxPods is below {MIN_MAX_PODS}",
    why="""A GPU node runs a dozen DaemonSet pods before any model (CNI, kube-proxy, EBS CSI,
    NVIDIA device plugin, DCGM exporter, node exporter, log and security agents). A low
    maxPods leaves no room for the model server or its sidecars, so Karpenter launches
    another expensive GPU node or the pod stays Pending.""",
    fix=f"""Remove kubelet.maxPods (Karpenter derives it from the instance's network
    interfaces) or set it to at least {MIN_MAX_PODS}.""",
)
def max_pods_low(scope: Scope) -> Iterator[Violation]:
    for node_class in scope.of_kind("EC2NodeClass"):
        value = node_class.get("spec", "kubelet", "maxPods")
        if isinstance(value, int) and value < MIN_MAX_PODS:
            yield Violation(node_class, f"kubelet.maxPods {value} < {MIN_MAX_PODS}",
                            ("spec", "kubelet", "maxPods"))


@rule(
    "karpenter/ami-pinned-by-name", Severity.WARNING,
    "EC2NodeClass selects its AMI by a name that contains a Kubernetes version",
    why="""An AMI name such as ...-nvidia-1.33-v2025... fixes the kubelet version. When the
    cluster is upgraded, new GPU nodes still boot the old version until someone edits the
    name, and drift past the supported version skew leaves nodes unable to join.""",
    fix="""Select by alias with a pinned release, e.g. amiSelectorTerms: [{alias:
    al2023@v20251016}]: the alias follows the cluster's Kubernetes version and picks the
    NVIDIA variant for GPU instances.""",
)
def ami_pinned_by_name(scope: Scope) -> Iterator[Violation]:
    for node_class in scope.of_kind("EC2NodeClass"):
        for index, term in enumerate(node_class.get("spec", "amiSelectorTerms") or []):
            name = str(term.get("name", "")) if isinstance(term, dict) else ""
            if K8S_VERSION_IN_NAME.search(name):
                yield Violation(node_class, f"amiSelectorTerms name {name!r} names a "
                                "Kubernetes version", ("spec", "amiSelectorTerms", index,
                                                       "name"))

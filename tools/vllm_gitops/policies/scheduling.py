"""Scheduling rules: Karpenter can launch a node for every pod that needs one (a GPU pod, or
a pod that picks Karpenter nodes by label), within its NodePools' limits and node classes."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.workload import replica_range
from vllm_gitops.topology import (
    is_ec2_nodepool,
    karpenter_nodepools,
    landing,
    pool_room,
    wants_karpenter_node,
)


def _karpenter_pods(scope: Scope) -> Iterator[Resource]:
    if not karpenter_nodepools(scope):
        return  # the NodePools live in another target: nothing to check against
    for resource in scope.resources:
        if wants_karpenter_node(resource):
            yield resource


@rule(
    "scheduling/unschedulable", Severity.ERROR,
    "no NodePool in scope can launch a node this pod fits on",
    why="""Karpenter launches a node only from a NodePool whose requirements agree with the
    pod's nodeSelector and affinity, whose taints the pod tolerates, and with an instance type
    whose GPUs, CPU and memory (after what the kubelet reserves) hold the pod's requests.
    When no NodePool qualifies, the pod stays Pending forever and the model never starts.""",
    fix="""Read the reason given per NodePool: fix the nodeSelector (karpenter.sh/nodepool,
    GPU labels), add the toleration for the pool's taint, or lower the cpu/memory requests to
    fit the instance's allocatable (tools/plan shows it).""",
)
def unschedulable(scope: Scope) -> Iterator[Violation]:
    for resource in _karpenter_pods(scope):
        choice = landing(scope, resource)
        if choice is None or choice.chosen is not None:
            continue
        reasons = [_short(p.reason or "") for p in choice.pools]
        text = "; ".join(f"{p.nodepool}: {r}" for p, r in zip(choice.pools, reasons, strict=True))
        yield Violation(resource, f"no NodePool can launch a node for this pod ({text})",
                        _culprit(resource, " ".join(reasons)))


_POOL_FILTER = "excluded by the pool's requirements"


def _short(reason: str) -> str:
    """A pool's reason without the instance types its own requirements leave out (they are
    the pool's choice, not why this pod fails) when another reason is given."""
    head, _, parts = reason.partition(": ")
    listed = parts.split(", ")
    if head == "no instance type qualifies" and len(listed) > 1 and _POOL_FILTER in listed:
        listed.remove(_POOL_FILTER)
        return f"{head}: {', '.join(listed)}"
    return reason


def _culprit(resource: Resource, reasons: str) -> tuple[str | int, ...]:
    """The pod field the reasons point at, so that one defect is one finding at its line."""
    spec = pod_spec_path(resource) or ()
    if "taint" in reasons:
        return (*spec, "tolerations")
    if "nodeSelector" in reasons or "label" in reasons:
        return (*spec, "nodeSelector") if resource.get(*spec, "nodeSelector") else (
            *spec, "affinity")
    if "allocatable" in reasons:
        return (*spec, "containers", 0, "resources")
    return spec


def _replicas(scope: Scope, resource: Resource) -> tuple[int, int]:
    """(replicas, autoscaler maximum) of a workload, HPAs and ScaledObjects included."""
    try:
        counts = replica_range(resource, scope)
    except (TypeError, ValueError):  # a count that is not a number: a schema error
        return 1, 1
    return counts["replicas"], counts["max_replicas"]


@rule(
    "scheduling/nodepool-limits", Severity.ERROR,
    "the NodePools' limits leave no room for the pods of this workload",
    why="""A NodePool's spec.limits caps the total CPU, memory and GPUs of all nodes it
    launches. A GPU node counts whole (a g5.12xlarge adds 48 CPUs, 4 GPUs), so limits smaller
    than one such node mean Karpenter launches nothing and the pods stay Pending.""",
    fix="""Raise the NodePool's limits to at least (replicas, or the autoscaler's maximum) x
    one node's capacity, or drop the limit for that resource.""",
)
def nodepool_limits(scope: Scope) -> Iterator[Violation]:
    for resource in _karpenter_pods(scope):
        rooms = pool_room(scope, resource)
        if not rooms:
            continue  # unschedulable anyway: that rule says why
        fit = sum(r.pods for r in rooms)
        replicas, most = _replicas(scope, resource)
        if fit >= max(replicas, 1):
            continue
        first = rooms[0]
        pool = next(r for r in scope.of_kind("NodePool") if r.name == first.nodepool)
        wanted = f"{replicas} replica(s)" + (f", autoscaler max {most}" if most > replicas
                                             else "")
        pools = "; ".join(
            f"{r.nodepool}: {r.pods} on {r.instance.name}"
            + (f", bound by limits.{r.limiting}" if r.limiting else "") for r in rooms)
        yield Violation(pool, (
            f"NodePool limits admit {fit} pod(s) of {resource.kind} {resource.name} ({pools}) "
            f"but it needs {wanted}"),
            ("spec", "limits", first.limiting) if first.limiting else ("spec", "limits"))


@rule(
    "scheduling/nodeclass-missing", Severity.ERROR,
    "a NodePool's nodeClassRef names a node class that is not in scope",
    why="""A NodePool takes its AMI, subnets, security groups and IAM role from the node class
    its nodeClassRef names. When that EC2NodeClass does not exist, Karpenter marks the
    NodePool not ready and launches nothing from it: every pod that needs it stays Pending.""",
    fix="""Point spec.template.spec.nodeClassRef.name at an EC2NodeClass that is deployed with
    it (same name, group karpenter.k8s.aws, kind EC2NodeClass), or add that EC2NodeClass.""",
)
def nodeclass_missing(scope: Scope) -> Iterator[Violation]:
    if not (scope.holds_any("EC2NodeClass") or scope.kind == "cluster"):
        return  # the node classes live in another target
    for pool in scope.of_kind("NodePool"):
        name = pool.get("spec", "template", "spec", "nodeClassRef", "name")
        if not is_ec2_nodepool(pool) or not name:
            continue  # EKS Auto Mode's built-in NodeClasses; a missing ref is a schema error
        if scope.find("EC2NodeClass", str(name)) is None:
            yield Violation(pool, f"nodeClassRef EC2NodeClass {str(name)!r} does not exist",
                            ("spec", "template", "spec", "nodeClassRef", "name"))

"""Questions many tools ask of a Scope, answered once: which pods a Service selects, which
ports a container declares, which labels a workload's pods carry, which workloads are the
LiteLLM gateway, which vLLM servers run with which flags, where Karpenter can land a pod, and
what the sizing engine predicts for a vLLM server on the hardware it gets.

The expensive answers (vLLM servers, Karpenter landings, plans) are computed once per Scope
and kept as long as the Scope lives. Rules (`policies/`), `routes` and `plan` build on this
module; it imports none of them (only the sizing engine's public functions).
"""

from __future__ import annotations

import math
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from vllm_gitops.errors import ToolError
from vllm_gitops.resources import Resource, iter_containers, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.hardware import (
    Gpu,
    InstanceType,
    gpu_catalog,
    instance_catalog,
)
from vllm_gitops.sizing.karpenter import (
    KarpenterChoice,
    NodeClass,
    NodePool,
    PodScheduling,
    capacity,
    simulate_karpenter,
)
from vllm_gitops.sizing.models import ModelSpec, load_model
from vllm_gitops.sizing.planner import (
    PlanResult,
    WorkloadPlan,
    hardware_from_selectors,
    plan,
    plan_workload,
    scope_daemonsets,
    storage_for,
)
from vllm_gitops.sizing.quantity import parse_quantity
from vllm_gitops.sizing.version import DEFAULT_VERSION, VllmVersion, parse_version
from vllm_gitops.sizing.workload import VllmWorkload, find_vllm_workloads

T = TypeVar("T")


def pod_labels(resource: Resource) -> dict[str, str] | None:
    """Labels of a workload's pod template; None for a resource that runs no pods."""
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return None
    labels = resource.get(*spec_path[:-1], "metadata", "labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against labels: every matchLabels pair equal and every
    matchExpressions requirement met; an empty selector matches everything. A malformed
    selector or expression, or an unknown operator, matches nothing.
    https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#resources-that-support-set-based-requirements"""
    if not isinstance(selector, dict):
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list):
        return False
    return (all(labels.get(str(k)) == str(v) for k, v in match_labels.items())
            and all(_requirement_met(e, labels) for e in expressions))


def _requirement_met(expression: Any, labels: dict[str, str]) -> bool:
    if not isinstance(expression, dict) or expression.get("key") is None:
        return False
    values = expression.get("values") or []
    if not isinstance(values, list):
        return False
    key, operator = str(expression["key"]), expression.get("operator")
    present = key in labels
    if operator in ("In", "NotIn"):
        inside = present and labels[key] in {str(v) for v in values}
        return inside if operator == "In" else not inside
    if operator in ("Exists", "DoesNotExist"):
        return present if operator == "Exists" else not present
    return False


DO_NOT_DISRUPT = "karpenter.sh/do-not-disrupt"


def do_not_disrupt(resource: Resource) -> bool:
    """The pod template (a Pod's own metadata) carries karpenter.sh/do-not-disrupt: "true",
    exactly the value Karpenter honours.
    https://karpenter.sh/docs/concepts/disruption/#pod-level-controls"""
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return False
    annotations = resource.get(*spec_path[:-1], "metadata", "annotations")
    return isinstance(annotations, dict) and annotations.get(DO_NOT_DISRUPT) == "true"


def selected_workloads(scope: Scope, service: Resource) -> Iterator[Resource]:
    """Workloads in the Service's namespace whose pod labels match its selector (computed
    once per Service and scope: rules ask it for every workload, O(n^3) otherwise)."""
    def compute() -> tuple[Resource, list[Resource]]:
        return service, list(_selected_workloads(scope, service))

    key = ("selected_workloads", id(service))
    kept, found = per_scope(scope, key, compute)
    if kept is not service:  # a short-lived Resource whose id was reused
        kept, found = compute()
    return iter(found)


def _selected_workloads(scope: Scope, service: Resource) -> Iterator[Resource]:
    selector = service.get("spec", "selector")
    if not isinstance(selector, dict) or not selector:
        return
    for workload in scope.resources:
        labels = pod_labels(workload)
        if labels is None or workload.namespace != service.namespace:
            continue
        if all(labels.get(str(k)) == str(v) for k, v in selector.items()):
            yield workload


def is_gateway_workload(resource: Resource) -> bool:
    """A workload running LiteLLM: an image that names it (`ghcr.io/berriai/litellm:...`,
    a mirror tagged `...:litellm-main-...`)."""
    return any("litellm" in str(c.get("image", "")).lower() for _, c in iter_containers(resource))


def gateway_workloads(scope: Scope) -> list[Resource]:
    return list(per_scope(scope, "gateway_workloads", lambda: [
        r for r in scope.resources if is_gateway_workload(r)]))


def is_gateway_service(scope: Scope, service: Resource) -> bool:
    """The Service selects a LiteLLM workload; without workloads in scope, its name says so."""
    if any(is_gateway_workload(w) for w in selected_workloads(scope, service)):
        return True
    return not gateway_workloads(scope) and "litellm" in service.name.lower()



def reasoning_parser_for(model: str) -> str | None:
    """The vLLM reasoning parser of a model that thinks by default, else None.
    https://docs.vllm.ai/en/stable/features/reasoning_outputs/ (Qwen3 thinks by default;
    Qwen3 Instruct-2507, Coder, Base, embedding and reranker models do not think)."""
    name = model.rsplit("/", 1)[-1].lower()
    if name.startswith("qwen3"):
        words = set(re.split(r"[-_.]", name))
        no_thinking = {"instruct", "coder", "base", "embedding", "reranker", "guard",
                       "captioner"}
        return "qwen3" if "thinking" in words or not words & no_thinking else None
    if name.startswith(("qwq", "deepseek-r1")):
        return "deepseek_r1"
    return None


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    """Named ports of a container: name -> containerPort (0 when it is not a number)."""
    return {str(p["name"]): p["containerPort"] if isinstance(p.get("containerPort"), int) else 0
            for p in container.get("ports") or [] if isinstance(p, dict) and p.get("name")}


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    """The pod spec of a workload; None for a resource that runs no pods."""
    path = pod_spec_path(resource)
    spec = resource.get(*path) if path is not None else None
    return spec if isinstance(spec, dict) else None


def declared_port_numbers(workload: Resource) -> set[int]:
    """Every containerPort the workload's containers declare (named or not)."""
    numbers: set[int] = set()
    for _, container in iter_containers(workload):
        for port in container.get("ports") or []:
            number = port.get("containerPort") if isinstance(port, dict) else None
            if isinstance(number, int):
                numbers.add(number)
    return numbers


def shm_volume(resource: Resource, container: dict[str, Any]) -> dict[str, Any] | None:
    """The memory-backed emptyDir the container mounts at /dev/shm, if any."""
    spec = pod_spec(resource) or {}
    mounted = {str(m.get("name")) for m in container.get("volumeMounts") or []
               if isinstance(m, dict) and str(m.get("mountPath", "")).rstrip("/") == "/dev/shm"}
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict) or str(volume.get("name")) not in mounted:
            continue
        empty_dir = volume.get("emptyDir")
        if isinstance(empty_dir, dict) and empty_dir.get("medium") == "Memory":
            return empty_dir
    return None


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity as a number, None when absent or unreadable."""
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except (ValueError, ToolError):
        return None


# ---------------------------------------------------------------- per-scope memo


_PER_SCOPE: dict[int, tuple[weakref.ref[Scope], int, dict[Any, Any]]] = {}


def per_scope(scope: Scope, key: Any, compute: Callable[[], T]) -> T:
    """compute() once per (scope, key); forgotten with the Scope, redone if it grew."""
    entry = _PER_SCOPE.get(id(scope))
    if entry is None or entry[0]() is not scope or entry[1] != len(scope.resources):
        entry = (weakref.ref(scope), len(scope.resources), {})
        _PER_SCOPE[id(scope)] = entry
        weakref.finalize(scope, _PER_SCOPE.pop, id(scope), None)
    cache = entry[2]
    if key not in cache:
        cache[key] = compute()
    value: T = cache[key]
    return value


# ---------------------------------------------------------------- vLLM servers


def vllm_servers(scope: Scope) -> list[VllmWorkload]:
    """Every vLLM server container in the scope, flags parsed (sizing.workload). Empty when
    a pod holds an unreadable quantity: the schema check reports that, and nothing else can
    be judged about those pods."""
    def compute() -> list[VllmWorkload]:
        try:
            return find_vllm_workloads(scope)
        except ToolError:
            return []

    return per_scope(scope, "vllm", compute)


def pod_scheduling(resource: Resource) -> PodScheduling | None:
    """What Karpenter reads from the workload's pod; None without a pod or with an
    unreadable quantity (a schema error)."""
    spec = pod_spec(resource)
    if spec is None:
        return None
    try:
        return PodScheduling.from_pod_spec(spec)
    except ToolError:
        return None


def vllm_port(server: VllmWorkload) -> int | None:
    """The port vLLM's API server listens on (--port, default 8000); None if unresolved."""
    raw = server.flags.get("--port", "8000")
    try:
        return int(str(raw))
    except ValueError:
        return None


def _int_flag(server: VllmWorkload, flag: str) -> int | None:
    raw = server.flags.get(flag)
    try:
        return int(str(raw)) if raw is not None else None
    except ValueError:
        return None


def gpus_needed(server: VllmWorkload) -> tuple[int, str]:
    """GPUs one pod of this server uses, and how that number comes about."""
    tp = server.engine_args.tensor_parallel_size
    pp = server.engine_args.pipeline_parallel_size
    dp = _int_flag(server, "--data-parallel-size-local") or _int_flag(
        server, "--data-parallel-size") or 1
    how = f"tensor parallel {tp} x pipeline parallel {pp}"
    if dp > 1:
        how += f" x data parallel {dp}"
    return tp * pp * dp, how


def catalog_model(server: VllmWorkload) -> ModelSpec | None:
    """The model's config.json facts, None when the catalog does not know it."""
    if not server.model:
        return None
    try:
        return load_model(server.model)
    except ToolError:
        return None


def engine_version(server: VllmWorkload) -> VllmVersion:
    return server.version or parse_version(DEFAULT_VERSION)


# ---------------------------------------------------------------- Karpenter


def is_ec2_nodepool(resource: Resource) -> bool:
    """A Karpenter NodePool for the AWS provider (EC2NodeClass). EKS Auto Mode pools
    (nodeClassRef group eks.amazonaws.com) label their nodes differently: not simulated."""
    ref = resource.get("spec", "template", "spec", "nodeClassRef", default={}) or {}
    return (resource.kind == "NodePool" and resource.api_version.startswith("karpenter.sh/")
            and isinstance(ref, dict) and ref.get("kind", "EC2NodeClass") == "EC2NodeClass")


def karpenter_nodepools(scope: Scope) -> list[NodePool]:
    return per_scope(scope, "nodepools", lambda: [
        NodePool.from_doc(r.doc) for r in scope.of_kind("NodePool") if is_ec2_nodepool(r)])


def node_classes(scope: Scope) -> dict[str, NodeClass]:
    return per_scope(scope, "nodeclasses", lambda: {
        nc.name: nc for nc in (NodeClass.from_doc(r.doc) for r in scope.of_kind("EC2NodeClass"))})


def wants_karpenter_node(resource: Resource) -> bool:
    """A pod Karpenter must provision for: it asks for a GPU or picks Karpenter nodes by label.
    Other pods may run on managed node groups this scope cannot see."""
    scheduling = pod_scheduling(resource)
    if scheduling is None or resource.kind == "DaemonSet":
        return False
    if scheduling.requests.get("nvidia.com/gpu", 0.0) > 0:
        return True
    return any(r.key.startswith(("karpenter.sh/", "karpenter.k8s.aws/"))
               for r in scheduling.requirements)


def landing(scope: Scope, resource: Resource, strict: bool = False) -> KarpenterChoice | None:
    """Where Karpenter would launch a node for the workload's pod; None without NodePools.

    Not strict (the default): NodePool limits are ignored and a missing EC2NodeClass is taken
    as a default one, so that "cannot fit at all" is told apart from "limits reached" and
    "node class missing" (each is its own finding).
    """
    def compute() -> KarpenterChoice | None:
        pools = karpenter_nodepools(scope)
        scheduling = pod_scheduling(resource)
        if not pools or scheduling is None:
            return None
        classes = node_classes(scope)
        if not strict:
            pools = [replace(p, limits={}) for p in pools]
            classes = {**{p.node_class: NodeClass(name=p.node_class) for p in pools
                          if p.node_class}, **classes}
        return simulate_karpenter(scheduling, pools, classes, instance_catalog().values(),
                                  daemonsets=scope_daemonsets(scope))

    return per_scope(scope, ("landing", id(resource), strict), compute)


@dataclass(frozen=True)
class PoolRoom:
    """How many of a workload's pods a NodePool's limits leave room for."""

    nodepool: str
    instance: InstanceType
    pods: int
    limiting: str  # the resource of `limits` that binds, "" when none does


def pool_room(scope: Scope, resource: Resource) -> list[PoolRoom]:
    """Per NodePool that can launch the pod: pods its limits admit, on its roomiest
    instance type (limits count the capacity of every node the pool launches)."""
    choice = landing(scope, resource)
    scheduling = pod_scheduling(resource)
    if choice is None or scheduling is None:
        return []
    pools = {p.name: p for p in karpenter_nodepools(scope)}
    requests = scheduling.requests
    rooms = []
    for verdict in choice.pools:
        best: PoolRoom | None = None
        for candidate in verdict.candidates:
            per_node = min((math.floor(candidate.allocatable.get(k, 0.0) / v)
                            for k, v in requests.items() if v > 0), default=1)
            room = _nodes_within(pools[verdict.nodepool].limits, candidate.instance)
            pods = room[0] * max(per_node, 1)
            if best is None or pods > best.pods:
                best = PoolRoom(verdict.nodepool, candidate.instance, pods, room[1])
        if best is not None:
            rooms.append(best)
    return rooms


def _nodes_within(limits: dict[str, float], instance: InstanceType) -> tuple[int, str]:
    cap = capacity(instance)
    nodes, limiting = 1_000_000, ""
    for key, limit in limits.items():
        per_node = cap.get(key, 0.0)
        if per_node > 0 and math.floor(limit / per_node) < nodes:
            nodes, limiting = math.floor(limit / per_node), key
    return nodes, limiting


# ---------------------------------------------------------------- hardware and plans


ANY_GPU = "any GPU"  # Hardware.source of a plan for GPU-independent checks


@dataclass(frozen=True)
class Hardware:
    gpu: Gpu
    instance: InstanceType | None
    source: str  # "NodePool gpu-g5-g6 (g5.12xlarge)", "nodeSelector ..."


def _hardware_from_selectors(server: VllmWorkload) -> Hardware | None:
    """The GPU the pod's nodeSelector / required affinity names (planner.py); None when it
    names none, or an instance type the catalog does not know."""
    try:
        gpu, instance, source = hardware_from_selectors(server)
    except ToolError:
        return None
    return Hardware(gpu, instance, source) if gpu is not None else None


def smallest_gpu(scope: Scope, server: VllmWorkload) -> Hardware | None:
    """The GPU with the least memory the pod can land on: any instance type some NodePool
    in scope can launch for it, else the instance type or GPU its nodeSelector names."""
    choice = landing(scope, server.resource)
    if choice is not None:
        candidates = [c for v in choice.pools for c in v.candidates]
        if not candidates:
            return None
        low = min(candidates, key=lambda c: (
            c.instance.gpu.torch_total_gib, c.instance.gpus,
            c.instance.usd_per_hour if c.instance.usd_per_hour is not None else math.inf,
            c.instance.name))
        return Hardware(low.instance.gpu, low.instance,
                        f"{low.instance.name} from NodePool {low.nodepool}")
    return _hardware_from_selectors(server)


def memory_plan(scope: Scope, server: VllmWorkload, any_gpu: bool = False,
                ) -> tuple[PlanResult, Hardware] | None:
    """The sizing engine's verdict for a vLLM server on the smallest GPU it can land on;
    None when the model or the hardware is unknown (say nothing rather than guess).
    any_gpu: for GPU-independent checks, plan on the largest GPU when the hardware is
    unknown."""
    def compute() -> tuple[PlanResult, Hardware] | None:
        if any_gpu and (known := memory_plan(scope, server)) is not None:
            return known
        model = catalog_model(server)
        hardware = smallest_gpu(scope, server)
        if hardware is None and any_gpu:
            gpu = max(gpu_catalog().values(), key=lambda g: g.torch_total_gib)
            hardware = Hardware(gpu, None, ANY_GPU)
        if model is None or hardware is None:
            return None
        try:
            result = plan(model, hardware.gpu, server.engine_args, engine_version(server),
                          instance=hardware.instance, gpus_available=server.gpus)
        except ToolError:
            return None  # flags vLLM would reject outright: the parallelism rules say so
        return result, hardware

    return per_scope(scope, ("memory", id(server), any_gpu), compute)


def startup_plan(scope: Scope, server: VllmWorkload) -> WorkloadPlan | None:
    """The planner's view of this server (Karpenter's choice of instance, the cache volume);
    None when the model is unknown or no GPU is known for the pod."""
    def compute() -> WorkloadPlan | None:
        if catalog_model(server) is None:
            return None
        if _hardware_from_selectors(server) is None:
            if not karpenter_nodepools(scope):
                return _plan_without_hardware(server)
            strict = landing(scope, server.resource, strict=True)
            if strict is None or strict.chosen is None:
                return None  # unschedulable: the scheduling rules say so
        try:
            planned = plan_workload(server, scope)
        except ToolError:
            return None  # flags vLLM would reject outright: the parallelism rules say so
        return planned if planned.result is not None and planned.result.startup else None

    return per_scope(scope, ("startup", id(server)), compute)


def _plan_without_hardware(server: VllmWorkload) -> WorkloadPlan | None:
    """No NodePool and no selector: the instance is unknown, so estimate with no network
    cap on the largest GPU (the fastest start the manifests allow: a lower bound)."""
    model = catalog_model(server)
    if model is None:
        return None
    gpu = max(gpu_catalog().values(), key=lambda g: g.torch_total_gib)
    cache = server.cache
    storage = storage_for(None, cache.throughput_mib_s,
                          cache.volume_type or "gp3") if cache.kind == "pvc" else storage_for(None)
    try:
        result = plan(model, gpu, server.engine_args, engine_version(server), storage=storage)
    except ToolError:
        return None
    if result.startup is None:
        return None
    return WorkloadPlan(scope="", workload=server, result=result, hardware_source="")

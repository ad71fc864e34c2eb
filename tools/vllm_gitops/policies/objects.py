"""Object rules: what one object names exists, numbers are in range, nothing is defined twice,
and Flux's references resolve without cycles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, as_list, as_map
from vllm_gitops.scope import Scope
from vllm_gitops.topology import pod_labels, selector_matches

# KEDA's defaults: https://keda.sh/docs/latest/reference/scaledobject-spec/
KEDA_MIN_DEFAULT, KEDA_MAX_DEFAULT = 0, 100
FLUX_SOURCE_KINDS = ("GitRepository", "OCIRepository", "Bucket", "HelmRepository", "HelmChart",
                     "ExternalArtifact")


def _same_namespace(a: str | None, b: str | None) -> bool:
    """Objects without a namespace (plain files) go to the same, current namespace."""
    return a is None or b is None or a == b


def _workloads(scope: Scope) -> list[tuple[Resource, dict[str, str]]]:
    """(workload, labels of its pods) for everything that runs pods."""
    out = []
    for resource in scope.resources:
        labels = pod_labels(resource)
        if labels is not None:
            out.append((resource, labels))
    return out


def _labels(resource: Resource) -> dict[str, str]:
    labels = resource.metadata.get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def _scale_target_missing(scope: Scope, scaler: Resource) -> Violation | None:
    target = as_map(scaler.get("spec", "scaleTargetRef"))
    name = target.get("name")
    if not name:
        return None
    kind = str(target.get("kind") or "Deployment")  # KEDA's default kind
    if any(r.kind == kind and r.name == name and _same_namespace(r.namespace, scaler.namespace)
           for r in scope.resources):
        return None
    return Violation(scaler, f"scaleTargetRef names {kind} {name!r}, which is not deployed "
                     "in this namespace: nothing is scaled", ("spec", "scaleTargetRef", "name"))


def _monitor_namespaces(monitor: Resource) -> tuple[bool, set[str]]:
    """(any namespace, names) a ServiceMonitor/PodMonitor looks in."""
    selector = as_map(monitor.get("spec", "namespaceSelector"))
    if selector.get("any"):
        return True, set()
    names = {str(n) for n in as_list(selector.get("matchNames"))}
    return False, names or ({monitor.namespace} if monitor.namespace else set())


def _monitor_target_missing(scope: Scope, monitor: Resource) -> Violation | None:
    selector = monitor.get("spec", "selector")
    if not isinstance(selector, dict):
        return None
    any_namespace, namespaces = _monitor_namespaces(monitor)

    def in_reach(res: Resource) -> bool:
        return any_namespace or not namespaces or res.namespace is None \
            or res.namespace in namespaces

    if monitor.kind == "ServiceMonitor":
        services = [s for s in scope.of_kind("Service")
                    if in_reach(s) and selector_matches(selector, _labels(s))]
        if services:
            return _endpoint_port_missing(monitor, services)
        found, what = False, "Service"
    else:
        found = any(in_reach(w) and selector_matches(selector, labels)
                    for w, labels in _workloads(scope))
        what = "pod"
    if found:
        return None
    where = "any namespace" if any_namespace else (
        "namespace " + ", ".join(sorted(namespaces)) if namespaces else "its namespace")
    return Violation(monitor, f"selector matches no {what} in {where}: nothing is scraped",
                     ("spec", "selector"))


def _endpoint_port_missing(monitor: Resource, services: list[Resource]) -> Violation | None:
    """A ServiceMonitor endpoint whose named `port` no selected Service has."""
    names = {str(p.get("name")) for s in services
             for p in as_list(s.get("spec", "ports")) if isinstance(p, dict)}
    for index, endpoint in enumerate(as_list(monitor.get("spec", "endpoints"))):
        port = endpoint.get("port") if isinstance(endpoint, dict) else None
        if port is not None and str(port) not in names:
            return Violation(monitor, f"endpoint port {port!r} is not a port name of the "
                             f"selected Services ({', '.join(sorted(names)) or 'none named'}): "
                             "nothing is scraped", ("spec", "endpoints", index, "port"))
    return None


@rule(
    "objects/target-missing", Severity.ERROR,
    "an autoscaler, disruption budget or monitor points at something that is not deployed",
    why="""An HPA or KEDA ScaledObject scales the object its scaleTargetRef names; a
    PodDisruptionBudget protects the pods its selector matches; a ServiceMonitor or PodMonitor
    scrapes what its selector matches. When nothing matches, the object silently does nothing:
    no autoscaling, no protection from node drains, no metrics (and no alert that they are
    missing).""",
    fix="""Make the name or selector match the workload as rendered (kustomize nameSuffix and
    labels change both), in the same namespace; for monitors, check namespaceSelector too.""",
)
def target_missing(scope: Scope) -> Iterator[Violation]:
    workloads = _workloads(scope)
    if not workloads:  # a partial target (infrastructure only): the targets live elsewhere
        return
    for scaler in scope.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
        found = _scale_target_missing(scope, scaler)
        if found:
            yield found
    for budget in scope.of_kind("PodDisruptionBudget"):
        selector = budget.get("spec", "selector")
        if isinstance(selector, dict) and not any(
                _same_namespace(w.namespace, budget.namespace) and selector_matches(selector, lb)
                for w, lb in workloads):
            yield Violation(budget, "selector matches no pod in this namespace: the budget "
                            "protects nothing", ("spec", "selector"))
    for monitor in scope.of_kind("ServiceMonitor", "PodMonitor"):
        if monitor.kind == "ServiceMonitor" and not scope.holds_any("Service"):
            continue
        found = _monitor_target_missing(scope, monitor)
        if found:
            yield found


def _int(value: Any, default: int | None) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@rule(
    "objects/replica-range", Severity.ERROR,
    "an autoscaler's minimum replica count is above its maximum",
    why="""The Kubernetes API rejects an HPA whose minReplicas exceeds maxReplicas, and KEDA
    marks such a ScaledObject failed ("doesn't have correct Idle/Min/Max Replica Counts"): the
    sync fails or nothing is scaled, so the model is neither scaled up under load nor kept at
    its minimum.""",
    fix="""Set minReplicas <= maxReplicas (KEDA: idleReplicaCount < minReplicaCount <=
    maxReplicaCount; KEDA's defaults are 0 and 100).
    https://keda.sh/docs/latest/reference/scaledobject-spec/""",
)
def replica_range(scope: Scope) -> Iterator[Violation]:
    for scaler in scope.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
        if scaler.kind == "HorizontalPodAutoscaler":  # maxReplicas is required there
            low_field, high_field, low_default, high_default = (
                "minReplicas", "maxReplicas", 1, None)
        else:
            low_field, high_field, low_default, high_default = (
                "minReplicaCount", "maxReplicaCount", KEDA_MIN_DEFAULT, KEDA_MAX_DEFAULT)
        low = _int(scaler.get("spec", low_field), low_default)
        high = _int(scaler.get("spec", high_field), high_default)
        if low is not None and high is not None and low > high:
            field = low_field if scaler.get("spec", low_field) is not None else high_field
            yield Violation(scaler, f"{low_field} {low} is above {high_field} {high}",
                            ("spec", field))
        idle = _int(scaler.get("spec", "idleReplicaCount"), None)
        if scaler.kind == "ScaledObject" and idle is not None and low is not None \
                and idle >= low:
            yield Violation(scaler, f"idleReplicaCount {idle} is not below minReplicaCount {low}",
                            ("spec", "idleReplicaCount"))


def _identity(resource: Resource) -> tuple[str, str, str, str]:
    group = resource.api_version.rsplit("/", 1)[0] if "/" in resource.api_version else ""
    return group, resource.kind, resource.namespace or "", resource.name


@rule(
    "objects/duplicate", Severity.ERROR,
    "the same object is defined twice in what one cluster applies",
    why="""Kubernetes keeps one object per kind, namespace and name. Two definitions of it (two
    Flux Kustomizations or Argo CD Applications that both include it) make the controllers
    overwrite each other on every sync: the live object flips between the two versions, and
    pruning one deletes the other's.""",
    fix="""Define the object once, in the folder that owns it, and include that folder from one
    place only; or give the two objects different names.""",
)
def duplicate(scope: Scope) -> Iterator[Violation]:
    first: dict[tuple[str, str, str, str], Resource] = {}
    for resource in scope.resources:
        if not resource.kind or not resource.name:
            continue
        key = _identity(resource)
        if key not in first:
            first[key] = resource
            continue
        original = first[key].source
        at = f" (first defined at {original})" if original else ""
        yield Violation(resource, f"{resource.kind} {resource.name!r} is defined twice{at}",
                        ("metadata", "name"))


# ---------------------------------------------------------------- Flux


def _is_flux(resource: Resource) -> bool:
    return resource.api_version.split("/", 1)[0].endswith(".toolkit.fluxcd.io")


def _flux_dependencies(resource: Resource) -> Iterator[tuple[int, str, str | None]]:
    for index, dependency in enumerate(as_list(resource.get("spec", "dependsOn"))):
        if isinstance(dependency, dict) and dependency.get("name"):
            yield index, str(dependency["name"]), (
                str(dependency["namespace"]) if dependency.get("namespace") else
                resource.namespace)


def _flux_source_refs(resource: Resource) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if resource.kind == "Kustomization":
        yield ("spec", "sourceRef"), as_map(resource.get("spec", "sourceRef"))
    elif resource.kind == "HelmRelease":
        chart = ("spec", "chart", "spec", "sourceRef")
        yield chart, as_map(resource.get(*chart))
        yield ("spec", "chartRef"), as_map(resource.get("spec", "chartRef"))


def _flux_find(scope: Scope, kind: str, name: str, namespace: str | None) -> bool:
    return any(r.kind == kind and r.name == name and _is_flux(r)
               and _same_namespace(r.namespace, namespace) for r in scope.resources)


@rule(
    "flux/reference-missing", Severity.ERROR,
    "a Flux Kustomization or HelmRelease names a source or dependency that does not exist",
    why="""Flux builds a Kustomization from the source its sourceRef names, and starts it only
    after every object in dependsOn is ready. A name that does not exist (a typo, a renamed
    GitRepository, another namespace) leaves it waiting "not ready" forever, so nothing it
    deploys ever reaches the cluster.""",
    fix="""Point sourceRef at the GitRepository/OCIRepository that is deployed (same namespace
    unless sourceRef.namespace says otherwise), and dependsOn at existing Kustomizations.""",
)
def flux_reference_missing(scope: Scope) -> Iterator[Violation]:
    flux = [r for r in scope.resources if _is_flux(r) and r.kind in ("Kustomization",
                                                                      "HelmRelease")]
    has_sources = any(_is_flux(r) and r.kind in FLUX_SOURCE_KINDS for r in scope.resources)
    for resource in flux:
        for path, ref in _flux_source_refs(resource):
            name, kind = ref.get("name"), ref.get("kind")
            if not (has_sources and name and kind):
                continue
            namespace = str(ref.get("namespace") or resource.namespace or "") or None
            if not _flux_find(scope, str(kind), str(name), namespace):
                yield Violation(resource, f"{path[-1]} names {kind} {name!r}, which is not "
                                "deployed", (*path, "name"))
        for index, name, namespace in _flux_dependencies(resource):
            if not _flux_find(scope, resource.kind, name, namespace):
                yield Violation(resource, f"dependsOn names {resource.kind} {name!r}, which "
                                "is not deployed", ("spec", "dependsOn", index, "name"))


def _cycles(graph: dict[tuple[str, str], list[tuple[str, str]]]) -> list[list[tuple[str, str]]]:
    """Every cycle of a directed graph, once each, starting at its smallest node."""
    found: set[tuple[tuple[str, str], ...]] = set()

    def walk(node: tuple[str, str], trail: list[tuple[str, str]]) -> None:
        for nxt in graph.get(node, []):
            if nxt in trail:
                cycle = trail[trail.index(nxt):]
                start = cycle.index(min(cycle))
                found.add(tuple(cycle[start:] + cycle[:start]))
            elif len(trail) < 64:
                walk(nxt, [*trail, nxt])

    for node in sorted(graph):
        walk(node, [node])
    return [list(c) for c in sorted(found)]


@rule(
    "flux/dependency-cycle", Severity.ERROR,
    "Flux objects depend on each other in a circle",
    why="""Flux starts an object only after everything in its dependsOn is ready. When A waits
    for B and B (directly or through others) waits for A, none of them ever starts, and
    everything they deploy stays missing.""",
    fix="""Break the circle: remove the dependsOn entry that points back (usually apps depend
    on infrastructure, never the other way round).""",
)
def flux_dependency_cycle(scope: Scope) -> Iterator[Violation]:
    for kind in ("Kustomization", "HelmRelease"):
        objects = {(r.namespace or "", r.name): r for r in scope.resources
                   if _is_flux(r) and r.kind == kind}
        graph = {key: [(ns or "", name) for _, name, ns in _flux_dependencies(res)
                       if (ns or "", name) in objects]
                 for key, res in objects.items()}
        for cycle in _cycles(graph):
            names = " -> ".join(name for _, name in [*cycle, cycle[0]])
            yield Violation(objects[cycle[0]], f"dependsOn forms a cycle: {names}",
                            ("spec", "dependsOn"))

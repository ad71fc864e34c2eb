"""Wiring rules: the pieces that must point at each other do (Services, ports, probes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, iter_containers, pod_spec_path
from vllm_gitops.scope import Scope


def pod_labels(resource: Resource) -> dict[str, str] | None:
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return None
    labels = resource.get(*spec_path[:-1], "metadata", "labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def selected_workloads(scope: Scope, service: Resource) -> Iterator[Resource]:
    selector = service.get("spec", "selector")
    if not isinstance(selector, dict) or not selector:
        return
    for workload in scope.resources:
        labels = pod_labels(workload)
        if labels is None or workload.namespace != service.namespace:
            continue
        if all(labels.get(str(k)) == str(v) for k, v in selector.items()):
            yield workload


def container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {str(p["name"]): int(p.get("containerPort", 0)) for p in container.get("ports") or []
            if isinstance(p, dict) and p.get("name")}


@rule(
    "wiring/service-selects-nothing", Severity.ERROR,
    "Service selector matches no pod in this scope",
    why="""A Service sends traffic only to pods whose labels match its selector. When no
    workload matches, the endpoint list stays empty and every request to the model fails
    with 'connection refused' or a 503 from the gateway, although all pods look healthy.""",
    fix="""Make spec.selector of the Service equal to labels on the workload's pod template
    (spec.template.metadata.labels). With kustomize, prefer `labels` with includeSelectors
    so both change together.""",
)
def service_selects_nothing(scope: Scope) -> Iterator[Violation]:
    has_workloads = any(pod_labels(r) is not None for r in scope.resources)
    for service in scope.of_kind("Service"):
        selector = service.get("spec", "selector")
        if has_workloads and selector and next(selected_workloads(scope, service), None) is None:
            yield Violation(service, f"selector {selector} matches no pod template",
                            ("spec", "selector"))


@rule(
    "wiring/service-target-port", Severity.ERROR,
    "Service targetPort names a port the selected containers do not declare",
    why="""A named targetPort is looked up in the pod's container ports. If no container
    declares that name, the Service has no endpoint port and traffic never arrives.""",
    fix="""Declare the port with that name in the container (ports: - name: http,
    containerPort: 8000) or use the same name in the Service's targetPort.""",
)
def service_target_port(scope: Scope) -> Iterator[Violation]:
    for service in scope.of_kind("Service"):
        for workload in selected_workloads(scope, service):
            names: set[str] = set()
            for _, container in iter_containers(workload):
                names |= set(container_ports(container))
            for i, port in enumerate(service.get("spec", "ports", default=[]) or []):
                target = port.get("targetPort") if isinstance(port, dict) else None
                if isinstance(target, str) and target not in names:
                    yield Violation(service, f"targetPort {target!r} is not a named port of "
                                    f"{workload.kind} {workload.name}",
                                    ("spec", "ports", i, "targetPort"))


@rule(
    "wiring/probe-port", Severity.ERROR,
    "a probe uses a named port the container does not declare",
    why="""A probe on an undeclared named port can never succeed: the startup or readiness
    probe fails forever, the pod never becomes Ready and the model is never served.""",
    fix="""Use a port name declared under the container's ports, or the port number.""",
)
def probe_port(scope: Scope) -> Iterator[Violation]:
    for workload in scope.resources:
        for path, container in iter_containers(workload):
            names = container_ports(container)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    port = (container.get(probe) or {}).get(handler, {}).get("port")
                    if isinstance(port, str) and port not in names:
                        yield Violation(workload, f"{container.get('name')}: {probe} uses port "
                                        f"{port!r}, not declared", (*path, probe))

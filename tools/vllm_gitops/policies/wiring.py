"""Wiring rules: the pieces that must point at each other do (Services, ports, probes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import POD_TEMPLATE_KINDS, Resource, iter_containers
from vllm_gitops.scope import Scope
from vllm_gitops.topology import (
    container_ports,
    declared_port_numbers,
    pod_labels,
    selected_workloads,
    selector_matches,
    vllm_port,
    vllm_servers,
)

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


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
    "Service targetPort (name or number) is not a port the selected containers declare",
    why="""A named targetPort is looked up in the pod's container ports. If no container
    declares that name, the Service has no endpoint port and traffic never arrives. A numeric
    targetPort that none of the declared container ports has sends traffic to a port nothing
    listens on.""",
    fix="""Declare the port with that name in the container (ports: - name: http,
    containerPort: 8000) or use the same name (or the declared number) in the Service's
    targetPort.""",
)
def service_target_port(scope: Scope) -> Iterator[Violation]:
    for service in scope.of_kind("Service"):
        for workload in selected_workloads(scope, service):
            names: set[str] = set()
            for _, container in iter_containers(workload):
                names |= set(container_ports(container))
            numbers = declared_port_numbers(workload)
            for i, port in enumerate(service.get("spec", "ports", default=[]) or []):
                if not isinstance(port, dict):
                    continue
                target = port.get("targetPort", port.get("port"))  # defaults to the port
                path = ("spec", "ports", i, "targetPort")
                if isinstance(target, str) and not target.isdigit() and target not in names:
                    yield Violation(service, f"targetPort {target!r} is not a named port of "
                                    f"{workload.kind} {workload.name}", path)
                elif _as_number(target) is not None and numbers and \
                        _as_number(target) not in numbers:
                    # A number reaches the pod even when undeclared, but when the containers
                    # declare their ports, a number none of them declares is a wrong number.
                    yield Violation(service, f"targetPort {target} is not a containerPort of "
                                    f"{workload.kind} {workload.name} (it declares "
                                    f"{', '.join(map(str, sorted(numbers)))})", path)


def _as_number(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else None


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


# ---------------------------------------------------------------- selectors


def _selector_misses(selector: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """The parts of a LabelSelector that the labels do not satisfy (each part judged by
    topology.selector_matches, so they all pass exactly when the whole selector does)."""
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    parts: list[tuple[str, dict[str, Any]]] = (
        [(f"{k}={v}", {"matchLabels": {k: v}}) for k, v in match_labels.items()]
        if isinstance(match_labels, dict)
        else [(f"matchLabels {match_labels!r}", {"matchLabels": match_labels})])
    if isinstance(expressions, list):
        parts += [(_describe(e), {"matchExpressions": [e]}) for e in expressions]
    else:
        parts.append((f"matchExpressions {expressions!r}", {"matchExpressions": expressions}))
    return [text for text, part in parts if not selector_matches(part, labels)]


def _describe(expression: Any) -> str:
    if not isinstance(expression, dict):
        return f"a malformed expression {expression!r}"
    key, op, values = expression.get("key"), expression.get("operator"), expression.get("values")
    shown = sorted({str(v) for v in values}) if isinstance(values, list) else []
    return f"{key} {op} {shown}" if shown else f"{key} {op}"


@rule(
    "wiring/selector-mismatch", Severity.ERROR,
    "a workload's spec.selector does not match the labels of its own pod template",
    why="""A Deployment, StatefulSet, DaemonSet, ReplicaSet or Job finds its pods through
    spec.selector. When the pod template's labels do not match it, the API server rejects the
    object ("selector does not match template labels"), so the model server is never created
    and the sync fails.""",
    fix="""Make spec.selector.matchLabels a subset of spec.template.metadata.labels. With
    kustomize, set labels through `labels:` with includeSelectors: true so both move
    together.""",
)
def selector_mismatch(scope: Scope) -> Iterator[Violation]:
    for workload in scope.resources:
        if workload.kind not in POD_TEMPLATE_KINDS:
            continue
        selector = workload.get("spec", "selector")
        if not isinstance(selector, dict) or not selector:
            continue  # Jobs generate theirs; a missing selector is a schema error
        misses = _selector_misses(selector, pod_labels(workload) or {})
        if misses:
            yield Violation(workload, "spec.selector requires " + ", ".join(misses)
                            + ", which the pod template's labels do not have",
                            ("spec", "selector"))


# ---------------------------------------------------------------- vLLM port and paths


def _probe_port(container: dict[str, Any], probe: str) -> int | str | None:
    handler = (container.get(probe) or {})
    for kind in ("httpGet", "tcpSocket", "grpc"):
        port = (handler.get(kind) or {}).get("port") if isinstance(handler, dict) else None
        if port is not None:
            return port if isinstance(port, int) else str(port)
    return None


def _services_missing(scope: Scope, workload: Resource, container: dict[str, Any],
                      port: int) -> Iterator[tuple[Resource, int, int]]:
    """(Service, port index, number) for each Service in front of this pod none of whose
    ports reaches vLLM: the first port that targets a number this container could be
    listening on. Ports that target another container (a number or name it declares) and
    numbers nobody declares (wiring/service-target-port) are left alone."""
    names = container_ports(container)
    own = {p["containerPort"] for p in container.get("ports") or []
           if isinstance(p, dict) and isinstance(p.get("containerPort"), int)}
    declared = declared_port_numbers(workload)
    others = declared - own
    for service in scope.of_kind("Service"):
        if not any(w is workload for w in selected_workloads(scope, service)):
            continue
        candidates: list[tuple[int, int]] = []
        reaches = False
        for i, entry in enumerate(service.get("spec", "ports", default=[]) or []):
            if not isinstance(entry, dict):
                continue
            target = entry.get("targetPort", entry.get("port"))
            number = _as_number(target)
            if number is None:
                reaches |= isinstance(target, str) and names.get(target) == port
                continue
            if number == port:
                reaches = True
            elif number not in others and (not declared or number in own):
                candidates.append((i, number))
        if candidates and not reaches:
            yield service, *candidates[0]


@rule(
    "wiring/vllm-port", Severity.ERROR,
    "vLLM's --port disagrees with the containerPort, a probe port or a Service targetPort",
    why="""vLLM's API server listens on the port given by --port (8000 when absent). A
    containerPort, probe or Service pointing at another port reaches nothing: probes fail so
    the pod is restarted or never Ready, and the Service sends requests into the void.""",
    fix="""Use one number everywhere: --port, the container's ports[].containerPort, probe
    ports (better: the port's name) and the Service targetPort (better: the same name).""",
)
def vllm_port_agrees(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        port = vllm_port(server)
        if port is None:
            continue
        workload, container = server.resource, server.resource.get(*server.container_path)
        inside = _container_disagreements(container, port)
        outside = list(_services_missing(scope, workload, container, port))
        where = f"vLLM listens on {port} (--port{'' if '--port' in server.flags else ' default'})"
        if inside:
            elsewhere = [f"Service {svc.name} targetPort {n}" for svc, _, n in outside]
            yield Violation(workload, f"{server.container}: {where}, but "
                            + ", ".join(inside + elsewhere) + " point elsewhere",
                            (*server.container_path, "ports" if "containerPort" in inside[0]
                             else "args"))
            continue
        for service, i, number in outside:
            yield Violation(service, f"targetPort {number} reaches {workload.kind} "
                            f"{workload.name}, where {where}",
                            ("spec", "ports", i, "targetPort"))


def _container_disagreements(container: dict[str, Any], port: int) -> list[str]:
    out: list[str] = []
    numbers = [p.get("containerPort") for p in container.get("ports") or []
               if isinstance(p, dict) and isinstance(p.get("containerPort"), int)]
    if numbers and port not in numbers:
        out.append("containerPort " + ", ".join(map(str, numbers)))
    for probe in PROBES:
        probe_port = _probe_port(container, probe)
        if isinstance(probe_port, int) and probe_port != port:
            out.append(f"{probe} port {probe_port}")
    return out


# GET routes of vLLM's OpenAI-compatible server (v0.11.0):
# https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/entrypoints/openai/api_server.py
# (/health, /load, /ping, /version, /v1/models; /metrics is mounted by mount_metrics; /docs,
# /redoc and /openapi.json are FastAPI's own unless --disable-fastapi-docs).
VLLM_GET_PATHS = frozenset({"/health", "/load", "/ping", "/version", "/v1/models", "/metrics",
                            "/docs", "/redoc", "/openapi.json"})


@rule(
    "wiring/probe-path", Severity.ERROR,
    "a vLLM container's HTTP probe asks for a path vLLM does not serve (or guards by API key)",
    why="""vLLM answers 404 on paths it does not serve (and 401 on /v1/... when an API key
    is set), and a probe counts either as a failure: the startup or liveness probe kills a
    healthy server again and again, or the readiness probe keeps it out of the Service
    forever.""",
    fix="""Probe /health (liveness, startup) or /v1/models (readiness: only answers once the
    model is loaded; with --api-key it needs the key, so prefer /health there). /ping,
    /version, /load and /metrics are served too.""",
)
def probe_path(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        container = server.resource.get(*server.container_path)
        keyed = "--api-key" in server.flags or any(
            isinstance(e, dict) and e.get("name") == "VLLM_API_KEY"
            for e in container.get("env") or [])
        for probe in PROBES:
            http = ((container.get(probe) or {}).get("httpGet") or {})
            path = http.get("path") if isinstance(http, dict) else None
            if path is None:
                continue
            where = (*server.container_path, probe, "httpGet", "path")
            clean = str(path).split("?", 1)[0].rstrip("/") or "/"
            if clean not in VLLM_GET_PATHS:
                yield Violation(server.resource, f"{server.container}: {probe} asks for "
                                f"{path!r}, which vLLM answers with 404 (it serves /health, "
                                "/v1/models, /ping, /version, /load, /metrics)", where)
            elif keyed and clean.startswith("/v1") and not _sends_authorization(http):
                # With an API key, vLLM answers 401 on /v1/* without the bearer token (the
                # authentication middleware in the api_server.py cited above).
                yield Violation(server.resource, f"{server.container}: {probe} asks for "
                                f"{path!r}, which vLLM answers with 401 when an API key is "
                                "set (--api-key or VLLM_API_KEY); /health needs no key", where)


def _sends_authorization(http: dict[str, Any]) -> bool:
    return any(isinstance(h, dict) and str(h.get("name", "")).lower() == "authorization"
               for h in http.get("httpHeaders") or [])

"""Exposure rules: how the LiteLLM gateway is reachable from outside the cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope
from vllm_gitops.topology import is_gateway_service
from vllm_gitops.yamlsafe import FieldPath

# AWS Load Balancer Controller annotations:
# https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/annotations/
# https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/service/annotations/
ALB_SCHEME = "alb.ingress.kubernetes.io/scheme"
ALB_LISTEN_PORTS = "alb.ingress.kubernetes.io/listen-ports"
ALB_CERTIFICATE = "alb.ingress.kubernetes.io/certificate-arn"
NLB_SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
NLB_CERTIFICATE = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"


def _backend_services(ingress: Resource) -> Iterator[str]:
    spec = ingress.get("spec", default={}) or {}
    backends = [spec.get("defaultBackend") or {}]
    for ingress_rule in spec.get("rules") or []:
        for path in ((ingress_rule or {}).get("http") or {}).get("paths") or []:
            backends.append((path or {}).get("backend") or {})
    for backend in backends:
        name = (backend.get("service") or {}).get("name")
        if name:
            yield str(name)


def _routes_to_gateway(scope: Scope, ingress: Resource) -> bool:
    for name in _backend_services(ingress):
        service = scope.find("Service", name, ingress.namespace)
        if service is not None and is_gateway_service(scope, service):
            return True
        if service is None and "litellm" in name.lower():
            return True
    return False


def _alb_listens_on_https(annotations: dict[str, str]) -> bool:
    """Without listen-ports, the ALB listens on HTTPS 443 only when a certificate is given;
    certificates discovered from spec.tls still need an explicit HTTPS listen port
    (https://kubernetes-sigs.github.io/aws-load-balancer-controller/latest/guide/ingress/cert_discovery/)."""
    raw = annotations.get(ALB_LISTEN_PORTS)
    if raw is None:
        return ALB_CERTIFICATE in annotations
    try:
        ports: Any = json.loads(raw)
    except json.JSONDecodeError:
        return True  # unreadable: not ours to judge here
    return isinstance(ports, list) and any(isinstance(p, dict) and "HTTPS" in p for p in ports)


def _ingress_problems(ingress: Resource) -> list[str]:
    annotations = ingress.annotations
    is_alb = any(k.startswith("alb.ingress.kubernetes.io/") for k in annotations) or "alb" in (
        ingress.get("spec", "ingressClassName"), annotations.get("kubernetes.io/ingress.class"))
    problems = []
    if annotations.get(ALB_SCHEME) == "internet-facing":
        problems.append("internet-facing")
    if (is_alb and not _alb_listens_on_https(annotations)) or (
            not is_alb and not ingress.get("spec", "tls")):
        problems.append("plain HTTP (no TLS listener)")
    return problems


def _service_problems(service: Resource) -> list[str]:
    annotations = service.annotations
    problems = []
    if annotations.get(NLB_SCHEME) == "internet-facing":
        problems.append("internet-facing")
    if NLB_CERTIFICATE not in annotations:
        problems.append("plain HTTP (no TLS certificate on the load balancer)")
    return problems


@rule(
    "exposure/public-load-balancer", Severity.WARNING,
    "the LiteLLM gateway is exposed by an internet-facing or plain-HTTP load balancer",
    why="""The gateway holds the master key and spends GPU time for whoever calls it. An
    internet-facing load balancer lets anyone on the internet reach its API and admin UI,
    and plain HTTP sends the API keys and every prompt unencrypted.""",
    fix="""Make the load balancer internal (alb.ingress.kubernetes.io/scheme: internal, or
    service.beta.kubernetes.io/aws-load-balancer-scheme: internal) and terminate TLS on it
    (certificate-arn with an HTTPS listen port), or reach the gateway through a VPN or
    port-forward.""",
)
def public_load_balancer(scope: Scope) -> Iterator[Violation]:
    for ingress in scope.of_kind("Ingress"):
        if _routes_to_gateway(scope, ingress) and (problems := _ingress_problems(ingress)):
            yield _exposed(ingress, problems)
    for service in scope.of_kind("Service"):
        is_lb = service.get("spec", "type") == "LoadBalancer"
        if is_lb and is_gateway_service(scope, service) and (
                problems := _service_problems(service)):
            yield _exposed(service, problems)


def _exposed(resource: Resource, problems: list[str]) -> Violation:
    path: FieldPath = ("metadata", "annotations") if resource.annotations else ("spec",)
    return Violation(resource, f"the LiteLLM gateway is exposed {' and '.join(problems)}", path)

"""Gateway rules: every LiteLLM route reaches a vLLM Service, and routes match the models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import yaml

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource
from vllm_gitops.routes import HEADER, ROUTES_KEY, expected_routes_text
from vllm_gitops.scope import Scope


def litellm_model_lists(scope: Scope) -> Iterator[tuple[Resource, str, list[Any]]]:
    """(ConfigMap, data key, model_list) for every LiteLLM config in scope."""
    for config_map in scope.of_kind("ConfigMap"):
        for key, text in (config_map.get("data", default={}) or {}).items():
            if not isinstance(text, str) or "model_list" not in text:
                continue
            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            if isinstance(parsed, dict) and isinstance(parsed.get("model_list"), list):
                yield config_map, str(key), parsed["model_list"]


def _service_port_exists(scope: Scope, host: str, port: int | None) -> bool:
    parts = host.split(".")
    name = parts[0]
    namespace = parts[1] if len(parts) > 1 and parts[1] != "svc" else None
    for service in scope.of_kind("Service"):
        if service.name != name or (namespace and service.namespace not in (None, namespace)):
            continue
        ports = [p.get("port") for p in service.get("spec", "ports", default=[]) or []
                 if isinstance(p, dict)]
        return port is None or port in ports
    return False


@rule(
    "litellm/route-target-missing", Severity.ERROR,
    "a LiteLLM route points at a Service or port that does not exist",
    why="""LiteLLM forwards each request for a model name to its api_base. When that address
    names a Service (or port) that is not deployed, every call to the model fails, even though
    the gateway and the other models look healthy.""",
    fix="""Point api_base at the model's Service: http://<service>.<namespace>.svc.cluster.local:
    <port>/v1. In this repository, run `make routes` to regenerate the routes from the models.""",
)
def route_target_missing(scope: Scope) -> Iterator[Violation]:
    for config_map, key, model_list in litellm_model_lists(scope):
        for entry in model_list:
            params = entry.get("litellm_params", {}) if isinstance(entry, dict) else {}
            base = params.get("api_base") if isinstance(params, dict) else None
            if not isinstance(base, str):
                continue
            url = urlsplit(base)
            host = url.hostname or ""
            in_cluster = host.endswith(".svc.cluster.local") or "." not in host
            if in_cluster and not _service_port_exists(scope, host, url.port):
                yield Violation(config_map, f"{key}: route {entry.get('model_name')!r} → "
                                f"{base}: no such Service/port in this scope",
                                ("data", key))


@rule(
    "litellm/routes-stale", Severity.ERROR,
    "the generated LiteLLM routes differ from the vLLM models of this overlay",
    why="""The gateway's models.yaml is generated from the models declared in the overlay.
    When someone edits a model (its name, served name or Service) without regenerating, or
    edits models.yaml by hand, clients are routed to a model that is not there.""",
    fix="""Run `make routes` and commit the regenerated models.yaml; never edit it by hand.""",
)
def routes_stale(scope: Scope) -> Iterator[Violation]:
    for config_map in scope.of_kind("ConfigMap"):
        text = (config_map.get("data", default={}) or {}).get(ROUTES_KEY)
        if isinstance(text, str) and text.startswith(HEADER):
            expected = expected_routes_text(scope)
            if text != expected:
                yield Violation(config_map, f"{ROUTES_KEY} is out of date with the models; "
                                "run `make routes`", ("data", ROUTES_KEY))

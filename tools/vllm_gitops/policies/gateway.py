"""Gateway rules: every LiteLLM route reaches a vLLM Service that serves the model it names,
the LiteLLM config holds only keys LiteLLM reads, and every vLLM server is reachable.

A LiteLLM config is any ConfigMap value that parses as a YAML mapping with one of LiteLLM's
section keys (model_list, litellm_settings, general_settings, router_settings). A config may
`include` other files (https://docs.litellm.ai/docs/proxy/config_management): each key of
the ConfigMap is checked on its own, and routes are collected from all of them.
"""

from __future__ import annotations

import difflib
import json
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources as package_files
from typing import Any
from urllib.parse import urlsplit

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.policies.secrets import text_line_offset
from vllm_gitops.resources import Resource
from vllm_gitops.routes import HEADER_MARK, ROUTES_KEY, expected_routes_text
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.workload import VllmWorkload
from vllm_gitops.topology import per_scope, selected_workloads, vllm_servers
from vllm_gitops.yamlsafe import FieldPath, YamlProblem, parse_documents

SECTION_KEYS = ("model_list", "litellm_settings", "general_settings", "router_settings")
# LiteLLM provider prefixes that send an OpenAI-compatible request to api_base with the rest
# of the string as the model name: https://docs.litellm.ai/docs/providers/vllm
VLLM_PROVIDERS = ("hosted_vllm/", "openai/")


@dataclass(frozen=True)
class LiteLLMConfig:
    """One LiteLLM config file held in a ConfigMap key, with the line of each field."""

    config_map: Resource
    key: str
    data: dict[str, Any]
    lines: dict[FieldPath, int]

    @property
    def path(self) -> FieldPath:
        return ("data", self.key)

    def where(self, *field: str | int) -> str:
        """'config.yaml line 12': a place inside the embedded file, the same in every scope."""
        line = self.lines.get(tuple(field))
        return f"{self.key} line {line}" if line else self.key

    def violation(self, message: str, *field: str | int) -> Violation:
        """A finding on the ConfigMap, at the line of `field` inside the embedded file."""
        line = self.lines.get(tuple(field))
        offset = text_line_offset(self.config_map, self.path, line) if line else 0
        return Violation(self.config_map, f"{self.where(*field)}: {message}", self.path, offset)

    @property
    def model_list(self) -> list[Any]:
        routes = self.data.get("model_list")
        return routes if isinstance(routes, list) else []


def litellm_configs(scope: Scope) -> Iterator[LiteLLMConfig]:
    """Every LiteLLM config file in the scope's ConfigMaps (parsed once per scope)."""
    return iter(per_scope(scope, ("gateway", "litellm_configs"),
                          lambda: list(_parse_litellm_configs(scope))))


def _parse_litellm_configs(scope: Scope) -> Iterator[LiteLLMConfig]:
    for config_map in scope.of_kind("ConfigMap"):
        data = config_map.get("data", default={})
        for key, text in (data if isinstance(data, dict) else {}).items():
            if not isinstance(text, str) or not any(k in text for k in SECTION_KEYS):
                continue
            try:
                documents = list(parse_documents(text))
            except YamlProblem:
                continue
            if len(documents) == 1 and isinstance(documents[0].data, dict) and any(
                    k in documents[0].data for k in SECTION_KEYS):
                yield LiteLLMConfig(config_map, str(key), documents[0].data,
                                    documents[0].field_lines)


def judges_routes(scope: Scope) -> bool:
    """Whether routes are judged in this scope: a whole cluster, or anything holding vLLM
    servers. A gateway folder rendered without its models (overlays/<env>/apps, whose models
    are sync units of their own) is judged in its cluster instead."""
    return scope.kind == "cluster" or bool(vllm_servers(scope))


def litellm_model_lists(scope: Scope) -> Iterator[tuple[Resource, str, list[Any]]]:
    """(ConfigMap, data key, model_list) for every LiteLLM config in scope."""
    for config in litellm_configs(scope):
        if "model_list" in config.data:
            yield config.config_map, config.key, config.model_list


def _route_params(entry: Any) -> dict[str, Any]:
    params = entry.get("litellm_params") if isinstance(entry, dict) else None
    return params if isinstance(params, dict) else {}


def _in_cluster_host(api_base: str) -> tuple[str, int | None] | None:
    """(host, port) of an api_base that names a Service of the cluster, else None."""
    try:
        url = urlsplit(api_base)
        host, port = url.hostname or "", url.port
    except ValueError:
        return None
    if host.endswith((".svc.cluster.local", ".svc")) or (host and "." not in host):
        return host, port
    return None


def _services_named(scope: Scope, host: str, gateway_namespace: str | None) -> list[Resource]:
    parts = host.split(".")
    name = parts[0]
    namespace = parts[1] if len(parts) > 1 and parts[1] != "svc" else gateway_namespace
    return [s for s in scope.of_kind("Service") if s.name == name and (
        namespace is None or s.namespace in (None, namespace))]


def _service_port_exists(scope: Scope, host: str, port: int | None) -> bool:
    for service in _services_named(scope, host, None):
        ports = [p.get("port") for p in service.get("spec", "ports", default=[]) or []
                 if isinstance(p, dict)]
        return port is None or port in ports
    return False


def route_servers(scope: Scope, gateway: Resource, api_base: Any) -> list[VllmWorkload]:
    """The vLLM servers a route's api_base reaches (Service -> selected workloads)."""
    if not isinstance(api_base, str):
        return []
    target = _in_cluster_host(api_base)
    if target is None:
        return []
    services = _services_named(scope, target[0], gateway.namespace)
    reached = {id(w) for s in services for w in selected_workloads(scope, s)}
    return [w for w in vllm_servers(scope) if id(w.resource) in reached]


def served_names(server: VllmWorkload) -> list[str]:
    """The names vLLM answers to: every --served-model-name (the flag takes several names:
    https://docs.vllm.ai/en/stable/cli/serve.html), else the model id."""
    names = (server.flags.get("--served-model-name") or "").split()
    container = server.resource.get(*server.container_path, default={}) or {}
    line = " ".join(str(t) for t in [*(container.get("command") or []),
                                     *(container.get("args") or [])])
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    for index, token in enumerate(tokens):
        if token.replace("_", "-") == "--served-model-name":
            following = tokens[index + 1:]
            stop = next((i for i, t in enumerate(following) if t.startswith("-")
                         or t in ("&&", ";", "|")), len(following))
            names += [n for n in following[:stop] if n not in names]
    return names or ([server.model] if server.model else [])


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
    if not judges_routes(scope):
        return
    for config_map, key, model_list in litellm_model_lists(scope):
        for entry in model_list:
            params = entry.get("litellm_params", {}) if isinstance(entry, dict) else {}
            base = params.get("api_base") if isinstance(params, dict) else None
            if not isinstance(base, str):
                continue
            target = _in_cluster_host(base)
            if target is not None and not _service_port_exists(scope, *target):
                yield Violation(config_map, f"{key}: route {entry.get('model_name')!r} → "
                                f"{base}: no such Service/port in this scope",
                                ("data", key))


@rule(
    "litellm/routes-stale", Severity.ERROR,
    "the generated LiteLLM routes differ from the vLLM models deployed beside the gateway",
    why="""The gateway's models.yaml is generated from the models the cluster deploys with it.
    When someone edits a model (its name, served name or Service) without regenerating, or
    edits models.yaml by hand, clients are routed to a model that is not there.""",
    fix="""Run `make routes` and commit the regenerated models.yaml; never edit it by hand.""",
)
def routes_stale(scope: Scope) -> Iterator[Violation]:
    if not judges_routes(scope):
        return
    expected: str | None = None  # computed once, and only when a generated file is present
    for config_map in scope.of_kind("ConfigMap"):
        text = (config_map.get("data", default={}) or {}).get(ROUTES_KEY)
        if isinstance(text, str) and text.startswith(HEADER_MARK):
            if expected is None:
                expected = expected_routes_text(scope)
            if text != expected:
                yield Violation(config_map, f"{ROUTES_KEY} is out of date with the models "
                                "deployed beside it; run `make routes` (if it changes "
                                "nothing, this environment's entry points deploy different "
                                "models)", ("data", ROUTES_KEY))


@rule(
    "litellm/route-model-mismatch", Severity.ERROR,
    "a LiteLLM route asks its vLLM server for a model name the server does not serve",
    why="""LiteLLM passes the model named in litellm_params.model (after `hosted_vllm/` or
    `openai/`) to vLLM, and vLLM answers only to its --served-model-name (or, without it, to the
    model id it loaded). Any other name gets "404 model does not exist" on every request, while
    the gateway and the server both look healthy.""",
    fix="""Make litellm_params.model `hosted_vllm/<served name>`, with the served name exactly
    as the server's --served-model-name says (or its model id when that flag is absent). In
    this repository, run `make routes`.""",
)
def route_model_mismatch(scope: Scope) -> Iterator[Violation]:
    for config in litellm_configs(scope):
        for index, entry in enumerate(config.model_list):
            params = _route_params(entry)
            model = params.get("model")
            if not isinstance(model, str) or not model.startswith(VLLM_PROVIDERS):
                continue
            asked = model.split("/", 1)[1]
            servers = route_servers(scope, config.config_map, params.get("api_base"))
            names = sorted({n for server in servers for n in served_names(server)})
            if servers and asked not in names:
                yield config.violation(
                    f"route {entry.get('model_name')!r} asks for model {asked!r}, but the vLLM "
                    f"server behind {params.get('api_base')} serves "
                    f"{' / '.join(repr(n) for n in names)}",
                    "model_list", index, "litellm_params", "model")


@cache
def _keys_file() -> dict[str, Any]:
    text = package_files.files("vllm_gitops.policies").joinpath(
        "data", "litellm_keys.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def known_keys() -> dict[str, frozenset[str]]:
    """LiteLLM's config keys per section (policies/data/litellm_keys.json, with sources)."""
    return {name: frozenset(keys) for name, keys in _keys_file()["sections"].items()}


def known_version() -> str:
    """The LiteLLM version the key lists were taken from."""
    return str(_keys_file()["litellm_version"])


SETTINGS_SECTIONS = ("litellm_settings", "general_settings", "router_settings")


def _unknown(keys: Any, section: str) -> Iterator[tuple[str, str]]:
    """(unknown key, hint) for each key of a mapping that `section` does not read; the hint
    names the section that does read it, or the closest known spelling."""
    known = known_keys()
    for key in keys if isinstance(keys, dict) else {}:
        if str(key) in known[section]:
            continue
        home = next((other for other in SETTINGS_SECTIONS
                     if other != section and str(key) in known[other]), None)
        close = difflib.get_close_matches(str(key), known[section], n=1, cutoff=0.75)
        hint = (f"; it belongs in {home}" if home and section in SETTINGS_SECTIONS
                else f"; did you mean {close[0]}?" if close else "")
        yield str(key), hint


Problem = tuple[tuple[str | int, ...], str, str]  # field path in the config, key, hint


def _config_key_problems(config: LiteLLMConfig) -> Iterator[Problem]:
    """Every key of a LiteLLM config that LiteLLM does not read."""
    for key, hint in _unknown(config.data, "top_level"):
        yield (key,), f"top-level key {key!r}", hint
    for section in SETTINGS_SECTIONS:
        for key, hint in _unknown(config.data.get(section), section):
            yield (section, key), f"{section}.{key}", hint
    for index, entry in enumerate(config.model_list):
        for key, hint in _unknown(entry, "model_list_entry"):
            yield ("model_list", index, key), f"model_list[{index}].{key}", hint


@rule(
    "litellm/unknown-config-key", Severity.ERROR,
    "the LiteLLM config has a key LiteLLM does not know, which it silently ignores",
    why="""LiteLLM does not reject unknown settings: a misspelt key (drop_parmas for
    drop_params) or a setting in the wrong section is ignored without a word, so the gateway runs
    with the default you meant to change, and nobody notices until requests fail or leak.""",
    fix="""Correct the key's spelling or move it to the section that reads it; the keys LiteLLM
    reads are listed at https://docs.litellm.ai/docs/proxy/config_settings.""",
)
def unknown_config_key(scope: Scope) -> Iterator[Violation]:
    for config in litellm_configs(scope):
        for field, key, hint in _config_key_problems(config):
            yield config.violation(f"{key} is silently ignored by LiteLLM {known_version()}{hint}",
                                   *field)


@rule(
    "litellm/unrouted-server", Severity.WARNING,
    "a vLLM server that no LiteLLM route reaches",
    why="""Clients reach the models through the LiteLLM gateway. A vLLM server that no route
    points at holds its GPUs (and costs money every hour) while nobody can use it: a forgotten
    route, or a Service name that changed.""",
    fix="""Add a route for it (in this repository: the annotation vllm-gitops.io/litellm-route
    and `make routes`), or remove the server.""",
)
def unrouted_server(scope: Scope) -> Iterator[Violation]:
    configs = list(litellm_configs(scope))
    if not any("model_list" in c.data for c in configs):
        return
    reached = {id(server.resource) for config in configs for entry in config.model_list
               for server in route_servers(scope, config.config_map,
                                           _route_params(entry).get("api_base"))}
    seen: set[int] = set()
    for server in vllm_servers(scope):
        if id(server.resource) not in reached and id(server.resource) not in seen:
            seen.add(id(server.resource))
            yield Violation(server.resource, "no LiteLLM route reaches this vLLM server "
                            f"(serving {' / '.join(served_names(server)) or 'an unknown model'})",
                            server.container_path)

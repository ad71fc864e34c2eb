"""Hygiene rules (warnings): nothing breaks today, but a rollout, a node recycle or an
upgrade will. Mutable images, missing requests, unprotected serving pods, debug settings,
placeholders nobody substitutes, NetworkPolicies that shut out the gateway."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.resources import Resource, iter_containers, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.topology import (
    DO_NOT_DISRUPT,
    container_ports,
    do_not_disrupt,
    gateway_workloads,
    pod_labels,
    reasoning_parser_for,
    selector_matches,
    vllm_port,
    vllm_servers,
)
from vllm_gitops.yamlsafe import FieldPath

# ---------------------------------------------------------------- images/mutable-tag

# Tags that move by design; a tag is also mutable when it is not a version at all.
_MOVING_WORDS = {"latest", "main", "master", "nightly", "edge", "dev", "stable", "head"}
_VERSION = re.compile(r"\d+\.\d+")  # at least major.minor: "15" or "v1" still moves
_COMMIT = re.compile(r"(sha-)?[0-9a-f]{7,40}")


def image_tag_problem(image: str) -> str | None:
    """Why an image reference is mutable, or None when it is pinned (digest or version).

    Reference grammar: https://github.com/distribution/reference/blob/main/reference.go
    """
    if "@" in image:
        return None  # a digest names exactly one image
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "has no tag, so it means :latest"
    tag = last.rsplit(":", 1)[1]
    words = set(re.split(r"[-_.]", tag.lower()))
    versioned = bool(_VERSION.search(tag) or _COMMIT.fullmatch(tag.lower()))
    if "latest" in words or (words & _MOVING_WORDS and not versioned):
        return f"tag {tag!r} is moved to each new build"
    if not versioned:
        return f"tag {tag!r} is not a release version (major.minor at least)"
    return None


@rule(
    "images/mutable-tag", Severity.WARNING,
    "image has no tag, a moving tag (latest, main, *-latest) or a tag that is not a version",
    why="""A mutable tag points at whatever was pushed last: two nodes can run different
    code, a restart silently upgrades vLLM or LiteLLM (whose flags and config keys change
    between releases) and a working deployment can stop starting without any change in git.
    https://kubernetes.io/docs/concepts/containers/images/#updating-images""",
    fix="""Pin a released version (vllm/vllm-openai:v0.11.0,
    ghcr.io/berriai/litellm:v1.80.11-stable.1), ideally with its digest
    (image:tag@sha256:...).""",
)
def mutable_tag(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        for path, container in iter_containers(resource):
            image = str(container.get("image", ""))
            if image and (problem := image_tag_problem(image)):
                yield Violation(resource, f"{container.get('name')}: image {image} {problem}",
                                (*path, "image"))


# ---------------------------------------------------------------- resources/missing-requests


def _missing_resources(container: dict[str, Any]) -> list[str]:
    """A request defaults to the limit when only the limit is set:
    https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/"""
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    missing = [f"{name} request" for name in ("cpu", "memory")
               if name not in requests and name not in limits]
    if "memory" not in limits:
        missing.append("memory limit")
    return missing


@rule(
    "resources/missing-requests", Severity.WARNING,
    "a container has no CPU/memory request or no memory limit",
    why="""Without requests the scheduler places the pod blindly and, with none at all, the
    pod is BestEffort: the first one evicted when a node runs short of memory. Without a
    memory limit one leaking process can starve everything else on the node.
    https://kubernetes.io/docs/concepts/workloads/pods/pod-qos/""",
    fix="""Set resources.requests.cpu and .memory, and resources.limits.memory (equal to the
    memory request for the most predictable behaviour).""",
)
def missing_requests(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        for path, container in iter_containers(resource):
            if "initContainers" not in path and (missing := _missing_resources(container)):
                yield Violation(resource, f"{container.get('name')}: no {', '.join(missing)}",
                                (*path, "resources") if "resources" in container else path)


# ---------------------------------------------------------------- disruption


SERVING_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "Pod"}


def _protected_by_pdb(scope: Scope, workload: Resource, labels: dict[str, str]) -> bool:
    return any(pdb.namespace == workload.namespace
               and selector_matches(pdb.get("spec", "selector"), labels)
               for pdb in scope.of_kind("PodDisruptionBudget"))


@rule(
    "disruption/unprotected-serving-pod", Severity.WARNING,
    "a vLLM server has neither a PodDisruptionBudget nor karpenter.sh/do-not-disrupt",
    why="""Node upgrades, drains and Karpenter consolidation evict pods at any time. A vLLM
    pod that nothing protects is stopped mid-request and then spends minutes reloading the
    model: every voluntary disruption becomes an outage of the model.
    https://karpenter.sh/docs/concepts/disruption/#pod-level-controls""",
    fix="""Add a PodDisruptionBudget selecting the vLLM pods (maxUnavailable: 1) and/or the
    pod-template annotation karpenter.sh/do-not-disrupt: "true".""",
)
def unprotected_serving_pod(scope: Scope) -> Iterator[Violation]:
    seen: set[int] = set()
    for server in vllm_servers(scope):
        workload = server.resource
        if id(workload) in seen or workload.kind not in SERVING_KINDS:
            continue
        seen.add(id(workload))
        spec_path = pod_spec_path(workload) or ("spec",)
        if do_not_disrupt(workload):
            continue
        if not _protected_by_pdb(scope, workload, pod_labels(workload) or {}):
            yield Violation(workload, f"{workload.kind} {workload.name}: no PodDisruptionBudget "
                            f"selects its pods and they lack {DO_NOT_DISRUPT}: \"true\"",
                            spec_path[:-1])


# ---------------------------------------------------------------- vLLM environment


def _env_values(resource: Resource, name: str) -> Iterator[tuple[FieldPath, dict[str, Any],
                                                                  str]]:
    """(path of the env value, container, value) for a literal env variable."""
    for path, container in iter_containers(resource):
        for index, item in enumerate(container.get("env") or []):
            if isinstance(item, dict) and item.get("name") == name and "value" in item:
                yield (*path, "env", index, "value"), container, str(item["value"])


@rule(
    "vllm/debug-logging", Severity.WARNING,
    "VLLM_LOGGING_LEVEL=DEBUG in a deployable manifest",
    why="""DEBUG makes vLLM log every scheduler step and request detail: log volume (and the
    bill for storing it) explodes, real errors drown, and prompts may end up in the logs.
    https://docs.vllm.ai/en/stable/configuration/env_vars.html""",
    fix="""Remove VLLM_LOGGING_LEVEL (the default is INFO) or set it to INFO/WARNING; turn
    DEBUG on only while investigating, in a throw-away pod.""",
)
def debug_logging(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        for path, container, value in _env_values(resource, "VLLM_LOGGING_LEVEL"):
            if value.strip().upper() == "DEBUG":
                yield Violation(resource, f"{container.get('name')}: VLLM_LOGGING_LEVEL={value}",
                                path)


def _requests_gpus(container: dict[str, Any]) -> bool:
    resources = container.get("resources") or {}
    return any("nvidia.com/gpu" in (resources.get(section) or {})
               for section in ("limits", "requests"))


@rule(
    "vllm/cuda-visible-devices", Severity.WARNING,
    "hard-coded CUDA_VISIBLE_DEVICES in a container that gets its GPUs from the device plugin",
    why="""The NVIDIA device plugin already gives the container exactly the GPUs it asked
    for, numbered from 0. A hard-coded list repeats that count: change the GPU request and
    the list hides GPUs the pod was given or names GPUs it does not have, and vLLM fails
    with a tensor-parallel or CUDA device error.
    https://github.com/NVIDIA/k8s-device-plugin""",
    fix="""Delete the CUDA_VISIBLE_DEVICES env entry; size the GPUs only with
    resources.limits nvidia.com/gpu (and --tensor-parallel-size).""",
)
def cuda_visible_devices(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        for path, container, value in _env_values(resource, "CUDA_VISIBLE_DEVICES"):
            if _requests_gpus(container):
                yield Violation(resource, f"{container.get('name')}: CUDA_VISIBLE_DEVICES="
                                f"{value!r} is fixed although nvidia.com/gpu is requested", path)


# ---------------------------------------------------------------- vllm/reasoning-parser-missing


@rule(
    "vllm/reasoning-parser-missing", Severity.WARNING,
    "a reasoning model is served without --reasoning-parser",
    why="""Reasoning models (Qwen3, QwQ, DeepSeek-R1) write their chain of thought between
    <think> tags before the answer. Without --reasoning-parser vLLM returns that text inside
    the answer itself: chat UIs show it, JSON answers no longer parse, and clients pay for
    tokens they did not ask to see. https://docs.vllm.ai/en/stable/features/reasoning_outputs/""",
    fix="""Add --reasoning-parser with the model's parser (qwen3 for Qwen3, deepseek_r1 for
    DeepSeek-R1 and QwQ); the thinking then arrives in the separate `reasoning` field.""",
)
def reasoning_parser_missing(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        parser = reasoning_parser_for(server.model or "")
        if parser and "--reasoning-parser" not in server.flags:
            yield Violation(server.resource, f"{server.container}: {server.model} thinks by "
                            f"default but runs without --reasoning-parser {parser}",
                            server.container_path)


# ---------------------------------------------------------------- manifests/ineffective-annotation

# Finalizers written as annotations: they do nothing there.
# https://kubernetes.io/docs/concepts/storage/persistent-volumes/#storage-object-in-use-protection
_NOT_ANNOTATIONS = {
    "kubernetes.io/pvc-protection": "is a finalizer that Kubernetes adds to every claim",
    "kubernetes.io/pv-protection": "is a finalizer that Kubernetes adds to every volume",
}


@rule(
    "manifests/ineffective-annotation", Severity.WARNING,
    "an annotation that Kubernetes ignores (a finalizer name written as an annotation)",
    why="""Some names look like switches but are finalizers that Kubernetes manages itself.
    Written as an annotation they change nothing: kubernetes.io/pvc-protection: "false"
    does not turn off volume protection, so whoever relies on it is surprised later.""",
    fix="""Delete the annotation. Storage-object-in-use protection cannot be turned off per
    object; delete the pods that use a claim before deleting the claim.""",
)
def ineffective_annotation(scope: Scope) -> Iterator[Violation]:
    for resource in scope.resources:
        for key in resource.annotations:
            if key in _NOT_ANNOTATIONS:
                yield Violation(resource, f"annotation {key} {_NOT_ANNOTATIONS[key]}; as an "
                                "annotation it has no effect", ("metadata", "annotations", key))


# ---------------------------------------------------------------- manifests/unsubstituted-variable

# Flux's syntax, with its optional defaults ${var:=default} / ${var:-default}:
# https://fluxcd.io/flux/components/kustomize/kustomizations/#post-build-variable-substitution
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-=][^}]*)?\}")
_SHELLS = {"sh", "bash", "ash", "dash", "zsh"}


def _runs_shell_script(node: dict[str, Any]) -> bool:
    """command/args of a container or exec handler that run `sh -c <script>`: ${VAR} there
    is shell syntax, expanded at run time."""
    argv = [str(x) for x in [*(node.get("command") or []), *(node.get("args") or [])]]
    return any(token.rsplit("/", 1)[-1] in _SHELLS and i + 1 < len(argv)
               and re.fullmatch(r"-[a-z]*c", argv[i + 1]) is not None
               for i, token in enumerate(argv))


def placeholders(node: Any, path: FieldPath = ()) -> Iterator[tuple[FieldPath, str]]:
    """(field path, variable name) of every ${VAR} outside shell scripts."""
    if isinstance(node, dict):
        shell = isinstance(node.get("command") or node.get("args"), list) and _runs_shell_script(
            node)
        for key, value in node.items():
            if (shell and key in ("command", "args")) or str(key).endswith((".sh", ".bash")):
                continue
            yield from placeholders(value, (*path, str(key)))
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from placeholders(item, (*path, index))
        return
    if isinstance(node, str) and not node.lstrip().startswith("#!"):
        for match in _PLACEHOLDER.finditer(node):
            yield path, match.group(1)


def _substitutes(kustomization: Resource) -> bool:
    post_build = kustomization.get("spec", "postBuild") or {}
    return bool(post_build.get("substitute") or post_build.get("substituteFrom"))


def _is_flux_kustomization(resource: Resource) -> bool:
    return resource.kind == "Kustomization" and resource.api_version.startswith(
        "kustomize.toolkit.fluxcd.io/")


def _flux_kustomizations(scope: Scope) -> list[Resource]:
    return [r for r in scope.resources if _is_flux_kustomization(r)]


def _folder_prefix(kustomization: Resource) -> str:
    folder = str(kustomization.get("spec", "path") or ".").strip("./")
    return f"{folder}/" if folder else ""


def _substituted(scope: Scope, resource: Resource, flux: list[Resource]) -> bool:
    """Whether Flux substitutes variables in this resource. The Flux Kustomization that
    syncs it decides (an Argo CD Application never substitutes); without one in scope, a
    Kustomization whose path holds the resource's source file; when none can be told, any
    postBuild in scope gets the benefit of the doubt."""
    parent = scope.sync_parent(resource)
    if parent is not None:
        return _is_flux_kustomization(parent) and _substitutes(parent)
    source = resource.source.file if resource.source else ""
    owners = [k for k in flux if source.startswith(_folder_prefix(k))]
    if owners:
        return _substitutes(max(owners, key=lambda k: len(_folder_prefix(k))))
    return any(_substitutes(k) for k in flux)


@rule(
    "manifests/unsubstituted-variable", Severity.WARNING,
    "a ${VAR} placeholder that nothing substitutes before the manifest is applied",
    why="""Flux and Argo CD apply manifests as they are in git: they do not run envsubst
    (Flux only with postBuild.substitute on the Kustomization that syncs them). The
    literal text ${CLUSTER_NAME} then reaches the cluster, so selectors match nothing and
    names are wrong, usually without an error. Kubernetes itself only expands $(VAR) in
    env, command and args.""",
    fix="""Write the real value (per-cluster values belong in an overlay patch), or set
    postBuild.substitute/substituteFrom on the Flux Kustomization that syncs this file.""",
)
def unsubstituted_variable(scope: Scope) -> Iterator[Violation]:
    flux = _flux_kustomizations(scope)
    for resource in scope.resources:
        found = list(placeholders(resource.doc))
        if found and not _substituted(scope, resource, flux):
            names = sorted({name for _, name in found})
            yield Violation(resource, "unsubstituted " + ", ".join(f"${{{n}}}" for n in names),
                            found[0][0])


# ---------------------------------------------------------------- networkpolicy/blocks-gateway


def _namespace_labels(scope: Scope, namespace: str) -> dict[str, str]:
    """Labels of a namespace: the automatic kubernetes.io/metadata.name plus declared ones.
    https://kubernetes.io/docs/concepts/services-networking/network-policies/#targeting-a-namespace-by-its-name"""
    labels = {"kubernetes.io/metadata.name": namespace}
    declared = scope.find("Namespace", namespace)
    if declared is not None:
        labels |= {str(k): str(v) for k, v in (declared.get("metadata", "labels") or {}).items()}
    return labels


def _peer_admits(scope: Scope, peer: dict[str, Any], policy_ns: str, gateway: Resource) -> bool:
    """Whether a NetworkPolicy `from` peer admits the gateway's pods (ipBlock never
    reliably matches pod IPs, so it admits nothing here)."""
    gateway_ns = gateway.namespace or "default"
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
    if pods is None and namespaces is None:
        return False
    if namespaces is None and gateway_ns != policy_ns:
        return False
    if namespaces is not None and not selector_matches(namespaces,
                                                       _namespace_labels(scope, gateway_ns)):
        return False
    return pods is None or selector_matches(pods, pod_labels(gateway) or {})


def _port_admitted(rule_ports: Any, port: int, names: dict[str, int]) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if not isinstance(entry, dict) or entry.get("protocol", "TCP") != "TCP":
            continue
        value = entry.get("port")
        if value is None or (isinstance(value, str) and names.get(value) == port):
            return True
        if isinstance(value, int) and value <= port <= int(entry.get("endPort", value)):
            return True
    return False


def _admits(scope: Scope, policy: Resource, gateway: Resource, port: int,
            names: dict[str, int]) -> bool:
    policy_ns = policy.namespace or "default"
    for ingress_rule in policy.get("spec", "ingress", default=[]) or []:
        if not isinstance(ingress_rule, dict):
            continue
        peers = ingress_rule.get("from") or []
        peer_ok = not peers or any(isinstance(p, dict) and _peer_admits(scope, p, policy_ns,
                                                                          gateway) for p in peers)
        if peer_ok and _port_admitted(ingress_rule.get("ports"), port, names):
            return True
    return False


def _isolates_ingress(policy: Resource) -> bool:
    """policyTypes defaults to Ingress (plus Egress when egress rules exist)."""
    types = policy.get("spec", "policyTypes")
    return not isinstance(types, list) or "Ingress" in types


@rule(
    "networkpolicy/blocks-gateway", Severity.WARNING,
    "a NetworkPolicy on the vLLM pods admits no LiteLLM gateway pod on the vLLM port",
    why="""Once a NetworkPolicy selects a pod for Ingress, only traffic one of its rules
    allows gets in. If no rule admits the gateway's pods on vLLM's port, every request
    through LiteLLM times out although both sides look healthy.
    https://kubernetes.io/docs/concepts/services-networking/network-policies/""",
    fix="""Add an ingress rule whose `from` matches the LiteLLM pods (podSelector, plus a
    namespaceSelector when LiteLLM runs in another namespace) and whose ports include
    the vLLM port.""",
)
def blocks_gateway(scope: Scope) -> Iterator[Violation]:
    gateways = gateway_workloads(scope)
    if not gateways:
        return  # a partial scope: the gateway lives elsewhere
    policies = [p for p in scope.of_kind("NetworkPolicy") if _isolates_ingress(p)]
    for server in vllm_servers(scope):
        labels = pod_labels(server.resource) or {}
        own = [p for p in policies if p.namespace == server.resource.namespace
               and selector_matches(p.get("spec", "podSelector") or {}, labels)]
        if not own:
            continue
        container = server.resource.get(*server.container_path) or {}
        port = vllm_port(server)
        if port is None:
            continue  # an unresolved --port such as $(PORT)
        names = container_ports(container)
        if not any(_admits(scope, p, g, port, names) for p in own for g in gateways):
            yield Violation(own[0], f"no ingress rule admits the LiteLLM pods "
                            f"({', '.join(sorted(g.name for g in gateways))}) to "
                            f"{server.resource.kind} {server.resource.name} on port {port}",
                            ("spec", "ingress"))


# ---------------------------------------------------------------- ingress class

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"


@rule(
    "ingress/deprecated-class-annotation", Severity.WARNING,
    "Ingress uses the deprecated kubernetes.io/ingress.class annotation",
    why="""The annotation was replaced by spec.ingressClassName in Kubernetes 1.18; newer
    ingress controllers may ignore it, and then the Ingress gets no load balancer.
    https://kubernetes.io/docs/concepts/services-networking/ingress/#deprecated-annotation""",
    fix="""Delete the annotation and set spec.ingressClassName to the same value (e.g. alb).""",
)
def deprecated_class_annotation(scope: Scope) -> Iterator[Violation]:
    for ingress in scope.of_kind("Ingress"):
        if INGRESS_CLASS_ANNOTATION in ingress.annotations:
            yield Violation(ingress, f"annotation {INGRESS_CLASS_ANNOTATION}: "
                            f"{ingress.annotations[INGRESS_CLASS_ANNOTATION]}",
                            ("metadata", "annotations", INGRESS_CLASS_ANNOTATION))

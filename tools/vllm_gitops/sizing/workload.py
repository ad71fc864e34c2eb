"""Find vLLM servers in rendered manifests and read what sizing needs from them.

A vLLM workload is a container whose image is a vLLM image (`vllm/vllm-openai:v0.11.0`, a
digest-pinned tag, or a DLC `.../vllm:0.12.0-gpu-...`) or whose command runs `vllm serve` /
`vllm.entrypoints.openai.api_server`. Flags are read in both `--flag=value` and `--flag value`
forms (also inside `sh -c "vllm serve ..."`); `$(VAR)` references are resolved from the
container's env, including configMapKeyRef / envFrom into ConfigMaps of the same scope.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from vllm_gitops.findings import ResourceRef, SourceLocation
from vllm_gitops.resources import Resource, iter_containers, pod_spec_path
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.karpenter import PodScheduling
from vllm_gitops.sizing.version import VllmVersion, version_from_image

HF_CACHE_DEFAULT = "/root/.cache/huggingface"
BOOLEAN_FLAGS = {"--enforce-eager", "--trust-remote-code", "--enable-auto-tool-choice",
                 "--enable-prefix-caching", "--enable-chunked-prefill", "--enable-expert-parallel",
                 "--disable-log-requests", "--disable-log-stats", "--disable-custom-all-reduce",
                 "--disable-hybrid-kv-cache-manager", "--enable-lora", "--headless"}
_K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_SHELL_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
_MODEL_ANNOTATION = "vllm-gitops.io/model"


@dataclass(frozen=True)
class Probe:
    kind: str  # startupProbe | livenessProbe | readinessProbe
    budget_s: float  # initialDelaySeconds + failureThreshold x periodSeconds

    @classmethod
    def from_container(cls, container: dict[str, Any], kind: str) -> Probe | None:
        probe = container.get(kind)
        if not isinstance(probe, dict):
            return None
        delay = float(probe.get("initialDelaySeconds", 0))
        period = float(probe.get("periodSeconds", 10))
        return cls(kind, delay + float(probe.get("failureThreshold", 3)) * period)


@dataclass(frozen=True)
class CacheVolume:
    """The volume holding the Hugging Face cache, as far as the manifests tell."""

    kind: str  # pvc | emptyDir | hostPath | none
    mount_path: str | None = None
    claim: str | None = None
    storage_class: str | None = None
    volume_type: str | None = None  # gp3, io2...
    throughput_mib_s: float | None = None


@dataclass
class VllmWorkload:
    resource: Resource
    container: str
    container_path: tuple[str | int, ...]
    image: str
    version: VllmVersion | None  # None: the image does not pin one
    model: str | None
    flags: dict[str, str | None]
    engine_args: EngineArgs
    gpus: int | None
    scheduling: PodScheduling
    probes: dict[str, Probe] = field(default_factory=dict)
    cache: CacheVolume = field(default_factory=lambda: CacheVolume("none"))
    replicas: int = 1
    max_replicas: int = 1  # above `replicas` when an HPA or KEDA ScaledObject scales it
    problems: list[str] = field(default_factory=list)

    @property
    def ref(self) -> ResourceRef:
        return self.resource.ref

    @property
    def location(self) -> SourceLocation | None:
        return self.resource.location_of(self.container_path)

    @property
    def kill_budget_s(self) -> float | None:
        """Seconds the kubelet waits before killing a container that is still starting."""
        for kind in ("startupProbe", "livenessProbe"):
            if kind in self.probes:
                return self.probes[kind].budget_s
        return None


# ---------------------------------------------------------------- detection and argv


def is_vllm_container(container: dict[str, Any]) -> bool:
    image = str(container.get("image", ""))
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    if "vllm" in repo.rsplit("/", 1)[-1]:
        return True
    argv = " ".join(_raw_argv(container))
    return bool(re.search(r"\bvllm\s+serve\b|vllm\.entrypoints\.openai\.api_server", argv))


def _raw_argv(container: dict[str, Any]) -> list[str]:
    return [str(x) for x in [*(container.get("command") or []), *(container.get("args") or [])]]


def _argv(container: dict[str, Any]) -> list[str]:
    tokens = _raw_argv(container)
    for i, token in enumerate(tokens[:-1]):
        if token in ("-c", "-lc") and tokens[i - 1].rsplit("/", 1)[-1] in ("sh", "bash", "ash"):
            try:
                return shlex.split(" ".join(tokens[i + 1:]))
            except ValueError:
                return tokens[i + 1:]
    return tokens


def _env(container: dict[str, Any], scope: Scope, namespace: str | None,
         ) -> tuple[dict[str, str], list[str]]:
    values: dict[str, str] = {}
    unresolved: list[str] = []
    for source in container.get("envFrom") or []:
        ref = (source.get("configMapRef") or {}).get("name")
        config_map = scope.find("ConfigMap", str(ref), namespace) if ref else None
        if config_map is not None:
            prefix = str(source.get("prefix", ""))
            data = config_map.get("data") or {}
            values.update({prefix + str(k): str(v) for k, v in data.items()})
    for item in container.get("env") or []:
        name = str(item.get("name", ""))
        if "value" in item:
            values[name] = _expand(str(item["value"]), values)
            continue
        ref = (item.get("valueFrom") or {}).get("configMapKeyRef") or {}
        config_map = scope.find("ConfigMap", str(ref.get("name")), namespace) if ref else None
        value = config_map.get("data", str(ref.get("key"))) if config_map is not None else None
        if value is None:
            unresolved.append(name)
        else:
            values[name] = str(value)
    return values, unresolved


def _expand(text: str, env: dict[str, str], shell: bool = False) -> str:
    text = _K8S_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
    if shell:
        text = _SHELL_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)
    return text


def parse_flags(argv: list[str]) -> tuple[str | None, dict[str, str | None]]:
    """(positional model, {--flag: value}) from a vLLM command line."""
    start = 0
    for i, token in enumerate(argv):
        if token == "serve" or token.endswith("vllm.entrypoints.openai.api_server"):
            start = i + 1
            break
    model: str | None = None
    flags: dict[str, str | None] = {}
    i = start
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            if model is None and not flags:
                model = token
            i += 1
            continue
        name, eq, value = token.partition("=")
        name = name.replace("_", "-")
        if eq:
            flags[name] = value
        elif name in BOOLEAN_FLAGS or name.startswith(("--no-", "--enable-", "--disable-")) or (
            i + 1 >= len(argv) or argv[i + 1].startswith("--")
        ):
            flags[name] = None
        else:
            flags[name] = argv[i + 1]
            i += 1
        i += 1
    return flags.get("--model") or model, flags


def engine_args_from_flags(flags: dict[str, str | None], problems: list[str]) -> EngineArgs:
    def number(flag: str, cast: type[int] | type[float]) -> Any:
        raw = flags.get(flag)
        if raw is None:
            return None
        try:
            return cast(raw)
        except ValueError:
            problems.append(f"{flag}={raw!r} is not a number")
            return None

    quant = flags.get("--quantization")
    return EngineArgs(
        tensor_parallel_size=number("--tensor-parallel-size", int) or 1,
        pipeline_parallel_size=number("--pipeline-parallel-size", int) or 1,
        gpu_memory_utilization=number("--gpu-memory-utilization", float) or 0.9,
        max_model_len=number("--max-model-len", int),
        max_num_seqs=number("--max-num-seqs", int),
        max_num_batched_tokens=number("--max-num-batched-tokens", int),
        dtype=flags.get("--dtype") or "auto",
        kv_cache_dtype=flags.get("--kv-cache-dtype") or "auto",
        quantization=_quantization_flag(quant),
        block_size=number("--block-size", int),
        enforce_eager="--enforce-eager" in flags,
        disable_hybrid_kv_cache_manager="--disable-hybrid-kv-cache-manager" in flags,
    )


def _quantization_flag(value: str | None) -> str | None:
    """vLLM method names -> the sizing's precision classes."""
    if value is None:
        return None
    aliases = {"fp8": "fp8", "ptpc_fp8": "fp8", "modelopt": "fp8", "fbgemm_fp8": "fp8",
               "mxfp4": "mxfp4", "awq": "int4", "awq_marlin": "int4", "gptq": "int4",
               "gptq_marlin": "int4", "bitsandbytes": "int4", "experts_int8": "int8",
               "int8": "int8", "int4": "int4", "none": "none"}
    return aliases.get(value.lower(), value.lower())


# ---------------------------------------------------------------- pod-level facts


def _gpu_limit(container: dict[str, Any]) -> int | None:
    resources = container.get("resources") or {}
    for section in ("limits", "requests"):
        value = (resources.get(section) or {}).get("nvidia.com/gpu")
        if value is not None:
            try:
                return int(str(value))
            except ValueError:
                return None
    return None


def _cache_volume(resource: Resource, container: dict[str, Any], env: dict[str, str],
                  scope: Scope) -> CacheVolume:
    spec_path = pod_spec_path(resource) or ()
    pod = resource.get(*spec_path) or {}
    cache_path = env.get("HF_HOME") or env.get("HF_HUB_CACHE") or HF_CACHE_DEFAULT
    mounts = container.get("volumeMounts") or []
    mount = next((m for m in mounts if m.get("mountPath") not in ("/", None)
                  and cache_path.startswith(str(m["mountPath"]).rstrip("/"))), None)
    if mount is None:
        mount = next((m for m in mounts if re.search(r"huggingface|model|cache",
                                                      str(m.get("mountPath", "")))), None)
    if mount is None:
        return CacheVolume("none")
    volumes: list[dict[str, Any]] = pod.get("volumes") or []
    volume = next((v for v in volumes if v.get("name") == mount.get("name")), {})
    path = str(mount.get("mountPath"))
    if "emptyDir" in volume:
        return CacheVolume("emptyDir", path)
    if "hostPath" in volume:
        return CacheVolume("hostPath", path)
    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
    if claim is None:
        templates = resource.get("spec", "volumeClaimTemplates") or []
        template = next((t for t in templates if (t.get("metadata") or {}).get("name")
                         == mount.get("name")), None)
        if template is None:
            return CacheVolume("none", path)
        return _pvc_volume(template, str(mount.get("name")), path, scope, resource.namespace)
    pvc = scope.find("PersistentVolumeClaim", str(claim), resource.namespace)
    return _pvc_volume(pvc.doc if pvc else {}, str(claim), path, scope, resource.namespace)


def _pvc_volume(pvc: dict[str, Any], claim: str, path: str, scope: Scope,
                namespace: str | None) -> CacheVolume:
    class_name = (pvc.get("spec") or {}).get("storageClassName")
    storage_class = scope.find("StorageClass", str(class_name)) if class_name else None
    if storage_class is None and class_name is None:
        storage_class = next((sc for sc in scope.of_kind("StorageClass") if sc.annotations.get(
            "storageclass.kubernetes.io/is-default-class") == "true"), None)
    params = (storage_class.get("parameters") or {}) if storage_class else {}
    throughput = params.get("throughput")
    return CacheVolume(
        "pvc", path, claim=claim,
        storage_class=str(class_name or (storage_class.name if storage_class else "")) or None,
        volume_type=str(params.get("type")) if params.get("type") else None,
        throughput_mib_s=float(throughput) if throughput else None,
    )


def _workload(resource: Resource, path: tuple[str | int, ...], container: dict[str, Any],
              scope: Scope) -> VllmWorkload:
    env, unresolved = _env(container, scope, resource.namespace)
    shell = "-c" in [str(x) for x in container.get("command") or []]
    argv = [_expand(token, env, shell) for token in _argv(container)]
    model, flags = parse_flags(argv)
    line = " ".join(argv)
    problems = [f"$({name}) in the command line is not resolvable from the manifests"
                for name in unresolved if f"$({name})" in line or f"${name}" in line]
    if model and "$" in model:
        problems.append(f"model reference {model!r} could not be resolved")
    model = resource.annotations.get(_MODEL_ANNOTATION) or model
    image = str(container.get("image", ""))
    spec = resource.get(*(pod_spec_path(resource) or ())) or {}
    return VllmWorkload(
        resource=resource, container=str(container.get("name", "")), container_path=path,
        image=image, version=version_from_image(image), model=model, flags=flags,
        engine_args=engine_args_from_flags(flags, problems), gpus=_gpu_limit(container),
        scheduling=PodScheduling.from_pod_spec(spec),
        probes={k: p for k in ("startupProbe", "livenessProbe", "readinessProbe")
                if (p := Probe.from_container(container, k)) is not None},
        cache=_cache_volume(resource, container, env, scope),
        **replica_range(resource, scope),
        problems=problems,
    )


def replica_range(resource: Resource, scope: Scope) -> dict[str, int]:
    """replicas / max_replicas: the workload's own, or the autoscaler's bounds."""
    fixed = int(resource.get("spec", "replicas", default=1) or 1)
    for scaler in scope.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
        target = scaler.get("spec", "scaleTargetRef", default={}) or {}
        kind = target.get("kind", "Deployment")
        if (target.get("name") != resource.name or kind != resource.kind
                or scaler.namespace != resource.namespace):
            continue
        if scaler.kind == "HorizontalPodAutoscaler":
            low, high = scaler.get("spec", "minReplicas", default=1), scaler.get(
                "spec", "maxReplicas", default=fixed)
        else:  # KEDA defaults: https://keda.sh/docs/latest/reference/scaledobject-spec/
            low, high = scaler.get("spec", "minReplicaCount", default=0), scaler.get(
                "spec", "maxReplicaCount", default=100)
        return {"replicas": int(low), "max_replicas": max(int(low), int(high))}
    return {"replicas": fixed, "max_replicas": fixed}


def find_vllm_workloads(scope: Scope) -> list[VllmWorkload]:
    """Every vLLM server container in a scope (init containers excluded)."""
    found = []
    for resource in scope.resources:
        for path, container in iter_containers(resource):
            if "initContainers" in path or not is_vllm_container(container):
                continue
            found.append(_workload(resource, path, container, scope))
    return found

"""The model folder `overlays/<env>/models/<name>/`, in the style of the hand-written ones: a
kustomization (the gateway's namespace and environment label, base + nameSuffix + instance
label + GPU-family component) and a `model.yaml` strategic-merge patch that declares the model
and carries every sized value with its reason. The folder is its own sync unit (sync.py).

Everything that is not sized here (flags such as --port, the probe period, the container,
volume and HPA names, the cache volume's index) is read from the base at generation time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vllm_gitops.load import source_documents
from vllm_gitops.newmodel.choose import Choice
from vllm_gitops.newmodel.inputs import Request, canonical_command
from vllm_gitops.newmodel.repo import COMPONENTS, VLLM_BASE, Base, Gateway
from vllm_gitops.newmodel.sync import SyncFile
from vllm_gitops.routes import ROUTE_ANNOTATION, ROUTES_FILE
from vllm_gitops.sizing.karpenter import NodeClass, allocatable
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.quantity import GIB
from vllm_gitops.sizing.traffic import RequestShape
from vllm_gitops.sizing.weights import checkpoint_bytes, total_params
from vllm_gitops.sizing.workload import parse_flags
from vllm_gitops.topology import reasoning_parser_for

AUTOSCALING_COMPONENT = "autoscaling-hpa"
GPU_RESOURCE = "nvidia.com/gpu"
# Flags that describe one particular model (parsers, chat template...): the base's values are
# the guide's Qwen3 ones, so a new model starts without them.
MODEL_SPECIFIC_FLAGS = ("--model", "--served-model-name", "--reasoning-parser",
                        "--tool-call-parser", "--enable-auto-tool-choice", "--chat-template",
                        "--tokenizer", "--trust-remote-code", "--quantization")
CACHE_HEADROOM = 1.10  # + 10 % of the weights (tokenizer, config, partial downloads)
CACHE_EXTRA_GIB = 5.0  # torch.compile / CUDA-graph caches (VLLM_CACHE_ROOT on the volume)
MIN_PROBE_S = 600  # a Hub download can be slower than the estimate: never below 10 minutes


@dataclass(frozen=True)
class Sizing:
    gpus: int
    cpu: int
    memory_gib: int
    shm_gib: int
    cache_gib: int
    probe_period_s: int
    probe_failure_threshold: int
    probe_delay_s: int  # the base's startupProbe.initialDelaySeconds
    alloc_cpu: float
    alloc_memory_gib: float

    @property
    def probe_budget_s(self) -> int:
        return self.probe_period_s * self.probe_failure_threshold

    @property
    def startup_s(self) -> int:
        """How long the startup probe lets the container start before it is restarted."""
        return self.probe_delay_s + self.probe_budget_s


def size(choice: Choice, model: ModelSpec, base: Base, node_class: NodeClass | None) -> Sizing:
    """Pod resources from the instance's allocatable, volumes and probe from the engine."""
    # Fit the smallest node the pod may land on (g5 and g6 sizes differ slightly).
    nodes = [allocatable(i, node_class) for i in choice.siblings or (choice.instance,)]
    alloc_cpu = min(a["cpu"] for a in nodes)
    alloc_mem = min(a["memory"] for a in nodes) / GIB
    # Leave room for the node's DaemonSets (device plugin, DCGM exporter, CNI, CSI, logging).
    cpu = max(1, math.floor(alloc_cpu - max(1.0, 0.10 * alloc_cpu)))
    memory = max(4, math.floor(alloc_mem - max(4.0, 0.15 * alloc_mem)))
    gpus = choice.gpus
    # /dev/shm: vLLM's API-server <-> engine queues alone at TP 1; NCCL buffers across GPUs.
    shm = 4 if gpus == 1 else 16 if gpus <= 4 else 8 * gpus
    shm = max(1, min(shm, memory // 4))
    weights_gib = checkpoint_bytes(model) / GIB
    cache = max(20, math.ceil((weights_gib * CACHE_HEADROOM + CACHE_EXTRA_GIB) / 10) * 10)
    probe = base.container.get("startupProbe") or {}
    period = int(probe.get("periodSeconds", 10))
    startup = choice.result.startup
    budget = max(MIN_PROBE_S, startup.recommended_probe_s if startup else MIN_PROBE_S)
    return Sizing(gpus, cpu, memory, shm, cache, period, math.ceil(budget / period),
                  int(probe.get("initialDelaySeconds", 0)), alloc_cpu, alloc_mem)


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as this exact string."""
    plain = yaml.safe_load(value) if value else None
    return value if plain == value and value.strip() == value else yaml.safe_dump(
        value, default_style='"').strip().removesuffix("\n...")


def _rel(folder: str, target: str) -> str:
    return Path(os.path.relpath(target, folder)).as_posix()


def folder_of(req: Request) -> str:
    return f"overlays/{req.env}/models/{req.name}"


def models_list(env: str) -> str:
    """The kustomization listing every model folder of the environment (nothing syncs it)."""
    return f"overlays/{env}/models/kustomization.yaml"


def routes_file(env: str) -> str:
    return f"overlays/{env}/apps/{ROUTES_FILE}"


def vllm_args(req: Request, choice: Choice, base: Base) -> list[str]:
    """The base's command line with this model's id, names and sized flags."""
    raw = [str(a) for a in base.container.get("args") or []]
    _, flags = parse_flags(raw)
    args = choice.result.memory.args
    sized: dict[str, str] = {
        "--tensor-parallel-size": str(args.tensor_parallel_size),
        "--max-model-len": str(choice.max_model_len),
        "--max-num-seqs": str(choice.max_num_seqs),
        "--max-num-batched-tokens": str(choice.max_num_batched_tokens),
        "--dtype": args.dtype,
    }
    if args.pipeline_parallel_size > 1:
        sized["--pipeline-parallel-size"] = str(args.pipeline_parallel_size)
    parser = reasoning_parser_for(req.model_id)
    if parser:  # the thinking goes to `reasoning`, not into the answer
        sized["--reasoning-parser"] = parser
    out = [req.model_id, f"--served-model-name={req.served_model_name}"]
    for flag, given in flags.items():
        if flag in MODEL_SPECIFIC_FLAGS:
            continue
        value = sized.pop(flag, given)
        out.append(flag if value is None else f"{flag}={value}")
    out += [f"{flag}={value}" for flag, value in sized.items()]
    return out


def kustomization_text(req: Request, choice: Choice, base: Base, sizing: Sizing,
                       gateway: Gateway, synced_by: list[SyncFile]) -> str:
    folder = folder_of(req)
    family = choice.offer.family
    suffix_note = f"{base.statefulset.name} -> {base.statefulset.name}-{req.name}"
    lines = [
        *_sync_unit_lines(req, synced_by),
        f"# Renders StatefulSet/Service \"{base.statefulset.name}-{req.name}\", its headless "
        "Service and PDB;",
        f"# LiteLLM publishes it as \"{req.route}\" (see {_rel(folder, routes_file(req.env))}).",
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        f"# The environment's namespace (the LiteLLM gateway's, see "
        f"{_rel(folder, gateway.folder)}) and label.",
        f"namespace: {_scalar(gateway.namespace)}",
        "resources:",
        f"  - {_rel(folder, VLLM_BASE)}",
        f"# Makes every object name unique per model: {suffix_note} (also rewrites",
        "# serviceName and the HPA target).",
        f"nameSuffix: -{req.name}",
        "# Makes the selectors unique per model, so two models' Services never pick each",
        "# other's pods.",
        "labels:",
        "  - pairs:",
        f"      app.kubernetes.io/instance: {req.name}",
        "    includeSelectors: true",
        *_labels_lines(gateway.labels),
        "components:",
        f"  # GPU family {family.component} (NodePool {family.nodepool}): "
        f"{choice.instance.name}; model.yaml",
        f"  # sets the GPU count ({choice.gpus}), CPU, memory and /dev/shm for that node.",
        f"  - {_rel(folder, f'{COMPONENTS}/{family.component}')}",
    ]
    if req.autoscaled:
        lines += [f"  # Scale {req.min_replicas}..{req.max_replicas} replicas on the request "
                  "queue (bounds set in model.yaml).",
                  f"  - {_rel(folder, f'{COMPONENTS}/{AUTOSCALING_COMPONENT}')}"]
    lines += ["# THE model declaration: model id, served name, parallelism, context, route.",
              "patches:", "  - path: model.yaml"]
    lines += _cache_patch(base, sizing.cache_gib)
    return "\n".join(lines) + "\n"


def _labels_lines(labels: dict[str, str]) -> list[str]:
    """A `labels` entry without selectors (selectors of running objects cannot change)."""
    pairs = [f"      {_scalar(key)}: {_scalar(value)}" for key, value in labels.items()]
    return ["  - pairs:", *pairs] if pairs else []


def _sync_unit_lines(req: Request, synced_by: list[SyncFile]) -> list[str]:
    """The header: which sync objects deploy the folder, and the command that wrote it."""
    if not synced_by:
        return ["# One vLLM model = one directory = one sync unit (clusters/"
                f"{req.env}/ has no Flux or Argo CD", "# entry point to deploy it), generated by",
                f"#   {canonical_command(req)}"]
    return ["# One vLLM model = one directory = one sync unit, deployed by",
            *[f"#   {unit.tool.label} {unit.name} ({unit.path})" for unit in synced_by],
            "# and generated by", f"#   {canonical_command(req)}"]


def _cache_patch(base: Base, cache_gib: int) -> list[str]:
    """A JSON patch of the cache volume's size (a strategic merge would replace the whole
    volumeClaimTemplates list, copying the base's storage class into every model)."""
    index = cache_template_index(base)
    if index is None:
        return []
    return [
        f"  # Model cache volume: {cache_gib}Gi for this checkpoint (one field patched, so the",
        "  # base's storage class and access modes still apply).",
        "  - target:",
        "      group: apps",
        "      kind: StatefulSet",
        f"      name: {base.statefulset.name}",
        "    patch: |-",
        "      - op: replace",
        f"        path: /spec/volumeClaimTemplates/{index}/spec/resources/requests/storage",
        f"        value: {cache_gib}Gi",
    ]


def cache_template_index(base: Base) -> int | None:
    """Which volumeClaimTemplate holds the Hugging Face cache (the HF_HOME mount)."""
    templates = base.statefulset.get("spec", "volumeClaimTemplates", default=[]) or []
    claim = base.workload.cache.claim
    for index, template in enumerate(templates):
        if isinstance(template, dict) and (template.get("metadata") or {}).get("name") == claim:
            return index
    return 0 if len(templates) == 1 else None


def shm_volume(base: Base) -> str | None:
    """The base's /dev/shm volume (an emptyDir in memory)."""
    mounts = {m.get("mountPath"): m.get("name") for m in base.container.get("volumeMounts") or []}
    name = mounts.get("/dev/shm")
    for volume in base.pod_spec.get("volumes") or []:
        if volume.get("name") == name and "emptyDir" in volume:
            return str(name)
    return None


def hpa_name(root: Path) -> str | None:
    path = root / COMPONENTS / AUTOSCALING_COMPONENT
    for file in sorted(path.glob("*.yaml")):
        for doc in source_documents(file):
            data = doc.data
            if isinstance(data, dict) and data.get("kind") == "HorizontalPodAutoscaler":
                return str((data.get("metadata") or {}).get("name", ""))
    return None


def model_text(req: Request, choice: Choice, model: ModelSpec, base: Base, sizing: Sizing,
               root: Path) -> str:
    result = choice.result
    mem = result.memory
    stage = mem.binding_stage
    inst = choice.instance
    startup = result.startup
    shape = RequestShape()
    header = [
        f"# Model declaration for {req.env}, generated by `tools/new-model`: {req.model_id}",
        f"# ({total_params(model) / 1e9:.1f}B parameters, {checkpoint_bytes(model) / GIB:.1f} GiB "
        f"checkpoint) on {inst.name} ({inst.gpus} x {inst.gpu.key}, "
        f"${inst.usd_per_hour or 0:.2f}/h), tensor parallel {choice.tensor_parallel_size}.",
        f"# Sizing (sizing engine, vLLM {mem.version}): "
        f"{stage.weights_gib if stage else 0:.1f} GiB of weights per GPU leave "
        f"{stage.available_kv_cache_gib if stage else 0:.1f} GiB",
        f"# of KV cache per GPU = {mem.kv_cache_tokens:,} tokens: --max-model-len="
        f"{choice.max_model_len} fits; --max-num-seqs={choice.max_num_seqs} is what",
        f"# the cache holds of typical {shape.prompt_tokens}+{shape.output_tokens}-token "
        "requests (not worst-case full-context ones).",
        f"# Check it: tools/plan overlays/{req.env}; change it: rerun tools/new-model "
        "with --force.",
    ]
    container = base.workload.container
    spec_lines = [
        "apiVersion: apps/v1",
        "kind: StatefulSet",
        "metadata:",
        f"  name: {base.statefulset.name}",
        "  annotations:",
        f"    {ROUTE_ANNOTATION}: {_scalar(req.route)}",
        "spec:",
    ]
    if not req.autoscaled:
        spec_lines.append(f"  replicas: {req.min_replicas}")
    spec_lines += ["  template:", "    spec:"]
    if req.instance_type:
        spec_lines += ["      # Pinned by --instance-type.", "      nodeSelector:",
                       f"        node.kubernetes.io/instance-type: {inst.name}"]
    spec_lines += ["      containers:", f"        - name: {container}", "          args:"]
    spec_lines += [f"            - {_scalar(arg)}" for arg in vllm_args(req, choice, base)]
    names = " / ".join(i.name for i in choice.siblings or (inst,))
    spec_lines += _resources_lines(sizing, names)
    if startup is not None:
        spec_lines += [
            f"          # Cold start ~{startup.cold_s:.0f} s on an empty cache (download "
            f"{startup.download_s:.0f} s at {startup.download_mb_s:.0f} MB/s, load",
            f"          # {startup.load_s:.0f} s, compile + CUDA graphs "
            f"{startup.compile_s + startup.cudagraph_s:.0f} s); budget "
            f"{sizing.probe_period_s} s x {sizing.probe_failure_threshold} = "
            f"{sizing.probe_budget_s} s (x1.25, >= {MIN_PROBE_S} s).",
        ]
    spec_lines += ["          startupProbe:",
                   f"            failureThreshold: {sizing.probe_failure_threshold}"]
    shm = shm_volume(base)
    if shm:
        spec_lines += [
            "      volumes:",
            f"        # /dev/shm in memory: {sizing.shm_gib}Gi for {sizing.gpus} GPU(s) "
            "(counts against the memory limit).",
            f"        - name: {shm}",
            "          emptyDir:",
            "            medium: Memory",
            f"            sizeLimit: {sizing.shm_gib}Gi",
        ]
    text = "\n".join(header + spec_lines) + "\n"
    hpa = hpa_name(root) if req.autoscaled else None
    if hpa:
        text += "\n".join(_hpa_lines(req, choice, hpa)) + "\n"
    return text


def _resources_lines(sizing: Sizing, instances: str) -> list[str]:
    values = [f'cpu: "{sizing.cpu}"', f"memory: {sizing.memory_gib}Gi",
              f'{GPU_RESOURCE}: "{sizing.gpus}"']
    return [
        "          # requests = limits (Guaranteed QoS), sized for every node it may land on",
        f"          # ({instances}): the smallest allocatable,",
        f"          # {sizing.alloc_cpu:.2f} CPU / {sizing.alloc_memory_gib:.0f} GiB, leaves "
        f"{sizing.alloc_cpu - sizing.cpu:.1f} CPU and "
        f"{sizing.alloc_memory_gib - sizing.memory_gib:.0f} GiB for DaemonSets.",
        f"          # The memory includes {sizing.shm_gib}Gi of /dev/shm (tmpfs).",
        "          resources:",
        "            requests:",
        *[f"              {v}" for v in values],
        "            limits:",
        *[f"              {v}" for v in values],
    ]


def _hpa_lines(req: Request, choice: Choice, name: str) -> list[str]:
    price = choice.instance.usd_per_hour or 0.0
    limit = choice.offer.pool.limits.get(GPU_RESOURCE)
    share = f" of NodePool {choice.offer.pool.name}'s {limit:.0f}" if limit else ""
    return [
        "---",
        f"# Replicas are owned by the HPA (component {AUTOSCALING_COMPONENT}): "
        f"{req.min_replicas}..{req.max_replicas} replicas =",
        f"# {req.min_replicas * choice.gpus}-{req.max_replicas * choice.gpus} GPUs{share}. "
        f"Cost: ${req.min_replicas * price:.2f}-{req.max_replicas * price:.2f}/h.",
        "apiVersion: autoscaling/v2",
        "kind: HorizontalPodAutoscaler",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  minReplicas: {req.min_replicas}",
        f"  maxReplicas: {req.max_replicas}",
    ]


def model_files(req: Request, choice: Choice, model: ModelSpec, base: Base, sizing: Sizing,
                root: Path, gateway: Gateway, synced_by: list[SyncFile]) -> dict[str, str]:
    """{repo-relative path: text} of the model folder, carrying `sizing`."""
    folder = folder_of(req)
    files = {f"{folder}/kustomization.yaml": kustomization_text(req, choice, base, sizing,
                                                                gateway, synced_by),
             f"{folder}/model.yaml": model_text(req, choice, model, base, sizing, root)}
    for path, text in files.items():
        _check_yaml(path, text)
    return files


def _check_yaml(path: str, text: str) -> None:
    docs: list[Any] = list(yaml.safe_load_all(text))
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise AssertionError(f"generated {path} is not a YAML mapping")

"""The sizing engine's public API: plan one configuration, recommend hardware, plan manifests.

    plan(model, gpu, EngineArgs(...), version, instance=...) -> PlanResult
    recommend(model, EngineArgs(...), version) -> list[Recommendation]
    plan_workload(workload, scope) -> WorkloadPlan      (a vLLM Deployment found in manifests)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import (
    Gpu,
    InstanceType,
    find_instance,
    gpu_by_label_memory,
    instance_catalog,
)
from vllm_gitops.sizing.karpenter import (
    DaemonSetPod,
    KarpenterChoice,
    NodeClass,
    NodePool,
    simulate_karpenter,
)
from vllm_gitops.sizing.memo import ValueMemo, value_key
from vllm_gitops.sizing.memory import (
    Failure,
    MemoryPlan,
    evaluate,
    kv_bytes_per_token,
    sharding_failure,
)
from vllm_gitops.sizing.models import ModelSpec, load_model
from vllm_gitops.sizing.quantity import GIB
from vllm_gitops.sizing.startup import (
    GP3_DEFAULT_MIB_S,
    INSTANCE_STORE_MIB_S,
    StartupEstimate,
    Storage,
    estimate_startup,
)
from vllm_gitops.sizing.traffic import Concurrency, RequestShape, concurrency_for
from vllm_gitops.sizing.version import DEFAULT_VERSION, VllmVersion, parse_version
from vllm_gitops.sizing.weights import checkpoint_bytes, total_params
from vllm_gitops.sizing.workload import VllmWorkload, find_vllm_workloads


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class PlanResult:
    """Everything the engine predicts for one model on one GPU type with one set of flags."""

    model: ModelSpec
    gpu: Gpu
    memory: MemoryPlan
    instance: InstanceType | None = None
    startup: StartupEstimate | None = None
    notes: list[str] = field(default_factory=list)
    concurrency: Concurrency | None = None  # for the expected request shape (plan(traffic=))

    @property
    def starts(self) -> bool:
        return self.memory.starts

    @property
    def failure(self) -> Failure | None:
        return self.memory.failure

    @property
    def usd_per_hour(self) -> float | None:
        return self.instance.usd_per_hour if self.instance else None

    @property
    def weights_gib(self) -> float | None:
        stage = self.memory.binding_stage
        return max(s.weights_gib for s in self.memory.stages) if stage else None

    @property
    def available_kv_cache_gib(self) -> float | None:
        stage = self.memory.binding_stage
        return stage.available_kv_cache_gib if stage else None

    @property
    def warnings(self) -> list[str]:
        return [*self.memory.warnings, *self.notes]

    def to_dict(self) -> dict[str, Any]:
        mem, args = self.memory, self.memory.args
        stage = mem.binding_stage
        has_kv = stage is not None and stage.available_kv_cache_gib > 0
        return {
            "model": self.model.model_id,
            "gpu": self.gpu.key,
            "gpu_memory_gib": self.gpu.torch_total_gib,
            "gpus": args.world_size,
            "instance_type": self.instance.name if self.instance else None,
            "usd_per_hour": self.usd_per_hour,
            "vllm_version": str(mem.version),
            "engine": mem.version.engine,
            "starts": self.starts,
            "failure": self.failure.to_dict() if self.failure else None,
            "weights_gib": _round(self.weights_gib),
            "available_kv_cache_gib": _round(self.available_kv_cache_gib),
            "kv_bytes_per_token": kv_bytes_per_token(self.model, args),
            "kv_cache_blocks": mem.num_blocks if has_kv else None,
            "kv_cache_tokens": mem.kv_cache_tokens if has_kv else None,
            "max_concurrency": _round(mem.max_concurrency) if has_kv else None,
            "max_model_len": args.max_model_len,
            "longest_context": mem.longest_context if stage else None,
            "startup_seconds": _round(self.startup.cold_s, 0) if self.startup else None,
            "startup": self.startup.to_dict() if self.startup else None,
            "engine_args": args.to_dict(),
            "concurrency": self.concurrency.to_dict() if self.concurrency else None,
            "memory_per_gpu": _memory_dict(mem),
            "warnings": self.warnings,
        }


def _memory_dict(mem: MemoryPlan) -> dict[str, Any] | None:
    stage = mem.binding_stage
    if stage is None:
        return None
    return {
        "pipeline_stage": stage.stage,
        "torch_total_gib": stage.total_gib,
        "requested_gib": _round(stage.requested_gib),
        "weights_gib": _round(stage.weights_gib),
        "peak_activation_gib": _round(stage.activation_gib),
        "non_torch_gib": _round(stage.non_torch_gib),
        "cudagraph_gib": _round(stage.cudagraph_gib),
        "cudagraph_in_budget": stage.cudagraph_in_budget,
        "available_kv_cache_gib": _round(stage.available_kv_cache_gib),
        "warmup_needed_gib": _round(mem.warmup_needed_gib),
        "warmup_headroom_gib": _round(mem.warmup_headroom_gib),
    }


def storage_for(instance: InstanceType | None, volume_mib_s: float | None = None,
                volume: str = "gp3") -> Storage:
    return Storage(
        volume_mib_s=volume_mib_s or (INSTANCE_STORE_MIB_S if volume == "instance-store"
                                      else GP3_DEFAULT_MIB_S),
        volume=volume,
        network_gbps=instance.network_gbps if instance else None,
        ebs_mbps=instance.ebs_mbps if instance else None,
    )


def plan(
    model: ModelSpec,
    gpu: Gpu,
    engine_args: EngineArgs,
    version: VllmVersion,
    instance: InstanceType | None = None,
    gpus_available: int | None = None,
    storage: Storage | None = None,
    traffic: RequestShape | None = None,
) -> PlanResult:
    """Will it start, how much KV cache and concurrency, how long to start, what it costs.
    With `traffic` (the expected request shape) also how many such requests run at once and
    the --max-num-seqs / --max-num-batched-tokens that let them (`result.concurrency`)."""
    if instance is not None and gpus_available is None:
        gpus_available = instance.gpus
    key = value_key(model, gpu, engine_args, version, instance, gpus_available, storage, traffic)
    return _PLANS.get(key, lambda: _plan(model, gpu, engine_args, version, instance,
                                         gpus_available, storage, traffic))


_PLANS = ValueMemo()  # the same server is planned in every scope that holds it


def _plan(model: ModelSpec, gpu: Gpu, engine_args: EngineArgs, version: VllmVersion,
          instance: InstanceType | None, gpus_available: int | None, storage: Storage | None,
          traffic: RequestShape | None) -> PlanResult:
    memory = evaluate(model, gpu, engine_args, version, gpus_available)
    result = PlanResult(model=model, gpu=gpu, memory=memory, instance=instance)
    if memory.stages:
        weights = max(s.weights_gib for s in memory.stages)
        result.startup = estimate_startup(model, memory.args, version,
                                          storage or storage_for(instance), weights)
    if traffic is not None:
        result.concurrency = concurrency_for(model, gpu, engine_args, version, memory, traffic)
    return result


# ---------------------------------------------------------------- recommendation


@dataclass(frozen=True)
class Recommendation:
    instance: InstanceType
    tensor_parallel_size: int
    result: PlanResult

    @property
    def fits_requested(self) -> bool:
        return self.result.starts

    def to_dict(self) -> dict[str, Any]:
        out = self.result.to_dict()
        out["tensor_parallel_size"] = self.tensor_parallel_size
        out["fits_requested_context"] = self.fits_requested
        return out


def legal_tp_sizes(model: ModelSpec, max_gpus: int = 8) -> list[int]:
    """TP sizes vLLM accepts for this model (heads, KV heads, padded vocab, MLP widths)."""
    return [tp for tp in range(1, max_gpus + 1)
            if not model.num_attention_heads % tp and sharding_failure(model, tp) is None]


def _cheapest_per_shape() -> list[InstanceType]:
    """For each (GPU model, GPU count) the cheapest priced instance type."""
    best: dict[tuple[str, int], InstanceType] = {}
    for inst in instance_catalog().values():
        if inst.usd_per_hour is None:
            continue
        key = (inst.gpu.key, inst.gpus)
        if key not in best or inst.usd_per_hour < (best[key].usd_per_hour or 0.0):
            best[key] = inst
    return list(best.values())


def recommend(model: ModelSpec, engine_args: EngineArgs, version: VllmVersion,
              ) -> list[Recommendation]:
    """Instance types and TP sizes that fit, cheapest first. Rows that start only with a
    shorter context are kept when they are cheaper than every row that fits (a trade-off
    worth showing), or when nothing fits the requested context."""
    legal = legal_tp_sizes(model)
    rows = []
    for inst in _cheapest_per_shape():
        tp = max((t for t in legal if t <= inst.gpus), default=None)
        if tp is None:
            continue
        args = replace(engine_args, tensor_parallel_size=tp, pipeline_parallel_size=1)
        result = plan(model, inst.gpu, args, version, instance=inst)
        if result.memory.stages and result.memory.longest_context > 0:
            rows.append(Recommendation(inst, tp, result))
    fitting = [r for r in rows if r.fits_requested]
    cheapest_fit = min((r.instance.usd_per_hour or 0.0 for r in fitting), default=float("inf"))
    shorter = [r for r in rows if _starts_shorter(r)
               and (r.instance.usd_per_hour or 0.0) < cheapest_fit]
    chosen = fitting + shorter
    chosen.sort(key=lambda r: (r.instance.usd_per_hour or 0.0, r.instance.gpus))
    return chosen


def _starts_shorter(rec: Recommendation) -> bool:
    failure = rec.result.failure
    return failure is not None and failure.id == "max_model_len_exceeds_kv_cache"


# ---------------------------------------------------------------- manifests (tools/plan PATH)


@dataclass
class WorkloadPlan:
    scope: str
    workload: VllmWorkload
    result: PlanResult | None = None
    karpenter: KarpenterChoice | None = None
    recommendations: list[Recommendation] = field(default_factory=list)
    hardware_source: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        wl = self.workload
        location = wl.location
        out: dict[str, Any] = {
            "scope": self.scope,
            "resource": wl.ref.to_dict(),
            "container": wl.container,
            "file": location.file if location else None,
            "line": location.line if location else None,
            "image": wl.image,
            "model": wl.model,
            "replicas": wl.replicas,
            "max_replicas": wl.max_replicas,
            "hardware_source": self.hardware_source,
            "error": self.error,
            "notes": self.notes,
        }
        if self.result:
            out.update(self.result.to_dict())
            out["warnings"] = [*self.result.warnings, *self.notes]
        if self.karpenter:
            out["karpenter"] = self.karpenter.to_dict()
        if self.recommendations:
            out["recommendations"] = [r.to_dict() for r in self.recommendations[:5]]
        return out


def hardware_from_selectors(wl: VllmWorkload) -> tuple[Gpu | None, InstanceType | None, str]:
    """The GPU (and instance type) the pod's node selection names with one value, and which
    selector said so; ToolError for an instance type the catalog does not know."""
    selected: dict[str, set[str]] = {k: {v} for k, v in wl.scheduling.node_selector.items()}
    for req in wl.scheduling.required_term:
        if req.operator == "In" and len(req.values) == 1:
            selected.setdefault(req.key, set()).update(req.values)
    types = selected.get("node.kubernetes.io/instance-type", set())
    if len(types) == 1:
        inst = find_instance(next(iter(types)))
        return inst.gpu, inst, f"nodeSelector instance type {inst.name}"
    names = selected.get("karpenter.k8s.aws/instance-gpu-name", set())
    if len(names) == 1:
        gpu = gpu_by_label_memory(next(iter(names)), None)
        if gpu is not None:
            return gpu, None, f"nodeSelector GPU {gpu.key}"
    return None, None, ""


def _storage(wl: VllmWorkload, instance: InstanceType | None,
             node_class: NodeClass | None) -> Storage:
    cache = wl.cache
    if cache.kind == "pvc":
        return storage_for(instance, cache.throughput_mib_s, cache.volume_type or "gp3")
    if node_class is not None and node_class.raid0_instance_store:
        return storage_for(instance, None, "instance-store")
    throughput = node_class.root_throughput_mib_s if node_class else None
    return storage_for(instance, throughput, "gp3")


def _probe_notes(wl: VllmWorkload, startup: StartupEstimate | None) -> list[str]:
    if startup is None:
        return []
    budget = wl.kill_budget_s
    if budget is None:
        return ["no startupProbe or livenessProbe: nothing kills a slow start, but nothing "
                f"detects a hung one either; a startupProbe of ~{startup.recommended_probe_s} s "
                "fits this model"]
    kind = "startupProbe" if "startupProbe" in wl.probes else "livenessProbe"
    if budget < startup.cold_s:
        return [f"{kind} allows {budget:.0f} s but a cold start takes ~{startup.cold_s:.0f} s "
                f"(warm ~{startup.warm_s:.0f} s): the kubelet will restart the pod while it "
                f"loads; allow >= {startup.recommended_probe_s} s"]
    return []


def scope_daemonsets(scope: Scope) -> list[DaemonSetPod]:
    """The DaemonSets of a rendered scope, for simulate_karpenter(daemonsets=...)."""
    return [DaemonSetPod.from_doc(r.doc) for r in scope.of_kind("DaemonSet")]


def plan_workload(wl: VllmWorkload, scope: Scope, extra_catalogs: list[Path] | None = None,
                  default_version: str = DEFAULT_VERSION,
                  traffic: RequestShape | None = None) -> WorkloadPlan:
    """Plan one vLLM workload of a rendered scope; `traffic` defaults to RequestShape()."""
    out = WorkloadPlan(scope=scope.name, workload=wl, notes=list(wl.problems))
    if not wl.model:
        out.error = "cannot tell which model this vLLM container serves (no positional model " \
                    "or --model flag)"
        return out
    try:
        model = load_model(wl.model, extra_catalogs)
    except ToolError as exc:
        out.error = str(exc)
        return out
    version = wl.version or parse_version(default_version)
    if wl.version is None:
        out.notes.append(f"image {wl.image!r} pins no vLLM version; assumed {version}")
    pools = [NodePool.from_doc(r.doc) for r in scope.of_kind("NodePool")
             if r.api_version.startswith("karpenter.sh/")]
    classes = {nc.name: nc for nc in (NodeClass.from_doc(r.doc)
                                      for r in scope.of_kind("EC2NodeClass"))}
    gpu, instance, source = hardware_from_selectors(wl)
    node_class = None
    if pools:
        out.karpenter = simulate_karpenter(wl.scheduling, pools, classes,
                                           instance_catalog().values(),
                                           daemonsets=scope_daemonsets(scope))
        if out.karpenter.chosen:
            instance = out.karpenter.chosen.instance
            gpu, source = instance.gpu, f"Karpenter NodePool {out.karpenter.chosen.nodepool}"
            pool = next(p for p in pools if p.name == out.karpenter.chosen.nodepool)
            node_class = classes.get(pool.node_class or "")
        else:
            out.notes.append(f"Karpenter cannot launch a node for this pod: {out.karpenter.reason}")
    out.hardware_source = source
    if gpu is None:
        out.notes.append("no GPU known for this pod: recommending instance types instead")
        out.recommendations = recommend(model, wl.engine_args, version)
        return out
    out.result = plan(model, gpu, wl.engine_args, version, instance=instance,
                      gpus_available=wl.gpus, storage=_storage(wl, instance, node_class),
                      traffic=traffic or RequestShape())
    out.notes.extend(_probe_notes(wl, out.result.startup))
    return out


def plan_scopes(paths: list[Path], repo_root: Path,
                extra_catalogs: list[Path] | None = None,
                traffic: RequestShape | None = None) -> list[WorkloadPlan]:
    """`tools/plan PATH`: render the targets and plan every vLLM workload found."""
    from vllm_gitops.pipeline import load_scopes  # the lead's renderer; imported lazily

    plans: list[WorkloadPlan] = []
    for scope in load_scopes(paths, repo_root):
        plans.extend(plan_workload(wl, scope, extra_catalogs, traffic=traffic)
                     for wl in find_vllm_workloads(scope))
    return plans


def describe_model(model: ModelSpec) -> dict[str, Any]:
    """Catalog facts, for `--format json` headers and the catalog tests."""
    return {
        "model": model.model_id,
        "architecture": model.architecture,
        "params_billion": round(total_params(model) / 1e9, 3),
        "checkpoint_gib": round(checkpoint_bytes(model) / GIB, 2),
        "layers": model.num_layers,
        "attention_heads": model.num_attention_heads,
        "kv_heads": model.num_kv_heads,
        "head_dim": model.head_dim,
        "max_model_len": model.derived_max_model_len,
        "moe_experts": model.moe.num_experts if model.moe else 0,
        "mla": model.mla is not None,
        "sliding_layers": model.layer_types.count("sliding"),
        "quantization": model.native_quantization,
        "legal_tp_sizes": legal_tp_sizes(model),
        "source": model.source,
    }


__all__ = [
    "PlanResult", "Recommendation", "WorkloadPlan", "describe_model",
    "legal_tp_sizes", "plan", "plan_scopes", "plan_workload", "recommend", "scope_daemonsets",
]

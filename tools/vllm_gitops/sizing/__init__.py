"""Sizing engine: will a model start on a GPU, with how much context and concurrency, at what
cost, and how long it takes to load. Predicts vLLM's own startup accounting offline.

Modules: models (config.json catalog), hardware (GPU / EC2 catalogs), version, engine_args,
weights, kvcache, memory (budget + every startup failure), startup (probe sizing), karpenter
(instance choice, price, DaemonSet overhead), traffic (concurrency for a request shape),
workload (vLLM servers in rendered manifests), planner (the API below), report (tools/plan
text output).

    from vllm_gitops.sizing import EngineArgs, find_gpu, load_model, parse_version, plan
    result = plan(load_model("Qwen/Qwen3-14B"), find_gpu("L40S"),
                  EngineArgs(max_model_len=32768), parse_version("0.11.0"))
    result.starts, result.failure, result.to_dict()

For manifests: `find_vllm_workloads(scope)` then `plan_workload(workload, scope)`.
"""

from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import find_gpu, find_instance
from vllm_gitops.sizing.karpenter import (
    DaemonSetPod,
    KarpenterChoice,
    NodeClass,
    NodePool,
    PodScheduling,
    simulate_karpenter,
)
from vllm_gitops.sizing.memory import Failure
from vllm_gitops.sizing.models import load_model, load_model_config
from vllm_gitops.sizing.planner import (
    PlanResult,
    Recommendation,
    WorkloadPlan,
    plan,
    plan_workload,
    recommend,
    scope_daemonsets,
)
from vllm_gitops.sizing.traffic import Concurrency, RequestShape
from vllm_gitops.sizing.version import DEFAULT_VERSION, parse_version, version_from_image
from vllm_gitops.sizing.workload import VllmWorkload, find_vllm_workloads

__all__ = [
    "DEFAULT_VERSION", "Concurrency", "DaemonSetPod", "EngineArgs", "Failure", "KarpenterChoice",
    "NodeClass", "NodePool", "PlanResult", "PodScheduling", "Recommendation", "RequestShape",
    "VllmWorkload", "WorkloadPlan", "find_gpu", "find_instance", "find_vllm_workloads",
    "load_model", "load_model_config", "parse_version", "plan", "plan_workload", "recommend",
    "scope_daemonsets", "simulate_karpenter", "version_from_image",
]

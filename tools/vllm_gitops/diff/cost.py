"""Hourly cost and model fit of a cluster's vLLM servers, from the sizing planner.

Cost per replica is the hourly on-demand price of the instance Karpenter would launch for the
pod (one serving pod per GPU node, as the GPU families here request every GPU of the node);
the range is min replicas (HPA/KEDA minimum, else `replicas`) to max replicas.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm_gitops.diff.compare import resource_key
from vllm_gitops.diff.hazards import Key
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.planner import WorkloadPlan, plan_workload
from vllm_gitops.topology import vllm_servers

# What a reviewer wants to see change about a model server.
FIT_FIELDS = ("model", "instance_type", "gpus", "starts", "max_model_len", "longest_context",
              "max_num_seqs", "max_concurrency", "usd_per_hour", "replicas", "max_replicas")


@dataclass
class ServerFacts:
    key: Key
    facts: dict[str, Any]


@dataclass
class ClusterCost:
    servers: dict[Key, ServerFacts] = field(default_factory=dict)

    @property
    def priced(self) -> bool:
        return all(s.facts["usd_per_hour"] is not None for s in self.servers.values())

    def hourly(self) -> tuple[float, float]:
        """(min, max) USD per hour over every server whose price is known."""
        low = high = 0.0
        for server in self.servers.values():
            price = server.facts["usd_per_hour"] or 0.0
            low += price * server.facts["replicas"]
            high += price * server.facts["max_replicas"]
        return round(low, 2), round(high, 2)


def cluster_cost(scope: Scope | None) -> ClusterCost:
    cost = ClusterCost()
    if scope is None:
        return cost
    for workload in vllm_servers(scope):
        key = resource_key(workload.resource.doc)
        cost.servers[key] = ServerFacts(key, _facts(plan_workload(workload, scope)))
    return cost


def _facts(plan: WorkloadPlan) -> dict[str, Any]:
    result, wl = plan.result, plan.workload
    memory = result.memory if result else None
    has_kv = bool(memory and memory.binding_stage and result and result.available_kv_cache_gib)
    return {
        "model": wl.model,
        "instance_type": result.instance.name if result and result.instance else None,
        "gpus": memory.args.world_size if memory else None,
        "starts": result.starts if result else None,
        "max_model_len": memory.args.max_model_len if memory else None,
        "longest_context": memory.longest_context if memory and memory.binding_stage else None,
        "max_num_seqs": memory.args.max_num_seqs if memory else None,
        "max_concurrency": round(memory.max_concurrency, 1) if memory and has_kv else None,
        "usd_per_hour": result.usd_per_hour if result else None,
        "replicas": wl.replicas,
        "max_replicas": max(wl.max_replicas, wl.replicas),
        "failure": result.failure.message if result and result.failure else plan.error,
        "restart_seconds": round(result.startup.warm_s) if result and result.startup else None,
    }


@dataclass
class ModelChange:
    key: Key
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @property
    def changed_fields(self) -> list[str]:
        if self.before is None or self.after is None:
            return list(FIT_FIELDS)
        return [f for f in FIT_FIELDS if self.before.get(f) != self.after.get(f)]

    def to_dict(self) -> dict[str, Any]:
        return {"resource": f"{self.key[1]} {self.key[2]}/{self.key[3]}",
                "before": self.before, "after": self.after, "changed": self.changed_fields}


def model_changes(base: ClusterCost, head: ClusterCost) -> list[ModelChange]:
    """Servers added, removed, or whose model, hardware, fit, context or scale changes."""
    out = []
    for key in sorted(base.servers.keys() | head.servers.keys()):
        before = base.servers[key].facts if key in base.servers else None
        after = head.servers[key].facts if key in head.servers else None
        change = ModelChange(key, before, after)
        if before != after and change.changed_fields:
            out.append(change)
    return out

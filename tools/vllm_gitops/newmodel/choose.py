"""Pick the instance type, tensor-parallel size and context for a model: the sizing engine
decides, this module only enumerates what the environment (or the repository) offers.

Order of preference, cheapest first within each step:
  1. a GPU family whose NodePool the environment already has, at the target context;
  2. the same, at a shorter context (never below MIN_CONTEXT);
  3. a GPU family whose NodePool must be added to the environment (it is, and we say so);
  4. the same, at a shorter context.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.newmodel.repo import Family, Infrastructure, PoolSource
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import InstanceType, instance_catalog
from vllm_gitops.sizing.karpenter import NodePool, PodScheduling, simulate_karpenter
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.planner import PlanResult, legal_tp_sizes, plan
from vllm_gitops.sizing.startup import Storage
from vllm_gitops.sizing.traffic import RequestShape, concurrency_for
from vllm_gitops.sizing.version import VllmVersion

TARGET_CONTEXT = 32768  # a sensible default: long chats and RAG, not the model's 128k maximum
MIN_CONTEXT = 8192  # below this a model is not worth serving as a general endpoint
CONTEXT_STEP = 1024
# Whether a model fits is judged at the smallest batch (vLLM's default of 256 sequences can
# fail the sampler warm-up where 16 start fine); max-num-seqs is then sized for the traffic.
FEASIBILITY_SEQS = 1


@dataclass(frozen=True)
class Offer:
    """One (GPU family, NodePool, instance type) an environment has or could get."""

    family: Family
    pool: NodePool
    instance: InstanceType
    pool_folder_to_add: str | None  # None: the environment already has this NodePool


@dataclass
class Choice:
    offer: Offer
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    result: PlanResult
    reasons: list[str] = field(default_factory=list)
    # Every instance type the pod could land on (same family, same GPU count): Karpenter
    # falls back to the pricier ones when the cheapest has no capacity.
    siblings: tuple[InstanceType, ...] = ()

    @property
    def gpus(self) -> int:
        return self.result.memory.args.world_size

    @property
    def instance(self) -> InstanceType:
        return self.offer.instance


@dataclass(frozen=True)
class Constraints:
    """What the user pinned (None: the engine chooses)."""

    gpu_family: str | None = None
    instance_type: str | None = None
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    min_replicas: int = 1


def offers(families: list[Family], infra: Infrastructure, sources: dict[str, PoolSource],
           tolerations: tuple[dict[str, Any], ...], constraints: Constraints) -> list[Offer]:
    """Every priced instance type a family's NodePool would launch for a whole-node pod."""
    found = []
    for family in _wanted_families(families, constraints.gpu_family):
        in_env = infra.pools.get(family.nodepool)
        source = sources.get(family.nodepool)
        pool = in_env or (source.pool if source else None)
        if pool is None:
            continue
        to_add = None if in_env else source.folder if source else None
        for instance in _instances(constraints.instance_type):
            used = infra.gpus_in_use.get(pool.name, 0) if in_env else 0
            if _launches(pool, family, instance, infra, tolerations,
                         used + constraints.min_replicas * instance.gpus):
                found.append(Offer(family, pool, instance, to_add))
    return found


def _wanted_families(families: list[Family], wanted: str | None) -> list[Family]:
    if wanted is None:
        return families
    names = {wanted, f"gpu-{wanted}"}
    chosen = [f for f in families if f.component in names]
    if not chosen:
        known = ", ".join(f.component for f in families)
        raise ToolError(f"unknown GPU family {wanted!r}: the repository has {known} "
                        "(folders base/components/gpu-*)")
    return chosen


def _instances(instance_type: str | None) -> Iterable[InstanceType]:
    catalog = instance_catalog()
    if instance_type is None:
        return [i for i in catalog.values() if i.usd_per_hour is not None]
    if instance_type not in catalog:
        raise ToolError(f"unknown instance type {instance_type!r}; the catalog holds the EC2 "
                        f"GPU families {', '.join(sorted({i.family for i in catalog.values()}))}")
    return [catalog[instance_type]]


def _launches(pool: NodePool, family: Family, instance: InstanceType, infra: Infrastructure,
              tolerations: tuple[dict[str, Any], ...], gpus_needed: int) -> bool:
    """Would Karpenter launch this instance for the family's pod, with room within the pool's
    GPU limit for the other models and this one's minimum replicas (the autoscaler's maximum
    is only warned about)?"""
    pod = PodScheduling(requests={"nvidia.com/gpu": float(instance.gpus)},
                        node_selector={**family.node_selector,
                                       "node.kubernetes.io/instance-type": instance.name},
                        tolerations=tolerations)
    if simulate_karpenter(pod, [pool], infra.node_classes, [instance]).chosen is None:
        return False
    limit = pool.limits.get("nvidia.com/gpu")
    return limit is None or gpus_needed <= limit


def _tp_for(model: ModelSpec, instance: InstanceType, wanted: int | None) -> int | None:
    legal = legal_tp_sizes(model, instance.gpus)
    if wanted is not None:
        return wanted if wanted in legal else None
    # A whole node per replica: TP below the node's GPU count leaves paid GPUs idle, and a
    # smaller instance of the same family is then the better offer.
    return instance.gpus if instance.gpus in legal else None


def _price(offer: Offer) -> tuple[float, int, str]:
    return (offer.instance.usd_per_hour or 0.0, offer.instance.gpus, offer.instance.name)


def _plan(model: ModelSpec, offer: Offer, args: EngineArgs, version: VllmVersion,
          storage: Storage) -> PlanResult:
    return plan(model, offer.instance.gpu, args, version, instance=offer.instance,
                storage=replace(storage, network_gbps=offer.instance.network_gbps,
                                ebs_mbps=offer.instance.ebs_mbps))


def _shorter_context(result: PlanResult, floor: int, cap: int) -> int | None:
    failure = result.failure
    if failure is None or failure.id != "max_model_len_exceeds_kv_cache":
        return None
    fitting = min(cap, result.memory.longest_context) // CONTEXT_STEP * CONTEXT_STEP
    return fitting if fitting >= floor else None


def choose(model: ModelSpec, offers_: list[Offer], base_args: EngineArgs, version: VllmVersion,
           storage: Storage, constraints: Constraints, env: str) -> Choice:
    """The cheapest offer that starts, by the preference order of the module docstring."""
    if constraints.tensor_parallel_size is not None and \
            constraints.tensor_parallel_size not in legal_tp_sizes(model, 64):
        raise ToolError(f"--tensor-parallel-size {constraints.tensor_parallel_size} is not "
                        f"possible for {model.model_id}: vLLM accepts "
                        f"{', '.join(map(str, legal_tp_sizes(model)))}")
    target = constraints.max_model_len or min(model.derived_max_model_len, TARGET_CONTEXT)
    floor = target if constraints.max_model_len else min(target, MIN_CONTEXT)
    rejected: list[str] = []
    for step_offers, added in ((_env_offers(offers_), False), (_new_offers(offers_), True)):
        rows: list[tuple[Offer, int, PlanResult]] = []
        for offer in sorted(step_offers, key=_price):
            tp = _tp_for(model, offer.instance, constraints.tensor_parallel_size)
            if tp is None:
                continue
            args = replace(base_args, tensor_parallel_size=tp, max_model_len=target,
                           max_num_seqs=FEASIBILITY_SEQS)
            rows.append((offer, tp, _plan(model, offer, args, version, storage)))
        fit = next(((o, tp, r, target) for o, tp, r in rows if r.starts), None)
        if fit is None:
            fit = _best_shorter(model, rows, base_args, version, storage, floor, target)
        if fit is not None:
            choice = _finish(model, fit, base_args, version, storage, rejected, added, env)
            choice.siblings = tuple(sorted(
                {o.instance for o in offers_ if o.family == choice.offer.family
                 and o.instance.gpus == choice.instance.gpus}, key=lambda i: i.name))
            return choice
        rejected.append(_why_none(rows, env, added))
    raise ToolError(f"{model.model_id} fits no GPU family of this repository at "
                    f"{floor:,}+ tokens of context: " + "; ".join(rejected) +
                    ". Try --max-model-len, a quantized checkpoint, or add a bigger GPU family "
                    "(base/components/gpu-*, base/karpenter/nodepools/*)")


def _env_offers(all_offers: list[Offer]) -> list[Offer]:
    return [o for o in all_offers if o.pool_folder_to_add is None]


def _new_offers(all_offers: list[Offer]) -> list[Offer]:
    return [o for o in all_offers if o.pool_folder_to_add is not None]


def _best_shorter(model: ModelSpec, rows: list[tuple[Offer, int, PlanResult]],
                  base_args: EngineArgs, version: VllmVersion, storage: Storage, floor: int,
                  target: int) -> tuple[Offer, int, PlanResult, int] | None:
    for offer, tp, result in rows:
        context = _shorter_context(result, floor, target)
        if context is None:
            continue
        args = replace(base_args, tensor_parallel_size=tp, max_model_len=context,
                       max_num_seqs=FEASIBILITY_SEQS)
        shorter = _plan(model, offer, args, version, storage)
        if shorter.starts:
            return offer, tp, shorter, context
    return None


def _why_none(rows: list[tuple[Offer, int, PlanResult]], env: str, added: bool) -> str:
    where = "no other GPU family of the repository" if added else f"no NodePool of {env}"
    if not rows:
        return (f"{where} can launch a node for it with room left in its GPU limit"
                if not added else f"{where} can launch a node for it")
    offer, tp, result = rows[0]
    message = result.failure.message if result.failure else "does not start"
    return f"{where} holds it (cheapest, {offer.instance.name} TP {tp}: {message})"


def _finish(model: ModelSpec, fit: tuple[Offer, int, PlanResult, int], base_args: EngineArgs,
            version: VllmVersion, storage: Storage, rejected: list[str], added: bool,
            env: str) -> Choice:
    offer, tp, result, context = fit
    # max_num_seqs=1 as the floor: the engine then recommends what typical traffic needs
    # rather than never going below vLLM's default of 256/1024.
    floor = replace(base_args, tensor_parallel_size=tp, max_model_len=context,
                    max_num_seqs=FEASIBILITY_SEQS)
    # `result` was planned with exactly these arguments (in `choose` or `_best_shorter`).
    concurrency = concurrency_for(model, offer.instance.gpu, floor, version, result.memory,
                                  RequestShape())
    seqs = concurrency.recommended_max_num_seqs if concurrency else 1
    batched = (concurrency.recommended_max_num_batched_tokens if concurrency
               else result.memory.args.max_num_batched_tokens)
    while True:  # the sampler warm-up grows with max-num-seqs: shrink until it starts
        args = replace(floor, max_num_seqs=seqs, max_num_batched_tokens=batched)
        final = _plan(model, offer, args, version, storage)
        if final.starts or seqs == 1:
            break
        seqs = max(1, seqs // 2)
    reasons = [*rejected, _why(offer, tp, final, context, added, env)]
    if added:
        reasons.append(f"adds NodePool {offer.pool.name} ({offer.pool_folder_to_add}) to "
                       f"overlays/{env}/infrastructure")
    return Choice(offer, tp, context, seqs, batched, final, reasons)


def _why(offer: Offer, tp: int, result: PlanResult, context: int, added: bool,
         env: str) -> str:
    where = "GPU families the repository adds" if added else f"NodePools {env} offers"
    stage = result.memory.binding_stage
    weights = f"{stage.weights_gib:.1f}" if stage else "?"
    return (f"cheapest fit on the {where}: {offer.instance.name} "
            f"({offer.instance.gpus} x {offer.instance.gpu.key}, "
            f"${offer.instance.usd_per_hour or 0:.2f}/h), TP {tp}: {weights} GiB of weights "
            f"per GPU, {result.memory.kv_cache_tokens:,} KV-cache tokens, "
            f"{context:,}-token context")

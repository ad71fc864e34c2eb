"""Text output of tools/plan: short, in the researcher's terms, with the next command to run."""

from __future__ import annotations

from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.memory import kv_bytes_per_token
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.planner import PlanResult, Recommendation, WorkloadPlan, describe_model
from vllm_gitops.sizing.version import VllmVersion


def _money(value: float | None) -> str:
    return f"${value:,.2f}/h" if value is not None else "no on-demand price"


def _flags(result: PlanResult) -> list[str]:
    args = result.memory.args
    defaults = set(args.defaults_used)

    def flag(name: str, value: object) -> str:
        return f"--{name.replace('_', '-')} {value}{'*' if name in defaults else ''}"

    return [
        flag("tensor_parallel_size", args.tensor_parallel_size),
        flag("pipeline_parallel_size", args.pipeline_parallel_size),
        flag("max_model_len", args.max_model_len),
        flag("max_num_seqs", args.max_num_seqs),
        flag("max_num_batched_tokens", args.max_num_batched_tokens),
        flag("gpu_memory_utilization", args.gpu_memory_utilization),
        flag("dtype", args.dtype),
        flag("kv_cache_dtype", args.kv_cache_dtype),
        flag("quantization", args.quantization),
    ]


def _header(result: PlanResult) -> list[str]:
    mem = result.memory
    where = f"{mem.args.world_size} x {result.gpu.key}"
    if result.instance:
        where = f"{result.instance.name} ({result.instance.gpus} x {result.gpu.key}, " \
                f"{_money(result.usd_per_hour)} us-east-1 on-demand)"
    flags = _flags(result)
    return [
        f"{result.model.model_id} on {where}, vLLM {mem.version} ({mem.version.engine} engine)",
        "  " + " ".join(flags[:5]),
        "  " + " ".join(flags[5:]) + "   (* = vLLM's default here)",
    ]


def _verdict(result: PlanResult) -> list[str]:
    if result.starts:
        return ["", "STARTS"]
    failure = result.failure
    assert failure is not None
    return ["", f"WILL NOT START: {failure.id} ({failure.phase})",
            f"  vLLM would print: {failure.message}"]


def _memory(result: PlanResult) -> list[str]:
    mem = result.memory
    stage = mem.binding_stage
    if stage is None:
        return []
    args = mem.args
    graphs_note = ("subtracted from the KV budget (vLLM >= 0.21)" if stage.cudagraph_in_budget
                   else "captured after KV allocation, in the "
                        f"{(1 - args.gpu_memory_utilization) * 100:.0f}% headroom plus the freed "
                        "activation")
    which = f", pipeline stage {stage.stage}" if args.pipeline_parallel_size > 1 else ""
    lines = [
        "",
        f"Memory per GPU{which}: {stage.total_gib:.2f} GiB as PyTorch reports it x "
        f"{args.gpu_memory_utilization:g} = {stage.requested_gib:.2f} GiB budget",
        f"  weights          {stage.weights_gib:8.2f} GiB",
        f"  peak activation  {stage.activation_gib:8.2f} GiB",
        f"  non-torch        {stage.non_torch_gib:8.2f} GiB",
        f"  CUDA graphs      {stage.cudagraph_gib:8.2f} GiB  ({graphs_note})",
        f"  KV cache         {stage.available_kv_cache_gib:8.2f} GiB",
    ]
    if stage.available_kv_cache_gib > 0:
        per_token = kv_bytes_per_token(result.model, args)
        lines[-1] += (f"  = {mem.kv_cache_tokens:,} tokens "
                      f"({per_token / 1024:g} KiB per token per GPU)")
    return lines


def _context(result: PlanResult) -> list[str]:
    mem = result.memory
    if mem.binding_stage is None or mem.binding_stage.available_kv_cache_gib <= 0:
        return []
    args = mem.args
    longest = mem.longest_context
    limit = result.model.derived_max_model_len
    lines = ["", "Context and concurrency"]
    if mem.max_concurrency >= 1:
        lines.append(f"  {args.max_model_len:,}-token requests: {mem.max_concurrency:.2f} at once "
                     f"when all are full length (vLLM also caps running requests at "
                     f"max_num_seqs={args.max_num_seqs})")
    top = " (the model's maximum)" if longest >= limit else ""
    lines.append(f"  longest max_model_len this memory allows: {longest:,}{top}")
    return lines + _traffic(result)


def _traffic(result: PlanResult) -> list[str]:
    conc = result.concurrency
    if conc is None:
        return []
    shape = conc.shape
    lines = [
        f"  {shape.prompt_tokens:,}+{shape.output_tokens:,}-token requests (--prompt-tokens/"
        f"--output-tokens): the KV cache holds ~{conc.typical_requests:,.0f} at once; "
        f"max_num_seqs={conc.configured_max_num_seqs} lets {conc.served_at_once:,.0f} run",
        f"  for this traffic: --max-num-seqs {conc.recommended_max_num_seqs} "
        f"--max-num-batched-tokens {conc.recommended_max_num_batched_tokens}",
    ]
    if conc.capped:
        lines.append(f"  CAPPED: {conc.cap_message()}")
    return lines


def _startup(result: PlanResult) -> list[str]:
    est = result.startup
    if est is None:
        return []
    return [
        "",
        f"Startup: ~{est.cold_s:.0f} s on an empty cache, ~{est.warm_s:.0f} s with the weights "
        f"cached -> startupProbe budget >= {est.recommended_probe_s} s",
        f"  download {est.weight_bytes / 1e9:.1f} GB at {est.download_mb_s:.0f} MB/s "
        f"{est.download_s:.0f} s (first start only) | load at {est.volume_mb_s:.0f} MB/s "
        f"{est.load_s:.0f} s",
        f"  engine init {est.engine_init_s:.0f} s | torch.compile {est.compile_s:.0f} s | "
        f"CUDA graphs {est.cudagraph_s:.0f} s | KV profiling {est.kv_init_s:.0f} s",
    ]


def plan_result(result: PlanResult) -> str:
    lines = [*_header(result), *_verdict(result), *_memory(result), *_context(result),
             *_startup(result)]
    if result.warnings:
        lines += ["", "Warnings:", *(f"  - {w}" for w in result.warnings)]
    return "\n".join(lines)


def recommendations(model: ModelSpec, rows: list[Recommendation], args: EngineArgs,
                    version: VllmVersion, top: int) -> str:
    facts = describe_model(model)
    wanted = args.max_model_len or model.derived_max_model_len
    per_token = 2 * model.num_kv_heads * model.head_dim * 2 * model.num_layers
    if model.mla is not None:
        per_token = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * 2 * model.num_layers
    lines = [
        f"{model.model_id}: {facts['params_billion']} B parameters, checkpoint "
        f"{facts['checkpoint_gib']} GiB, {model.num_layers} layers, {model.num_kv_heads} KV heads "
        f"({per_token / 1024:g} KiB/token at 16 bit), max context "
        f"{model.derived_max_model_len:,}",
        f"Requested context {wanted:,} tokens, vLLM {version}; legal tensor-parallel sizes: "
        f"{', '.join(map(str, facts['legal_tp_sizes']))}",
        "",
    ]
    if not rows:
        return "\n".join([*lines, "No instance type in the catalog can serve this model "
                          "(weights do not fit even on 8 GPUs): use a quantized checkpoint."])
    if not any(r.fits_requested for r in rows):
        lines.append(f"Nothing fits {wanted:,} tokens; these start with a shorter "
                     "--max-model-len (see 'longest ctx'):")
    elif not rows[0].fits_requested:
        lines.append("Rows marked 'too long' are cheaper but need --max-model-len at most "
                     "their 'longest ctx':")
    header = (f"{'instance':18} {'GPUs':16} {'TP':>2} {'weights/GPU':>11} {'KV tokens':>11} "
              f"{'longest ctx':>11} {'conc@' + format(wanted, ','):>13} {'cold start':>10} "
              f"{'$/hour':>8}")
    lines += [header, "-" * len(header)]
    for rec in rows[:top]:
        lines.append(_row(rec))
    if len(rows) > top:
        lines.append(f"... {len(rows) - top} more (--top N or --format json)")
    best = next((r for r in rows if r.fits_requested), rows[0])
    lines += ["", f"Cheapest: {best.instance.name} with --tensor-parallel-size "
              f"{best.tensor_parallel_size}. Details: tools/plan --model {model.model_id} "
              f"--instance-type {best.instance.name} --tensor-parallel-size "
              f"{best.tensor_parallel_size}" + (f" --max-model-len {args.max_model_len}"
                                                 if args.max_model_len else "")]
    return "\n".join(lines)


def _row(rec: Recommendation) -> str:
    res, mem = rec.result, rec.result.memory
    stage = mem.binding_stage
    weights = f"{stage.weights_gib:.1f} GiB" if stage else "-"
    tokens = f"{mem.kv_cache_tokens:,}" if rec.fits_requested else "-"
    conc = f"{mem.max_concurrency:.1f}x" if rec.fits_requested else "too long"
    startup = f"~{res.startup.cold_s:.0f} s" if res.startup else "-"
    gpus = f"{rec.instance.gpus} x {rec.instance.gpu.key}"
    price = f"{rec.instance.usd_per_hour:.2f}" if rec.instance.usd_per_hour else "-"
    return (f"{rec.instance.name:18} {gpus:16} {rec.tensor_parallel_size:>2} {weights:>11} "
            f"{tokens:>11} {mem.longest_context:>11,} {conc:>13} {startup:>10} {price:>8}")


def workload_plans(plans: list[WorkloadPlan]) -> str:
    if not plans:
        return "No vLLM workload found in the rendered manifests."
    blocks = []
    for item in plans:
        wl = item.workload
        where = f" ({wl.location})" if wl.location else ""
        replicas = (f"{wl.replicas}-{wl.max_replicas} replicas (autoscaled)"
                    if wl.max_replicas > wl.replicas else f"{wl.replicas} replica(s)")
        lines = [f"== {item.scope}: {wl.ref} container {wl.container}{where}",
                 f"   image {wl.image}, model {wl.model}, {replicas}, "
                 f"{wl.gpus or 0} GPU(s) each"]
        if item.karpenter is not None:
            lines.append(f"   Karpenter: {item.karpenter.reason}")
        if item.error:
            lines.append(f"   error: {item.error}")
        if item.result is not None:
            lines.append("")
            lines.extend("   " + line if line else "" for line in plan_result(item.result)
                         .splitlines())
        if item.recommendations:
            rec = item.recommendations[0]
            lines.append(f"   cheapest fit: {rec.instance.name} (TP {rec.tensor_parallel_size}, "
                         f"{_money(rec.instance.usd_per_hour)})")
        lines.extend(f"   note: {note}" for note in item.notes)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


"""vLLM's startup memory accounting, per GPU, and every way startup fails.

    requested  = torch_total x gpu_memory_utilization                (Worker.init_device)
    available  = requested - weights - peak_activation - non_torch   (determine_available_memory)
                 - cudagraph_estimate                                  (only vLLM >= 0.21)
    blocks     = available // (page_bytes x layers_per_group)   (get_kv_cache_config_from_groups)

The few constants below are fitted on real vLLM startup logs kept in the repository
(catalog/calibration/vllm-startup-logs.json; tests/sizing/test_sizing_calibration.py measures the
error in-sample, tests/sizing/accuracy.py leave-one-source-out). They describe physics (how many
logits- or hidden-sized tensors are alive at the peak), not per-model results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_gitops.sizing.engine_args import EngineArgs, ResolvedArgs, resolve
from vllm_gitops.sizing.hardware import Gpu
from vllm_gitops.sizing.kvcache import KvLayout, kv_layout
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.quantity import GIB
from vllm_gitops.sizing.version import VllmVersion
from vllm_gitops.sizing.weights import (
    kv_heads_per_gpu,
    padded_vocab,
    pp_stage_layers,
    weights_gib_per_stage,
)

# --- peak activation of profile_run(): max(forward pass, sampler pass) ------------------------
# Allocator baseline alive through both passes (input buffers, positions, rotary, metadata).
ACTIVATION_BASE_GIB = 0.10
# Hidden-size tensors alive at the forward peak, per batched token (residual, normed input,
# qkv/attention output, o_proj output...). Fitted on Llama-3.1-8B PP stage 0 (1.10 GiB, no
# sampler) and Mixtral-8x7B TP2 (1.21 GiB); the MLP adds its own 3 x width (gate_up + act).
FORWARD_HIDDEN_TENSORS = 5.5
# fp32 logits-sized tensors alive at the sampler peak (logits, probs, exponential noise...):
# fitted on the sampler-bound v0.19 rows (Llama-3.1-8B 1.89, Qwen 2.21, gpt-oss-20b 2.87 GiB).
SAMPLER_LOGITS_TENSORS = 3.53
# The same pass through the sort-based apply_top_k_top_p (vLLM 0.11.1-0.16, and 0.8-0.11.0
# when FlashInfer is not installed, see sampler_sorts): logits, sorted values, int64 indices,
# softmax / cumsum, masks, the scattered result and the sort's own scratch. Fitted on Qwen3-14B,
# H100, 1024 x 151936 rows: 5.64 GiB peak on 0.15/0.16 against 2.23 on 0.17 (the fit above
# gives 3.54 tensors there). Checked on three other sources, all pip/conda installs without
# FlashInfer: gpt-oss-120b on 0.10.1 logs -2.14 GiB of KV cache, the engine -2.2
# (https://github.com/vllm-project/vllm/issues/23278); gpt-oss-120b on 0.11.0 with
# --max-num-batched-tokens 1024 logs 1.71, the engine 1.77
# (https://github.com/vllm-project/vllm/issues/27508); Qwen3-235B-A22B-FP8 at TP 4 on 0.9.2
# logs 8.11, the engine 8.40 (https://github.com/vllm-project/vllm/issues/21348).
SORT_SAMPLER_LOGITS_TENSORS = 9.42

# --- memory used outside PyTorch's allocator (NCCL, cuBLAS workspaces, custom all-reduce) -----
NON_TORCH_SINGLE_GPU_GIB = 0.25  # 0.24-0.26 GiB at TP=1 (v0.19 H100 logs)
NON_TORCH_TENSOR_PARALLEL_GIB = 2.13  # 2.07-2.21 GiB at TP=2 and TP=4 (custom all-reduce buffers)
NON_TORCH_PIPELINE_ONLY_GIB = 0.07  # PP without TP (Llama-3.1-8B PP=2)

# --- CUDA-graph pool (captured after KV allocation; subtracted from KV since 0.21) ------------
# "Graph capturing finished ..., took X GiB" with the default capture sizes (up to 512), one
# H100, vLLM 0.19 (llm-d-planner sweep logs): dense models 0.65-1.23 GiB, ~0.9 typical
# (Llama-3.1-8B 0.91); MoE models at TP 1 1.10-1.84 GiB whatever their depth (Qwen1.5-MoE 1.10,
# Qwen3-30B-A3B 1.41, Kimi-VL-A3B 1.50, DeepSeek-V2-Lite 1.57, gpt-oss-20b 1.84), at TP 2
# 0.93-1.55 (Mixtral 0.93, Kimi-VL-A3B 1.26, gpt-oss-20b 1.55). MoE takes the upper end of its
# TP class: the pool decides whether the warm-up fits, and a start must not be promised.
CUDAGRAPH_DENSE_GIB = 0.90
CUDAGRAPH_MOE_GIB = 1.84
CUDAGRAPH_MOE_SHARDED_GIB = 1.55

# --- warm-up after KV allocation: graphs + a max_num_seqs sampler pass ------------------------
# What is free then: the (1 - gmu) headroom plus the peak-activation budget, which the profile
# reserved but freed (the gpt-oss-20b failure log: 58.47 GiB KV + 13.64 weights + 0.25 non-torch
# + 1.84 graphs leave 5.0 of 79.19 GiB, not the 3.96 GiB headroom). The warm-up needs the
# profile's sampler tensors plus this many logits-sized fp32 tensors more (the warm-up's own
# forward pass, allocator fragmentation next to the KV blocks): 3.2 separates the real failure
# (gpt-oss-20b, H100, gmu 0.95, > 2.98 needed) from the closest success (Gemma-3-12B, < 3.4).
WARMUP_EXTRA_LOGITS_TENSORS = 3.2
# CUDA context and allocator slack that a checkpoint can never use.
CUDA_CONTEXT_GIB = 0.5

# Minimum compute capability per quantization (vLLM QuantizationConfig.get_min_capability).
QUANT_MIN_CAPABILITY = {"fp8": 8.0, "mxfp4": 8.0, "int8": 7.5, "int4": 7.5, "none": 0.0}


@dataclass(frozen=True)
class Failure:
    """Why vLLM would refuse to start: a short id and the message vLLM prints."""

    id: str
    message: str
    phase: str  # config | model init | weight load | KV sizing | warm-up

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "message": self.message, "phase": self.phase}


@dataclass(frozen=True)
class StageMemory:
    """Memory of one GPU of one pipeline stage, in GiB."""

    stage: int
    layers: range
    total_gib: float
    requested_gib: float
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cudagraph_gib: float
    cudagraph_in_budget: bool
    available_kv_cache_gib: float
    layout: KvLayout

    @property
    def available_bytes(self) -> float:
        return self.available_kv_cache_gib * GIB

    @property
    def num_blocks(self) -> int:
        return self.layout.num_blocks(self.available_bytes) if self.available_bytes > 0 else 0


@dataclass
class MemoryPlan:
    model: ModelSpec
    gpu: Gpu
    version: VllmVersion
    args: ResolvedArgs
    stages: list[StageMemory] = field(default_factory=list)
    failure: Failure | None = None
    num_blocks: int = 0
    kv_cache_tokens: int = 0
    max_concurrency: float = 0.0
    longest_context: int = 0
    warmup_needed_gib: float = 0.0
    warmup_headroom_gib: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def starts(self) -> bool:
        return self.failure is None

    @property
    def binding_stage(self) -> StageMemory | None:
        """The stage with the fewest KV blocks: it sets the engine's block count."""
        return min(self.stages, key=lambda s: (s.num_blocks, s.available_kv_cache_gib),
                   default=None)


# ---------------------------------------------------------------- components


def mlp_peak_width(model: ModelSpec, tp: int) -> float:
    """Per-token MLP intermediates at the forward peak (gate_up output + activation output;
    for MoE the fused-MoE caches of the top-k experts plus their hidden-size outputs: Triton
    fused_experts keeps top_k x max(2 x width, hidden) and top_k x width per token, for up to
    64k tokens at once, FP8 block-quantized or not, https://github.com/vllm-project/vllm/blob/
    v0.9.2/vllm/model_executor/layers/fused_moe/fused_moe.py#L1266-L1300)."""
    dense = 3 * model.intermediate_size / tp if not all(model.moe_layers) else 0.0
    if model.moe is None:
        return dense
    moe = model.moe
    routed = moe.experts_per_token * (3 * moe.expert_width / tp + model.hidden_size)
    return max(dense, routed + 3 * moe.shared_width / tp)


def activation_gib(model: ModelSpec, args: ResolvedArgs, last_stage: bool,
                   version: VllmVersion) -> float:
    """Peak of profile_run(): a max_num_batched_tokens forward pass, then (last PP stage only)
    a sampler pass over min(max_num_seqs, max_num_batched_tokens) fp32 logits rows."""
    tokens = args.max_num_batched_tokens
    hidden = model.hidden_size
    per_token = FORWARD_HIDDEN_TENSORS * hidden + mlp_peak_width(model, args.tensor_parallel_size)
    forward = ACTIVATION_BASE_GIB + tokens * args.dtype_bytes * per_token / GIB
    if not last_stage:
        return forward
    sampler = (
        ACTIVATION_BASE_GIB
        + tokens * args.dtype_bytes * hidden / GIB
        + sampler_logits_tensors(version, args.flashinfer_installed) * logits_gib(model, args)
    )
    return max(forward, sampler)


def sampler_logits_tensors(version: VllmVersion, flashinfer_installed: bool = True) -> float:
    """fp32 logits-sized tensors alive at the peak of one max_num_seqs sampler pass."""
    if sampler_sorts(version, flashinfer_installed):
        return SORT_SAMPLER_LOGITS_TENSORS
    return SAMPLER_LOGITS_TENSORS


def sampler_sorts(version: VllmVersion, flashinfer_installed: bool = True) -> bool:
    """Whether the profile's sampler pass (top_k = vocab - 1, top_p = 0.9:
    https://github.com/vllm-project/vllm/blob/v0.9.2/vllm/v1/worker/gpu_model_runner.py#L2101-L2106)
    sorts the whole max_num_seqs x vocab matrix."""
    if version.sorts_full_vocab_in_sampler:
        return True
    return not flashinfer_installed and version.sorts_full_vocab_without_flashinfer


def logits_gib(model: ModelSpec, args: ResolvedArgs) -> float:
    """One fp32 logits tensor of the sampler pass: num_reqs x vocab x 4 bytes."""
    rows = min(args.max_num_seqs, args.max_num_batched_tokens)
    return rows * model.vocab_size * 4 / GIB


def non_torch_gib(args: ResolvedArgs) -> float:
    if args.tensor_parallel_size > 1:
        return NON_TORCH_TENSOR_PARALLEL_GIB
    if args.pipeline_parallel_size > 1:
        return NON_TORCH_PIPELINE_ONLY_GIB
    return NON_TORCH_SINGLE_GPU_GIB


def cudagraph_gib(model: ModelSpec, args: ResolvedArgs, layers: range) -> float:
    if args.enforce_eager:
        return 0.0
    if any(model.moe_layers[i] for i in layers):
        return CUDAGRAPH_MOE_GIB if args.tensor_parallel_size == 1 else CUDAGRAPH_MOE_SHARDED_GIB
    return CUDAGRAPH_DENSE_GIB


# ---------------------------------------------------------------- checks before any GPU work


def config_failure(
    model: ModelSpec, args: ResolvedArgs, version: VllmVersion, gpus_available: int | None
) -> Failure | None:
    """EngineArgs.create_engine_config() / ModelConfig checks."""
    tp, pp = args.tensor_parallel_size, args.pipeline_parallel_size
    if args.max_model_len > model.derived_max_model_len:
        return Failure("max_model_len_too_long", (
            f"User-specified max_model_len ({args.max_model_len}) is greater than the derived "
            f"max_model_len (max_position_embeddings={model.max_position_embeddings} in model's "
            "config.json). To allow overriding this maximum, set the env var "
            "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1."), "config")
    if model.num_attention_heads % tp:
        return Failure("heads_not_divisible", (
            f"Total number of attention heads ({model.num_attention_heads}) must be divisible "
            f"by tensor parallel size ({tp})."), "config")
    if pp > model.num_layers:
        return Failure("pipeline_exceeds_layers", (
            f"pipeline_parallel_size ({pp}) is larger than the number of layers "
            f"({model.num_layers})."), "config")
    if args.max_num_batched_tokens < args.max_num_seqs:
        return Failure("batched_tokens_below_num_seqs", (
            f"max_num_batched_tokens ({args.max_num_batched_tokens}) must be greater than or "
            f"equal to max_num_seqs ({args.max_num_seqs})."), "config")
    if version.engine == "V0" and args.max_model_len <= 32768 and (
        args.max_num_batched_tokens < args.max_model_len
    ):
        return Failure("batched_tokens_below_max_model_len", (
            f"max_num_batched_tokens ({args.max_num_batched_tokens}) is smaller than "
            f"max_model_len ({args.max_model_len}). Please increase max_num_batched_tokens "
            "or decrease max_model_len."), "config")
    if gpus_available is not None and args.world_size > gpus_available:
        return Failure("not_enough_gpus", (
            f"World size ({args.world_size} = tensor_parallel_size {tp} x "
            f"pipeline_parallel_size {pp}) is larger than the number of available GPUs "
            f"({gpus_available})."), "config")
    return None


def precision_failure(model: ModelSpec, gpu: Gpu, requested: EngineArgs,
                      args: ResolvedArgs) -> Failure | None:
    native = model.native_quantization
    wanted = requested.quantization
    if native and wanted not in (None, "none", native):
        return Failure("quantization_mismatch", (
            f"Quantization method specified in the model config ({native}) does not match the "
            f"quantization method specified in the `quantization` argument ({wanted})."), "config")
    if args.dtype == "bfloat16" and not gpu.supports_bf16:
        return Failure("bf16_unsupported", (
            "Bfloat16 is only supported on GPUs with compute capability of at least 8.0. Your "
            f"{gpu.device_name} GPU has compute capability {gpu.compute_capability}. You can use "
            "float16 instead by explicitly setting the `dtype` flag in CLI, for example: "
            "--dtype=half."), "config")
    needed = QUANT_MIN_CAPABILITY[args.quantization]
    if gpu.compute_capability < needed:
        return Failure("quantization_unsupported", (
            f"The quantization method {args.quantization} is not supported for the current GPU. "
            f"Minimum capability: {int(needed * 10)}. Current capability: "
            f"{int(gpu.compute_capability * 10)}."), "config")
    return None


def sharding_failure(model: ModelSpec, tp: int) -> Failure | None:
    """Model construction: vocab-parallel embedding, attention KV heads, MLP widths."""
    vocab = padded_vocab(model.vocab_size)
    if vocab % tp:
        return Failure("vocab_not_divisible", f"AssertionError: {vocab} is not divisible by {tp}",
                       "model init")
    kv = model.num_kv_heads
    if model.mla is None and (kv % tp if kv >= tp else tp % kv):
        return Failure("kv_heads_not_divisible", (
            f"AssertionError: {kv} KV heads cannot be split over tensor parallel size {tp} "
            f"(needs {kv} % {tp} == 0 or {tp} % {kv} == 0)"), "model init")
    for width in _mlp_widths(model):
        if width % tp:
            return Failure("mlp_not_divisible", f"AssertionError: {width} is not divisible by {tp}",
                           "model init")
    return None


def _mlp_widths(model: ModelSpec) -> list[int]:
    widths = [] if all(model.moe_layers) else [model.intermediate_size]
    if model.moe is not None:
        widths.append(model.moe.expert_width)
        if model.moe.shared_width:
            widths.append(model.moe.shared_width)
    return widths


# ---------------------------------------------------------------- memory and KV sizing


def stage_memory(model: ModelSpec, gpu: Gpu, version: VllmVersion, args: ResolvedArgs,
                 ) -> list[StageMemory]:
    tp, pp = args.tensor_parallel_size, args.pipeline_parallel_size
    weights = weights_gib_per_stage(model, tp, pp, args.dtype_bytes, args.quantization)
    requested = gpu.torch_total_gib * args.gpu_memory_utilization
    stages = []
    for index, layers in enumerate(pp_stage_layers(model.num_layers, pp)):
        activation = activation_gib(model, args, index == pp - 1, version)
        graphs = cudagraph_gib(model, args, layers)
        in_budget = version.subtracts_cudagraph_estimate
        available = requested - weights[index] - activation - non_torch_gib(args)
        available -= graphs if in_budget else 0.0
        layout = kv_layout(model, layers, tp, args.kv_dtype_bytes, args.block_size,
                           args.max_num_batched_tokens, args.hybrid_kv_cache_manager)
        stages.append(StageMemory(
            stage=index, layers=layers, total_gib=gpu.torch_total_gib, requested_gib=requested,
            weights_gib=weights[index], activation_gib=activation,
            non_torch_gib=non_torch_gib(args), cudagraph_gib=graphs, cudagraph_in_budget=in_budget,
            available_kv_cache_gib=available, layout=layout,
        ))
    return stages


def _fit_failure(plan: MemoryPlan) -> Failure | None:
    args, version = plan.args, plan.version
    for stage in plan.stages:
        if stage.weights_gib > stage.total_gib - CUDA_CONTEXT_GIB:
            return Failure("weights_do_not_fit", (
                f"torch.OutOfMemoryError: CUDA out of memory while loading weights: "
                f"{stage.weights_gib:.2f} GiB per GPU do not fit on a {stage.total_gib:.2f} GiB "
                "GPU. Use more GPUs (tensor/pipeline parallel) or a quantized checkpoint."),
                "weight load")
    for stage in plan.stages:
        if stage.available_kv_cache_gib <= 0:
            return Failure("no_kv_cache_memory", (
                "No available memory for the cache blocks. Try increasing "
                "`gpu_memory_utilization` when initializing the engine. (Available KV cache "
                f"memory: {stage.available_kv_cache_gib:.2f} GiB)"), "KV sizing")
    if version.engine == "V0":
        tokens = args.block_size * (plan.num_blocks // args.pipeline_parallel_size)
        if args.max_model_len > tokens:
            return Failure("max_model_len_exceeds_kv_cache", (
                f"The model's max seq len ({args.max_model_len}) is larger than the maximum "
                f"number of tokens that can be stored in KV cache ({tokens}). Try increasing "
                "`gpu_memory_utilization` or decreasing `max_model_len` when initializing the "
                "engine."), "KV sizing")
        return None
    for stage in plan.stages:
        usable = stage.available_bytes - _null_block_bytes(stage, version)
        needed = stage.layout.bytes_for_request(args.max_model_len)
        if needed > usable:
            whose = "model's" if version.at_least(33) else "models's"
            return Failure("max_model_len_exceeds_kv_cache", (
                f"To serve at least one request with the {whose} max seq len "
                f"({args.max_model_len}), ({needed / GIB:.2f} GiB KV cache is needed, which is "
                f"larger than the available KV cache memory ({usable / GIB:.2f} GiB). Based on "
                f"the available memory, the estimated maximum model length is "
                f"{plan.longest_context}. Try increasing `gpu_memory_utilization` or decreasing "
                "`max_model_len` when initializing the engine."), "KV sizing")
    return None


def _null_block_bytes(stage: StageMemory, version: VllmVersion) -> float:
    if not version.reserves_null_block:
        return 0.0
    return float(stage.layout.page_bytes * stage.layout.group_size)


def _warmup_failure(plan: MemoryPlan) -> Failure | None:
    """After KV allocation the (1 - gmu) headroom and the freed activation budget are left for
    CUDA graphs (until 0.21) and the max_num_seqs sampler warm-up (from 0.8)."""
    args, version = plan.args, plan.version
    last = plan.stages[-1]
    graphs = 0.0 if last.cudagraph_in_budget else last.cudagraph_gib
    sampler = 0.0
    if version.warms_up_sampler:
        tensors = (sampler_logits_tensors(version, args.flashinfer_installed)
                   + WARMUP_EXTRA_LOGITS_TENSORS)
        sampler = tensors * logits_gib(plan.model, args)
    plan.warmup_needed_gib = graphs + sampler
    plan.warmup_headroom_gib = (last.total_gib * (1 - args.gpu_memory_utilization)
                                + last.activation_gib)
    if plan.warmup_needed_gib <= plan.warmup_headroom_gib:
        return None
    if sampler and plan.warmup_headroom_gib - graphs < sampler:
        return Failure("warmup_oom", (
            "CUDA out of memory occurred when warming up sampler with "
            f"{min(args.max_num_seqs, args.max_num_batched_tokens)} dummy requests. Please try "
            "lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine. "
            f"(needs ~{plan.warmup_needed_gib:.2f} GiB after KV allocation, "
            f"{plan.warmup_headroom_gib:.2f} GiB left)"), "warm-up")
    return Failure("warmup_oom", (
        f"torch.OutOfMemoryError during CUDA graph capture: ~{graphs:.2f} GiB of graphs do not "
        f"fit in the {plan.warmup_headroom_gib:.2f} GiB left after KV allocation. Lower "
        "gpu_memory_utilization or pass --enforce-eager."), "warm-up")


def _size_kv(plan: MemoryPlan) -> None:
    args, version = plan.args, plan.version
    binding = plan.binding_stage
    assert binding is not None
    plan.num_blocks = binding.num_blocks
    plan.longest_context = min(
        s.layout.longest_fitting_len(max(0.0, s.available_bytes - _null_block_bytes(s, version)),
                                     plan.model.derived_max_model_len)
        for s in plan.stages
    )
    plan.max_concurrency = binding.layout.max_concurrency(plan.num_blocks, args.max_model_len)
    if version.engine == "V0":
        plan.kv_cache_tokens = plan.num_blocks * args.block_size
    elif version.reserves_null_block:
        plan.kv_cache_tokens = int(plan.max_concurrency * args.max_model_len)
    else:
        plan.kv_cache_tokens = binding.layout.reported_tokens(plan.num_blocks)


def _warnings(plan: MemoryPlan) -> list[str]:
    notes = []
    model, args = plan.model, plan.args
    if model.vision_params:
        notes.append("multimodal model: the vision encoder's profiling peak is not modelled, so "
                      "activation memory may be higher and the KV cache smaller than shown")
    if args.quantization == "fp8" and plan.gpu.compute_capability < 8.9:
        notes.append(f"{plan.gpu.key} has no FP8 tensor cores: vLLM runs FP8 weights through "
                     "the weight-only Marlin kernels (memory as FP8, speed as bf16)")
    if model.mla is None and args.tensor_parallel_size > model.num_kv_heads:
        notes.append(f"tensor_parallel_size {args.tensor_parallel_size} exceeds the "
                     f"{model.num_kv_heads} KV heads: each GPU holds a replicated KV head, so "
                     "more GPUs add no KV tokens")
    margin = plan.warmup_headroom_gib - plan.warmup_needed_gib
    if plan.starts and plan.stages and margin < 0.3:
        notes.append(f"warm-up headroom is thin ({margin:.2f} GiB): an out-of-memory crash after "
                     "KV allocation is possible; lower gpu_memory_utilization or max_num_seqs")
    return notes


def evaluate(
    model: ModelSpec,
    gpu: Gpu,
    engine_args: EngineArgs,
    version: VllmVersion,
    gpus_available: int | None = None,
) -> MemoryPlan:
    """Predict what vLLM does at startup with this model, GPU and flags."""
    args = resolve(engine_args, model, gpu, version)
    plan = MemoryPlan(model=model, gpu=gpu, version=version, args=args)
    plan.failure = (
        config_failure(model, args, version, gpus_available)
        or precision_failure(model, gpu, engine_args, args)
        or sharding_failure(model, args.tensor_parallel_size)
    )
    if plan.failure:
        return plan
    plan.stages = stage_memory(model, gpu, version, args)
    _size_kv(plan)
    plan.failure = _fit_failure(plan) or _warmup_failure(plan)
    plan.warnings = _warnings(plan)
    return plan


def kv_bytes_per_token(model: ModelSpec, args: ResolvedArgs) -> int:
    """Per-GPU KV bytes per token (full-attention equivalent) of the deepest stage."""
    layers = max(pp_stage_layers(model.num_layers, args.pipeline_parallel_size), key=len)
    if model.mla is not None:
        per_layer = (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * args.kv_dtype_bytes
    else:
        heads = kv_heads_per_gpu(model, args.tensor_parallel_size)
        per_layer = 2 * heads * model.head_dim * args.kv_dtype_bytes
    return per_layer * len(layers)

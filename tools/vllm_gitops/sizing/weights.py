"""Weight memory per GPU under tensor / pipeline parallelism and quantization.

Counts parameters the way vLLM shards them: column/row-parallel linears, the vocab-parallel
embedding and lm_head are split by TP; norms, routers and MLA down-projections are replicated;
K/V projections are replicated once TP exceeds the KV-head count. Pipeline stages follow
`get_pp_indices` (vllm/distributed/utils.py). Reproduces the logged "Model loading took X GiB"
within 1-2 % on the calibration set (tests/sizing/test_sizing_calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.quantity import GIB

VOCAB_PADDING = 64  # DEFAULT_VOCAB_PADDING_SIZE, vocab_parallel_embedding.py

# Bytes per parameter of a quantized linear weight, scales included.
QUANT_LINEAR_BYTES = {
    # e4m3 + per-tensor / per-channel scales, or one fp32 weight_scale_inv per 128 x 128 block
    # (4 / 16384 B per weight, 0.024 %), MoE experts included:
    # https://github.com/vllm-project/vllm/blob/v0.9.2/vllm/model_executor/layers/quantization/fp8.py#L569-L590
    # The MoE router stays bf16 (quant_config=None,
    # https://github.com/vllm-project/vllm/blob/v0.9.2/vllm/model_executor/models/qwen3_moe.py#L122-L126)
    # like embeddings, lm_head and norms (modules_to_not_convert): all counted as plain.
    "fp8": 1.0,
    "int8": 1.0,  # W8A8 + per-channel scales
    "int4": 0.5 + 2 / 128,  # GPTQ/AWQ/w4a16: 4-bit + one fp16 scale per group of 128
    # MXFP4 is 4.25 bits/param on disk; in memory vLLM pads the expert matrices for its
    # kernels. 0.579 B/param is fitted on gpt-oss-20b (13.64 GiB) and -120b (65.97 GiB). It is
    # what the Marlin MoE backend allocates (4.25 bits x 3072 x 2944 / 2880^2 = 0.5793: hidden
    # padded to 256, expert width to 128), the backend on Hopper unless triton_kernels
    # (and torch >= 2.8) is installed (pip installs, e.g. issue #23278's "Weight-only FP4
    # compression ... Marlin kernel"):
    # https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/model_executor/layers/quantization/mxfp4.py#L94-L102
    # and #L189-L200. The Triton backend pads less; gpt-oss-120b on 0.14.1 logs 64.38 GiB
    # (https://github.com/vllm-project/vllm/issues/33155), 2.3 % below: not modelled.
    "mxfp4": 0.579,
}
CHECKPOINT_MXFP4_BYTES = 4.25 / 8
# Mxfp4MoEMethod.create_weights pads each rank's expert width to a multiple of 64 on CUDA's
# default (Triton) backend: gpt-oss 2880 / TP 4 = 720 -> 768 columns, +6.7 % expert memory.
# https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/layers/quantization/mxfp4.py
MXFP4_EXPERT_ALIGN = 64
QUANTIZATIONS = ("none", "fp8", "int8", "int4", "mxfp4")


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter for each class of tensor."""

    plain: float  # embeddings, lm_head, norms, biases, routers: never quantized
    linear: float  # attention and dense-MLP projections
    expert: float  # MoE expert projections

    @classmethod
    def of(cls, model: ModelSpec, dtype_bytes: int, quantization: str) -> Precision:
        if quantization == "none":
            return cls(dtype_bytes, dtype_bytes, dtype_bytes)
        qbytes = QUANT_LINEAR_BYTES[quantization]
        if quantization == "mxfp4" and model.is_moe:
            return cls(dtype_bytes, dtype_bytes, qbytes)  # gpt-oss: attention stays bf16
        return cls(dtype_bytes, qbytes, qbytes)


@dataclass(frozen=True)
class ParamCount:
    plain: float = 0.0
    linear: float = 0.0
    expert: float = 0.0

    def __add__(self, other: ParamCount) -> ParamCount:
        return ParamCount(
            self.plain + other.plain, self.linear + other.linear, self.expert + other.expert
        )

    @property
    def total(self) -> float:
        return self.plain + self.linear + self.expert

    def bytes(self, precision: Precision) -> float:
        return (
            self.plain * precision.plain
            + self.linear * precision.linear
            + self.expert * precision.expert
        )


def padded_vocab(vocab_size: int) -> int:
    return math.ceil(vocab_size / VOCAB_PADDING) * VOCAB_PADDING


def kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    """ModelConfig.get_num_kv_heads(): KV heads are split, or replicated once TP > KV heads."""
    if model.mla is not None:
        return 1
    return max(1, model.num_kv_heads // tp)


def pp_layer_counts(num_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage (get_pp_indices: spare layers go to the stages before the last)."""
    counts = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        counts[-i] += 1
    return counts


def pp_stage_layers(num_layers: int, pp: int) -> list[range]:
    ranges, start = [], 0
    for count in pp_layer_counts(num_layers, pp):
        ranges.append(range(start, start + count))
        start += count
    return ranges


def _attention(model: ModelSpec, tp: int) -> ParamCount:
    h, heads = model.hidden_size, model.num_attention_heads
    if model.mla is not None:
        return _mla_attention(model, tp)
    d = model.head_dim
    kv = kv_heads_per_gpu(model, tp)
    linear = 2 * h * heads * d / tp + 2 * h * kv * d
    plain = float(model.norms_per_layer * h + (2 * d if model.qk_norm else 0))
    if model.qkv_bias:
        plain += heads * d / tp + 2 * kv * d
    if model.o_bias:
        plain += h + heads / tp  # o_proj bias and gpt-oss attention sinks
    return ParamCount(plain=plain, linear=linear)


def _mla_attention(model: ModelSpec, tp: int) -> ParamCount:
    mla = model.mla
    assert mla is not None
    h, heads = model.hidden_size, model.num_attention_heads
    qk_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim
    if mla.q_lora_rank:
        q_linear = h * mla.q_lora_rank + mla.q_lora_rank * heads * qk_dim / tp
        q_norm = mla.q_lora_rank
    else:
        q_linear, q_norm = h * heads * qk_dim / tp, 0
    kv_a = h * (mla.kv_lora_rank + mla.qk_rope_head_dim)  # replicated down-projection
    kv_b = mla.kv_lora_rank * heads * (mla.qk_nope_head_dim + mla.v_head_dim) / tp
    o = heads * mla.v_head_dim * h / tp
    plain = model.norms_per_layer * h + q_norm + mla.kv_lora_rank
    return ParamCount(plain=plain, linear=q_linear + kv_a + kv_b + o)


def _mlp(model: ModelSpec, layer: int, tp: int, expert_align: int = 1) -> ParamCount:
    h = model.hidden_size
    moe = model.moe
    if moe is None or not model.moe_layers[layer]:
        return ParamCount(linear=3 * h * model.intermediate_size / tp)
    width = moe.expert_width / tp
    if expert_align > 1:
        width = math.ceil(width / expert_align) * expert_align
    experts = moe.num_experts * 3 * h * width
    router = h * moe.num_experts
    plain = float(router)
    if moe.has_expert_bias:
        plain += moe.num_experts * (1 + (2 * moe.expert_width + h) / tp)
    shared = 3 * h * moe.shared_width / tp
    return ParamCount(plain=plain, linear=shared, expert=experts)


def layer_params(model: ModelSpec, layer: int, tp: int, expert_align: int = 1) -> ParamCount:
    """Parameters of one decoder layer held by one TP rank."""
    return _attention(model, tp) + _mlp(model, layer, tp, expert_align)


def stage_params(model: ModelSpec, tp: int, pp: int, stage: int,
                 expert_align: int = 1) -> ParamCount:
    """Parameters one GPU of pipeline stage `stage` holds (expert widths padded per rank to a
    multiple of `expert_align`, as some quantized MoE kernels allocate them)."""
    layers = pp_stage_layers(model.num_layers, pp)[stage]
    total = ParamCount()
    for layer in layers:
        total = total + layer_params(model, layer, tp, expert_align)
    vocab_shard = padded_vocab(model.vocab_size) * model.hidden_size / tp
    if stage == 0:
        total = total + ParamCount(plain=vocab_shard + model.vision_params / tp)
    if stage == pp - 1:
        lm_head = vocab_shard if (not model.tie_word_embeddings or pp > 1) else 0.0
        total = total + ParamCount(plain=lm_head + model.hidden_size)
    return total + ParamCount(plain=rotary_cache_elements(model))


def rotary_cache_elements(model: ModelSpec) -> float:
    """get_rope() keeps a cos/sin table of max_position x rotary_dim in the model dtype."""
    rotary_dim = model.mla.qk_rope_head_dim if model.mla else model.head_dim
    return float(model.max_position_embeddings * rotary_dim)


def weights_gib_per_stage(
    model: ModelSpec, tp: int, pp: int, dtype_bytes: int, quantization: str
) -> list[float]:
    precision = Precision.of(model, dtype_bytes, quantization)
    align = MXFP4_EXPERT_ALIGN if quantization == "mxfp4" else 1
    return [stage_params(model, tp, pp, s, align).bytes(precision) / GIB for s in range(pp)]


def total_params(model: ModelSpec) -> float:
    return stage_params(model, 1, 1, 0).total - rotary_cache_elements(model)


def checkpoint_bytes(model: ModelSpec) -> float:
    """Size of the safetensors download, from the checkpoint's own dtype and quantization."""
    quant = model.native_quantization or "none"
    precision = Precision.of(model, model.dtype_bytes, quant)
    if quant == "mxfp4":
        precision = Precision(precision.plain, precision.linear, CHECKPOINT_MXFP4_BYTES)
    weights = stage_params(model, 1, 1, 0).bytes(precision)
    return weights - rotary_cache_elements(model) * precision.plain

"""Weight memory per GPU under tensor / pipeline parallelism and quantization.

Counts parameters the way vLLM shards them: column/row-parallel linears, the vocab-parallel
embedding and lm_head are split by TP; norms, routers and MLA down-projections are replicated;
K/V projections are replicated once TP exceeds the KV-head count. Pipeline stages follow
`get_pp_indices` (vllm/distributed/utils.py). Reproduces the logged "Model loading took X GiB"
within 1-2 % on the calibration set (tests/sizing/test_calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.quantity import GIB

VOCAB_PADDING = 64  # DEFAULT_VOCAB_PADDING_SIZE, vocab_parallel_embedding.py

# Bytes per parameter of a quantized linear weight, scales included.
QUANT_LINEAR_BYTES = {
    "fp8": 1.0,  # e4m3 + per-tensor / per-channel / 128x128-block scales (<0.03 %)
    "int8": 1.0,  # W8A8 + per-channel scales
    "int4": 0.5 + 2 / 128,  # GPTQ/AWQ/w4a16: 4-bit + one fp16 scale per group of 128
    # MXFP4 is 4.25 bits/param on disk; in memory vLLM pads the expert matrices for its
    # kernels. 0.579 B/param is fitted on gpt-oss-20b (13.64 GiB) and -120b (65.97 GiB).
    "mxfp4": 0.579,
}
CHECKPOINT_MXFP4_BYTES = 4.25 / 8
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


def _mlp(model: ModelSpec, layer: int, tp: int) -> ParamCount:
    h = model.hidden_size
    moe = model.moe
    if moe is None or not model.moe_layers[layer]:
        return ParamCount(linear=3 * h * model.intermediate_size / tp)
    experts = moe.num_experts * 3 * h * moe.expert_width / tp
    router = h * moe.num_experts
    plain = float(router)
    if moe.has_expert_bias:
        plain += moe.num_experts * (1 + (2 * moe.expert_width + h) / tp)
    shared = 3 * h * moe.shared_width / tp
    return ParamCount(plain=plain, linear=shared, expert=experts)


def layer_params(model: ModelSpec, layer: int, tp: int) -> ParamCount:
    """Parameters of one decoder layer held by one TP rank."""
    return _attention(model, tp) + _mlp(model, layer, tp)


def stage_params(model: ModelSpec, tp: int, pp: int, stage: int) -> ParamCount:
    """Parameters one GPU of pipeline stage `stage` holds."""
    layers = pp_stage_layers(model.num_layers, pp)[stage]
    total = ParamCount()
    for layer in layers:
        total = total + layer_params(model, layer, tp)
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
    return [stage_params(model, tp, pp, s).bytes(precision) / GIB for s in range(pp)]


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

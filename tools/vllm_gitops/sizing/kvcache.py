"""KV-cache layout: bytes per token, blocks, tokens, concurrency and the one-request fit check.

Follows vLLM V1: one KV spec per attention layer (`get_kv_cache_spec`), page sizes from
vllm/v1/kv_cache_interface.py, grouping and block counts from vllm/v1/core/kv_cache_utils.py
(`get_kv_cache_groups`, `get_kv_cache_config_from_groups`,
`get_max_concurrency_for_kv_cache_config`, `check_enough_kv_cache_memory`). V0 and the
hybrid allocator switched off treat every layer as full attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vllm_gitops.sizing.models import FULL, SLIDING, ModelSpec
from vllm_gitops.sizing.weights import kv_heads_per_gpu


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class KvLayout:
    """The KV cache of one GPU (one TP rank of one pipeline stage)."""

    block_size: int
    page_bytes: int  # one block of one layer
    kinds: tuple[str, ...]  # FULL / SLIDING per attention layer on this GPU
    sliding_window: int | None
    max_num_batched_tokens: int
    group_size: int  # layers sharing one block table
    groups: tuple[str, ...]  # the kind of each KV-cache group

    @property
    def bytes_per_token(self) -> int:
        """Full-attention-equivalent bytes per token across this GPU's layers."""
        return self.page_bytes * len(self.kinds) // self.block_size

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    def num_blocks(self, available_bytes: float) -> int:
        return max(0, int(available_bytes // (self.page_bytes * self.group_size)))

    def blocks_for_request(self, kind: str, max_model_len: int) -> int:
        """Blocks one request of max_model_len needs in one layer of this kind."""
        if kind == SLIDING and self.sliding_window:
            window = min(self.sliding_window - 1 + self.max_num_batched_tokens, max_model_len)
            return cdiv(window, self.block_size) + 1
        return cdiv(max_model_len, self.block_size)

    def bytes_for_request(self, max_model_len: int) -> int:
        """check_enough_kv_cache_memory(): the sum over layers of max_memory_usage_bytes."""
        return sum(self.blocks_for_request(k, max_model_len) for k in self.kinds) * self.page_bytes

    def reported_tokens(self, num_blocks: int) -> int:
        """'GPU KV cache size: N tokens' as vLLM <= 0.32 logs it."""
        return num_blocks // self.num_groups * self.block_size

    def max_concurrency(self, num_blocks: int, max_model_len: int) -> float:
        per_request = sum(self.blocks_for_request(k, max_model_len) for k in self.groups)
        return num_blocks / per_request if per_request else 0.0

    def longest_fitting_len(self, available_bytes: float, upper: int) -> int:
        """estimate_max_model_len(): the longest max_model_len whose one request fits."""
        if self.bytes_for_request(1) > available_bytes:
            return 0
        low, high = 1, upper
        while low < high:
            mid = (low + high + 1) // 2
            if self.bytes_for_request(mid) <= available_bytes:
                low = mid
            else:
                high = mid - 1
        return low


def _groups(kinds: tuple[str, ...], hybrid: bool) -> tuple[int, tuple[str, ...]]:
    """get_kv_cache_groups(): one group for uniform models; for hybrids, every kind is cut into
    groups of the smallest kind's layer count (Gemma-3 40 sliding + 8 full -> 6 groups of 8)."""
    counts = {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)}
    if not hybrid or len(counts) == 1:
        return len(kinds), (kinds[0],)
    size = min(counts.values())
    groups: list[str] = []
    for kind, count in counts.items():
        groups.extend([kind] * math.ceil(count / size))
    return size, tuple(groups)


def kv_layout(
    model: ModelSpec,
    layers: range,
    tp: int,
    kv_dtype_bytes: int,
    block_size: int,
    max_num_batched_tokens: int,
    hybrid_allocator: bool,
) -> KvLayout:
    """The KV layout of one GPU holding `layers` of the model at tensor-parallel size `tp`."""
    kinds = tuple(model.layer_types[i] for i in layers)
    if not hybrid_allocator:
        kinds = tuple(FULL for _ in kinds)
    if model.mla is not None:  # MLA: one latent "head", no K/V split, not divided by TP
        page = block_size * (model.mla.kv_lora_rank + model.mla.qk_rope_head_dim) * kv_dtype_bytes
    else:
        page = 2 * block_size * kv_heads_per_gpu(model, tp) * model.head_dim * kv_dtype_bytes
    size, groups = _groups(kinds, hybrid_allocator)
    return KvLayout(
        block_size=block_size,
        page_bytes=page,
        kinds=kinds,
        sliding_window=model.sliding_window if hybrid_allocator else None,
        max_num_batched_tokens=max_num_batched_tokens,
        group_size=size,
        groups=groups,
    )

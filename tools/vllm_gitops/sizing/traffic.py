"""Concurrency for the traffic a server really gets, next to the worst case vLLM logs.

vLLM logs "Maximum concurrency for <max_model_len> tokens per request": how many requests fit
when every one is full length. The scheduler allocates KV blocks as a request grows
(vllm/v1/core/kv_cache_manager.py `allocate_slots`), so with typical chats of a few thousand
tokens far more requests run at once, up to `max_num_seqs`
(https://docs.vllm.ai/en/latest/configuration/optimization.html). A `--max-num-seqs` sized
for the worst case therefore caps a gateway far below what its memory holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import Gpu
from vllm_gitops.sizing.memory import MemoryPlan, evaluate
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.version import VllmVersion

# A typical chat / RAG request: a 2k-token prompt (system prompt, history, retrieved context)
# and a 500-token answer.
DEFAULT_PROMPT_TOKENS = 2000
DEFAULT_OUTPUT_TOKENS = 500
# The configured max_num_seqs "caps" the server when memory holds at least this many times
# more requests of the expected shape.
CAP_FACTOR = 2.0
# vLLM's largest default max_num_seqs (EngineArgs._set_default_args): beyond it the sampler
# warm-up buffers (max_num_seqs x vocab) grow with little throughput gained.
MAX_RECOMMENDED_SEQS = 1024
# Chunked-prefill budget: a whole typical prompt per step, rounded to this granularity.
BATCHED_TOKENS_STEP = 2048


@dataclass(frozen=True)
class RequestShape:
    prompt_tokens: int = DEFAULT_PROMPT_TOKENS
    output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise ToolError("--prompt-tokens and --output-tokens must be positive integers, got "
                            f"{self.prompt_tokens} and {self.output_tokens}")

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass(frozen=True)
class Concurrency:
    """How many requests of one shape run at once, and the flags that let them."""

    shape: RequestShape
    typical_requests: float  # requests of this shape the KV cache holds at once
    worst_case_requests: float  # requests of max_model_len tokens (vLLM's logged figure)
    max_model_len: int
    configured_max_num_seqs: int
    configured_max_num_batched_tokens: int
    recommended_max_num_seqs: int
    recommended_max_num_batched_tokens: int

    @property
    def capped(self) -> bool:
        """max_num_seqs holds the server far below what its memory allows."""
        return self.typical_requests >= CAP_FACTOR * self.configured_max_num_seqs and (
            self.recommended_max_num_seqs > self.configured_max_num_seqs)

    @property
    def served_at_once(self) -> float:
        return min(self.typical_requests, float(self.configured_max_num_seqs))

    def cap_message(self) -> str:
        return (f"--max-num-seqs={self.configured_max_num_seqs} caps the server at "
                f"{self.configured_max_num_seqs} concurrent requests, but its KV cache holds "
                f"~{self.typical_requests:.0f} requests of {self.shape.prompt_tokens}+"
                f"{self.shape.output_tokens} tokens ({self.worst_case_requests:.1f} at the full "
                f"{self.max_model_len}-token context; vLLM allocates KV pages as requests grow): "
                f"use --max-num-seqs={self.recommended_max_num_seqs}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.shape.prompt_tokens,
            "output_tokens": self.shape.output_tokens,
            "typical_requests": round(self.typical_requests, 1),
            "worst_case_requests": round(self.worst_case_requests, 2),
            "max_model_len": self.max_model_len,
            "configured_max_num_seqs": self.configured_max_num_seqs,
            "configured_max_num_batched_tokens": self.configured_max_num_batched_tokens,
            "recommended_max_num_seqs": self.recommended_max_num_seqs,
            "recommended_max_num_batched_tokens": self.recommended_max_num_batched_tokens,
            "capped_by_max_num_seqs": self.capped,
        }


def requests_held(mem: MemoryPlan, tokens: int) -> float:
    """Requests of `tokens` tokens (capped at max_model_len) the KV blocks hold at once."""
    stage = mem.binding_stage
    if stage is None or mem.num_blocks <= 0:
        return 0.0
    return stage.layout.max_concurrency(mem.num_blocks, min(tokens, mem.args.max_model_len))


def _round_down(value: float) -> int:
    whole = int(value)
    return whole - whole % 8 if whole >= 16 else max(1, whole)


def _batched_tokens(shape: RequestShape, seqs: int, configured: int) -> int:
    prompt = -(-shape.prompt_tokens // BATCHED_TOKENS_STEP) * BATCHED_TOKENS_STEP
    return max(configured, prompt, seqs)


def concurrency_for(model: ModelSpec, gpu: Gpu, engine_args: EngineArgs, version: VllmVersion,
                mem: MemoryPlan, shape: RequestShape | None = None) -> Concurrency | None:
    """Requests of `shape` the server holds, and max_num_seqs / max_num_batched_tokens for it.

    The recommendation is checked by planning again with it: more sequences mean larger
    sampler buffers (fewer KV blocks, a larger warm-up); it is halved until vLLM starts."""
    if not mem.starts or mem.num_blocks <= 0:
        return None
    shape = shape or RequestShape()
    args = mem.args
    typical = requests_held(mem, shape.tokens)
    seqs = min(MAX_RECOMMENDED_SEQS, _round_down(typical))
    tokens = _batched_tokens(shape, seqs, args.max_num_batched_tokens)
    while seqs > args.max_num_seqs:
        trial = replace(engine_args, max_num_seqs=seqs, max_num_batched_tokens=tokens)
        checked = evaluate(model, gpu, trial, version)
        if checked.starts and requests_held(checked, shape.tokens) >= seqs:
            break
        seqs = max(args.max_num_seqs, _round_down(seqs / 2))
        tokens = _batched_tokens(shape, seqs, args.max_num_batched_tokens)
    if seqs <= args.max_num_seqs:
        seqs, tokens = args.max_num_seqs, _batched_tokens(shape, args.max_num_seqs,
                                                          args.max_num_batched_tokens)
    return Concurrency(
        shape=shape, typical_requests=typical, worst_case_requests=mem.max_concurrency,
        max_model_len=args.max_model_len, configured_max_num_seqs=args.max_num_seqs,
        configured_max_num_batched_tokens=args.max_num_batched_tokens,
        recommended_max_num_seqs=seqs, recommended_max_num_batched_tokens=tokens,
    )

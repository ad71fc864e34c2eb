"""vLLM engine arguments as the sizing needs them, with vLLM's own defaults filled in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.sizing.hardware import Gpu
from vllm_gitops.sizing.models import DTYPE_BYTES, ModelSpec
from vllm_gitops.sizing.version import VllmVersion
from vllm_gitops.sizing.weights import QUANTIZATIONS

DTYPE_ALIASES = {"half": "float16", "float": "float32", "fp16": "float16", "bf16": "bfloat16",
                 "fp32": "float32"}
DTYPES = ("auto", "bfloat16", "float16", "float32")
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")
DEFAULT_BLOCK_SIZE = 16  # CudaPlatform.check_and_update_config


@dataclass(frozen=True)
class EngineArgs:
    """The flags a user passes (`vllm serve` names); None means "vLLM's default"."""

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    dtype: str = "auto"
    kv_cache_dtype: str = "auto"
    quantization: str | None = None  # None: whatever the checkpoint is
    block_size: int | None = None
    enforce_eager: bool = False
    disable_hybrid_kv_cache_manager: bool = False
    # Not a flag: whether FlashInfer is importable. The vllm/vllm-openai image ships it; a pip
    # install of vLLM <= 0.11.0 does not, and then samples with the sort (see
    # VllmVersion.sorts_full_vocab_without_flashinfer).
    flashinfer_installed: bool = True

    def validate(self) -> None:
        """Reject values vLLM could never accept (bad input, exit 2)."""
        _positive("--tensor-parallel-size", self.tensor_parallel_size)
        _positive("--pipeline-parallel-size", self.pipeline_parallel_size)
        for flag, value in (("--max-model-len", self.max_model_len),
                            ("--max-num-seqs", self.max_num_seqs),
                            ("--max-num-batched-tokens", self.max_num_batched_tokens),
                            ("--block-size", self.block_size)):
            if value is not None:
                _positive(flag, value)
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ToolError(
                f"--gpu-memory-utilization must be in (0, 1], got {self.gpu_memory_utilization}"
            )
        if normalise_dtype(self.dtype) not in DTYPES:
            raise ToolError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.kv_cache_dtype not in KV_CACHE_DTYPES:
            raise ToolError(f"--kv-cache-dtype must be auto or fp8, got {self.kv_cache_dtype!r}")
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ToolError(
                f"--quantization must be one of {', '.join(QUANTIZATIONS)}, "
                f"got {self.quantization!r}"
            )


def _positive(flag: str, value: int) -> None:
    if value < 1:
        raise ToolError(f"{flag} must be a positive integer, got {value}")


def normalise_dtype(dtype: str) -> str:
    return DTYPE_ALIASES.get(dtype.lower(), dtype.lower())


@dataclass(frozen=True)
class ResolvedArgs:
    """Every value the engine will run with, defaults resolved as vLLM resolves them."""

    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpu_memory_utilization: float
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    dtype: str
    kv_cache_dtype: str
    quantization: str
    block_size: int
    enforce_eager: bool
    hybrid_kv_cache_manager: bool
    defaults_used: tuple[str, ...]
    flashinfer_installed: bool = True

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def kv_dtype_bytes(self) -> int:
        return 1 if self.kv_cache_dtype.startswith("fp8") else self.dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["defaults_used"] = list(self.defaults_used)
        return out


def default_batch_limits(gpu: Gpu, version: VllmVersion, max_model_len: int) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) as EngineArgs._set_default_args picks them
    for `vllm serve`: by GPU memory and name (the A100 exception), per version."""
    if version.engine == "V0":
        # V0 without chunked prefill profiles a whole max_model_len prompt (issue #10517);
        # from 32k tokens up it turns chunked prefill on.
        tokens = max(max_model_len, 2048) if max_model_len <= 32768 else 2048
        return tokens, 256
    total = gpu.torch_total_gib
    if version.has_blackwell_defaults and total >= 160:
        return 16384, 1024
    if total >= 70 and "a100" not in gpu.device_name.lower():
        return 8192, 1024
    return 2048, 256


def _resolve_dtype(requested: str, model: ModelSpec, gpu: Gpu) -> str:
    dtype = normalise_dtype(requested)
    if dtype != "auto":
        return dtype
    config = normalise_dtype(model.torch_dtype)
    if config == "float32":  # vLLM serves float32 checkpoints in 16-bit by default
        config = "bfloat16"
    if config == "bfloat16" and not gpu.supports_bf16:
        return "float16"  # auto falls back on pre-Ampere GPUs
    return config if config in DTYPES else "bfloat16"


def effective_quantization(requested: str | None, model: ModelSpec) -> str:
    """`--quantization none` (or nothing) keeps the checkpoint's own format."""
    if requested in (None, "none"):
        return model.native_quantization or "none"
    return requested


def resolve(args: EngineArgs, model: ModelSpec, gpu: Gpu, version: VllmVersion) -> ResolvedArgs:
    args.validate()
    defaults: list[str] = []
    max_len = args.max_model_len
    if max_len is None:
        max_len = model.derived_max_model_len
        defaults.append("max_model_len")
    tokens, seqs = default_batch_limits(gpu, version, max_len)
    if args.max_num_batched_tokens is None:
        defaults.append("max_num_batched_tokens")
    if args.max_num_seqs is None:
        defaults.append("max_num_seqs")
        seqs = min(seqs, args.max_num_batched_tokens or tokens)
    return ResolvedArgs(
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_model_len=max_len,
        max_num_seqs=args.max_num_seqs or seqs,
        max_num_batched_tokens=args.max_num_batched_tokens or tokens,
        dtype=_resolve_dtype(args.dtype, model, gpu),
        kv_cache_dtype=args.kv_cache_dtype,
        quantization=effective_quantization(args.quantization, model),
        block_size=args.block_size or DEFAULT_BLOCK_SIZE,
        enforce_eager=args.enforce_eager,
        hybrid_kv_cache_manager=version.engine == "V1" and not args.disable_hybrid_kv_cache_manager,
        defaults_used=tuple(defaults),
        flashinfer_installed=args.flashinfer_installed,
    )

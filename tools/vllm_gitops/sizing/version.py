"""vLLM versions: parse image tags / flags and name the behaviour changes the sizing depends on."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vllm_gitops.errors import ToolError

# Assumed when neither the image tag nor --vllm-version pins one (e.g. `:latest`).
DEFAULT_VERSION = "0.11.0"

_VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class VllmVersion:
    major: int
    minor: int
    patch: int = 0

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def at_least(self, minor: int, major: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    @property
    def engine(self) -> str:
        """V1 is the default engine from 0.8; older releases run V0."""
        return "V1" if self.at_least(8) else "V0"

    @property
    def subtracts_cudagraph_estimate(self) -> bool:
        """VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 since 0.21."""
        return self.at_least(21)

    @property
    def warms_up_sampler(self) -> bool:
        """compile_or_warm_up_model() runs a max_num_seqs sampler pass after KV allocation."""
        return self.at_least(8)

    def at_least_patch(self, minor: int, patch: int) -> bool:
        return (self.major, self.minor, self.patch) >= (0, minor, patch)

    @property
    def sorts_full_vocab_in_sampler(self) -> bool:
        """The profile and warm-up sampler passes (top_k = vocab - 1, top_p = 0.9) go through
        PyTorch's sort-based apply_top_k_top_p whatever is installed: from 0.11.1, where the
        FlashInfer top-k/top-p sampler became opt-in (VLLM_USE_FLASHINFER_SAMPLER, merged
        2025-10-15 after 0.11.0: https://github.com/vllm-project/vllm/pull/26859), until 0.17,
        whose Triton top-k/top-p kernel (https://github.com/vllm-project/vllm/pull/33538)
        replaced the sort for large batches. The sort keeps fp32 values and int64 indices of
        the whole max_num_seqs x vocab matrix alive next to the logits. Measured: Qwen3-14B on
        one H100 logs 5.64 GiB of peak activation on 0.15 and 0.16, 2.23 GiB on 0.17 and 0.18
        (https://github.com/jgchn/llm-d-planner/blob/a95e9f62e5de8cb5d2beb5f5279e7271a231416d/
        accuracy/results/version-sweep/run_matrix.md)."""
        return self.at_least_patch(11, 1) and not self.at_least(17)

    @property
    def sorts_full_vocab_without_flashinfer(self) -> bool:
        """V1 before 0.11.1 samples with FlashInfer when it is importable (None means on:
        https://github.com/vllm-project/vllm/blob/v0.9.2/vllm/v1/sample/ops/topk_topp_sampler.py#L32-L63,
        the same in https://github.com/vllm-project/vllm/blob/v0.11.0/vllm/v1/sample/ops/topk_topp_sampler.py#L37-L70)
        and falls back to the sort otherwise. The vllm/vllm-openai image installs FlashInfer
        (https://github.com/vllm-project/vllm/blob/v0.9.2/docker/Dockerfile#L378-L388); the
        pip wheel does not require it up to 0.11.0 (only the `vllm[flashinfer]` extra:
        https://github.com/vllm-project/vllm/blob/v0.11.0/setup.py#L669), so a pip install
        sorts."""
        return self.warms_up_sampler and not self.at_least(17)

    @property
    def has_blackwell_defaults(self) -> bool:
        """The >= 160 GiB tier of _set_default_args (16384 tokens) is in 0.33."""
        return self.at_least(33)

    @property
    def reserves_null_block(self) -> bool:
        """0.33 subtracts one (null) block before the max_model_len check and reports
        tokens as max_concurrency x max_model_len."""
        return self.at_least(33)


def parse_version(text: str) -> VllmVersion:
    match = _VERSION_RE.search(text or "")
    if not match:
        raise ToolError(f"cannot read a vLLM version from {text!r} (expected e.g. 0.11.0)")
    major, minor, patch = match.groups()
    return VllmVersion(int(major), int(minor), int(patch or 0))


def version_from_image(image: str) -> VllmVersion | None:
    """`vllm/vllm-openai:v0.11.0@sha256:...` -> 0.11.0; None for `latest` or untagged images."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.split(":", 1)[1]
    match = _VERSION_RE.match(tag)
    if not match:
        return None
    return parse_version(match.group(0))

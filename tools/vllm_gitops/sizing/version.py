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

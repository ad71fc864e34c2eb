"""Helpers shared by the sizing tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

from support import Run, run_tool


def dense_config(**overrides: Any) -> dict[str, Any]:
    """A small Llama-shaped config for synthetic rule tests."""
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 12288, "num_hidden_layers": 32, "num_attention_heads": 48,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 64 * 6 * 500,
        "max_position_embeddings": 32768, "torch_dtype": "bfloat16",
        "tie_word_embeddings": False,
    }
    cfg.update(overrides)
    return cfg


def run_plan(*args: str, env: dict[str, str] | None = None) -> Run:
    """`tools/plan ARGS` in a fresh interpreter, as a user runs it."""
    return run_tool("vllm_gitops.cli.plan", *args, env=env)

"""Model catalog: the `config.json` facts vLLM's memory accounting depends on.

Built-in models live in `catalog/models/<org>/<name>/config.json` at the repository root (the
Hugging Face file, trimmed to the fields that matter). A user adds a model by dropping its
`config.json` there, by passing `--model-config FILE`, or, when online, with `fetch_config()`,
which downloads it from the Hugging Face Hub and caches it in that folder.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic

REPO_ROOT = Path(__file__).resolve().parents[3]
CATALOG_ENV = "VLLM_GITOPS_MODEL_CATALOG"
# HF_ENDPOINT is the Hub's own variable for mirrors and private endpoints:
# https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables
HUB_URL = "{endpoint}/{model}/resolve/main/{file}"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")

FULL = "full"
SLIDING = "sliding"

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8": 1, "fp8": 1}
# Rope types whose factor vLLM does NOT multiply into the derived max_model_len
# (`_get_and_verify_max_len`, vllm/config/model.py).
ROPE_TYPES_NOT_SCALING_LEN = {
    "su", "longrope", "llama3", "yarn", "deepseek_yarn", "mrope", "default",
}


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    experts_per_token: int
    expert_width: int  # moe_intermediate_size (per expert)
    shared_width: int = 0  # total width of the always-on shared expert(s)
    has_expert_bias: bool = False  # gpt-oss: biases on expert projections and router


@dataclass(frozen=True)
class MLASpec:
    kv_lora_rank: int
    q_lora_rank: int | None
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class ModelSpec:
    """Architecture facts of one model, normalised across HF config dialects."""

    model_id: str
    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    derived_max_model_len: int
    torch_dtype: str
    layer_types: tuple[str, ...]  # FULL or SLIDING per decoder layer
    sliding_window: int | None
    moe: MoESpec | None
    moe_layers: tuple[bool, ...]  # which layers use the MoE block
    mla: MLASpec | None
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool
    norms_per_layer: int
    native_quantization: str | None  # fp8 | int8 | int4 | mxfp4
    vision_params: int  # parameters of a vision tower + projector, 0 for text-only
    source: str

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def is_hybrid(self) -> bool:
        return len(set(self.layer_types)) > 1

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.torch_dtype, 2)


# ---------------------------------------------------------------- parsing


def _first(cfg: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def _required_int(cfg: dict[str, Any], model_id: str, *keys: str) -> int:
    value = _first(cfg, *keys)
    if value is None:
        raise ToolError(f"{model_id}: config.json has none of {', '.join(keys)}")
    return int(value)


# Defaults of transformers' text configs, which sparse multimodal configs (llava-hf, Gemma 3)
# leave out of their text_config (v4.50.0 configuration_llama.py / configuration_gemma3.py):
# https://github.com/huggingface/transformers/blob/v4.50.0/src/transformers/models/llama/configuration_llama.py
# https://github.com/huggingface/transformers/blob/v4.50.0/src/transformers/models/gemma3/configuration_gemma3.py
TEXT_CONFIG_DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {
        "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
        "num_hidden_layers": 32, "num_attention_heads": 32, "max_position_embeddings": 2048,
    },
    "gemma3_text": {
        "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
        "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
        "head_dim": 256, "max_position_embeddings": 131072, "sliding_window": 4096,
        "sliding_window_pattern": 6,
    },
}


def _text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Multimodal configs nest the language model under text_config / llm_config."""
    nested = _first(cfg, "text_config", "llm_config", "language_config")
    if not isinstance(nested, dict):
        return cfg
    merged = {k: v for k, v in cfg.items() if k not in ("text_config", "vision_config")}
    defaults = TEXT_CONFIG_DEFAULTS.get(str(nested.get("model_type")), {})
    merged.update({k: v for k, v in defaults.items() if k not in nested})
    merged.update({k: v for k, v in nested.items() if v is not None})
    return merged


def _layer_types(cfg: dict[str, Any], num_layers: int) -> tuple[tuple[str, ...], int | None]:
    window = cfg.get("sliding_window")
    explicit = cfg.get("layer_types")
    if isinstance(explicit, list) and len(explicit) == num_layers:
        kinds = tuple(SLIDING if "sliding" in str(t) else FULL for t in explicit)
        return kinds, int(window) if window and SLIDING in kinds else None
    if not window or cfg.get("use_sliding_window") is False:
        return (FULL,) * num_layers, None
    pattern = cfg.get("sliding_window_pattern")
    model_type = str(cfg.get("model_type", ""))
    if pattern:  # Gemma 3: every pattern-th layer is global
        kinds = tuple(FULL if (i + 1) % int(pattern) == 0 else SLIDING for i in range(num_layers))
    elif model_type == "gemma2":  # Gemma 2: even layers slide (vllm gemma2.py)
        kinds = tuple(SLIDING if i % 2 == 0 else FULL for i in range(num_layers))
    else:  # Mistral v0.1 style: every layer slides
        kinds = (SLIDING,) * num_layers
    return kinds, int(window)


# Llama 4: MoE layers hold a shared expert of `intermediate_size`, dense layers an MLP of
# `intermediate_size_mlp`, every `interleave_moe_layer_step`-th layer is MoE:
# https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama4/modeling_llama4.py
LLAMA4_MOE = "llama4_text"


def _moe(cfg: dict[str, Any]) -> MoESpec | None:
    experts = _first(cfg, "num_experts", "num_local_experts", "n_routed_experts")
    if not experts:
        return None
    width = int(_first(cfg, "moe_intermediate_size", "intermediate_size"))
    shared = int(cfg.get("shared_expert_intermediate_size") or 0)
    shared += int(cfg.get("n_shared_experts") or 0) * width
    if str(cfg.get("model_type")) == LLAMA4_MOE:  # one always-on shared expert
        shared += width
    return MoESpec(
        num_experts=int(experts),
        experts_per_token=int(_first(cfg, "num_experts_per_tok", "experts_per_token", default=2)),
        expert_width=width,
        shared_width=shared,
        has_expert_bias=str(cfg.get("model_type")) == "gpt_oss",
    )


def _moe_layers(cfg: dict[str, Any], num_layers: int, moe: MoESpec | None) -> tuple[bool, ...]:
    if moe is None:
        return (False,) * num_layers
    first_dense = int(cfg.get("first_k_dense_replace") or 0)
    step = max(1, int(_first(cfg, "decoder_sparse_step", "moe_layer_freq",
                             "interleave_moe_layer_step", default=1)))
    dense_only = set(cfg.get("mlp_only_layers") or [])
    return tuple(
        i >= first_dense and i not in dense_only and (i + 1) % step == 0 for i in range(num_layers)
    )


def _mla(cfg: dict[str, Any]) -> MLASpec | None:
    if not cfg.get("kv_lora_rank"):
        return None
    return MLASpec(
        kv_lora_rank=int(cfg["kv_lora_rank"]),
        q_lora_rank=int(cfg["q_lora_rank"]) if cfg.get("q_lora_rank") else None,
        qk_nope_head_dim=int(cfg.get("qk_nope_head_dim", 128)),
        qk_rope_head_dim=int(cfg.get("qk_rope_head_dim", 64)),
        v_head_dim=int(cfg.get("v_head_dim", 128)),
    )


def _native_quantization(cfg: dict[str, Any]) -> str | None:
    qcfg = cfg.get("quantization_config")
    if not isinstance(qcfg, dict):
        return None
    method = str(qcfg.get("quant_method", "")).lower()
    if not method and (qcfg.get("producer") or {}).get("name") == "modelopt":
        # A ModelOpt hf_quant_config.json (merged here) names no quant_method; vLLM detects it:
        # https://github.com/vllm-project/vllm/blob/main/docs/features/quantization/modelopt.md
        algo = str((qcfg.get("quantization") or {}).get("quant_algo", "")).upper()
        return "fp8" if algo.startswith("FP8") else None
    if method in ("fp8", "fbgemm_fp8", "modelopt"):
        return "fp8"
    if method == "mxfp4":
        return "mxfp4"
    if method in ("gptq", "awq", "gptq_marlin", "awq_marlin", "bitsandbytes"):
        bits = int(qcfg.get("bits", 4) or 4)
        if qcfg.get("load_in_8bit"):
            bits = 8
        return "int8" if bits == 8 else "int4"
    if method == "compressed-tensors":
        return _compressed_tensors_scheme(qcfg)
    return None


def _compressed_tensors_scheme(qcfg: dict[str, Any]) -> str | None:
    for group in (qcfg.get("config_groups") or {}).values():
        weights = group.get("weights") or {}
        bits = int(weights.get("num_bits", 16))
        if bits == 8:
            return "fp8" if weights.get("type") == "float" else "int8"
        if bits == 4:
            return "int4"
    return None


def _vision_params(cfg: dict[str, Any], text_hidden: int) -> int:
    """Rough vision tower size: layers x (attention 4h^2 + MLP) + projector. ~1% of most models."""
    vision = cfg.get("vision_config")
    if not isinstance(vision, dict):
        return 0
    layers = int(_first(vision, "num_hidden_layers", "depth", default=0))
    # Qwen2-VL names the tower width embed_dim (its hidden_size is the LLM's) and gives mlp_ratio.
    hidden = int(_first(vision, "embed_dim", "hidden_size", default=0))
    width = int(_first(vision, "intermediate_size",
                       default=float(vision.get("mlp_ratio", 4)) * hidden))
    act = vision.get("hidden_act")  # SwiGLU (silu: 3 matrices) vs GELU MLP (2)
    gated = act == "silu" if act else str(cfg.get("model_type", "")).startswith("qwen2_5")
    mlp_mats = 3 if gated else 2
    merge = int(vision.get("spatial_merge_size", 1)) ** 2
    projector = hidden * merge * (hidden * merge if merge > 1 else 0) + hidden * merge * text_hidden
    projector *= 1 + len(vision.get("deepstack_visual_indexes") or [])  # Qwen3-VL: extra mergers
    return layers * (4 * hidden * hidden + mlp_mats * hidden * width) + projector


def _derived_max_len(cfg: dict[str, Any], max_pos: int) -> int:
    scaling = cfg.get("rope_scaling")
    if not isinstance(scaling, dict) or "factor" not in scaling:
        return max_pos
    rope_type = str(_first(scaling, "rope_type", "type", default="default"))
    if rope_type in ROPE_TYPES_NOT_SCALING_LEN or "gemma3" in str(cfg.get("model_type")):
        return max_pos
    return int(max_pos * float(scaling["factor"]))


def parse_config(cfg: dict[str, Any], model_id: str, source: str = "") -> ModelSpec:
    """Turn one HF config.json (any supported dialect) into a ModelSpec."""
    text = _text_config(cfg)
    layers = _required_int(text, model_id, "num_hidden_layers", "n_layer", "num_layers")
    hidden = _required_int(text, model_id, "hidden_size", "n_embd", "d_model")
    heads = _required_int(text, model_id, "num_attention_heads", "n_head")
    # ChatGLM names: multi_query_group_num, seq_length, ffn_hidden_size, padded_vocab_size
    # (the keys vLLM's ModelConfig also looks up).
    kv_heads = int(_first(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num",
                          default=heads))
    max_pos = _required_int(text, model_id, "max_position_embeddings", "n_positions", "max_seq_len",
                            "seq_length")
    moe = _moe(text)
    mla = _mla(text)
    layer_types, window = _layer_types(text, layers)
    model_type = str(text.get("model_type", ""))
    return ModelSpec(
        model_id=model_id,
        architecture=str((cfg.get("architectures") or ["unknown"])[0]),
        model_type=model_type,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=int(_first(text, "head_dim", default=hidden // heads)),
        intermediate_size=int(_first(text, "intermediate_size_mlp", "intermediate_size", "ffn_dim",
                                     "ffn_hidden_size", default=4 * hidden)),  # Llama 4: dense
        vocab_size=_required_int(text, model_id, "vocab_size", "padded_vocab_size"),
        tie_word_embeddings=bool(_first(text, "tie_word_embeddings", default=cfg.get(
            "tie_word_embeddings", model_type.startswith("gemma")))),
        max_position_embeddings=max_pos,
        derived_max_model_len=_derived_max_len(text, max_pos),
        torch_dtype=str(_first(cfg, "torch_dtype", "dtype",
                               default=text.get("torch_dtype", "bfloat16"))),
        layer_types=layer_types,
        sliding_window=window,
        moe=moe,
        moe_layers=_moe_layers(text, layers, moe),
        mla=mla,
        qkv_bias=bool(_first(text, "attention_bias", "add_qkv_bias",
                             default=model_type in ("qwen2", "qwen2_5_vl"))),
        o_bias=model_type == "gpt_oss",
        qk_norm=model_type.startswith(("qwen3", "gemma3")),
        norms_per_layer=4 if model_type.startswith("gemma") else 2,
        native_quantization=_native_quantization(cfg),
        vision_params=_vision_params(cfg, hidden),
        source=source,
    )


# ---------------------------------------------------------------- catalog


def catalog_dirs(extra: list[Path] | None = None) -> list[Path]:
    """Where model configs are looked up: --catalog dirs, $VLLM_GITOPS_MODEL_CATALOG, the repo's."""
    dirs = list(extra or [])
    if os.environ.get(CATALOG_ENV):
        dirs.append(Path(os.environ[CATALOG_ENV]))
    dirs.append(REPO_ROOT / "catalog" / "models")
    return dirs


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ToolError(f"cannot read model config: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise ToolError("a model config.json must hold a JSON object", file=str(path))
    return data


def load_model_config(path: Path, model_id: str | None = None) -> ModelSpec:
    """A model from an explicit config.json path (`--model-config FILE`)."""
    if not path.is_file():
        raise ToolError(f"model config file not found: {path}")
    cfg = _read_json(path)
    name = model_id or str(cfg.get("_name_or_path") or path.parent.name)
    return parse_config(cfg, name, source=str(path))


def _catalog_path(model_id: str, directory: Path) -> Path | None:
    direct = directory / model_id / "config.json"
    if direct.is_file():
        return direct
    wanted = model_id.lower()
    for candidate in directory.glob("*/*/config.json"):
        if f"{candidate.parent.parent.name}/{candidate.parent.name}".lower() == wanted:
            return candidate
    return None


def unknown_model_message(model_id: str) -> str:
    first = catalog_dirs()[-1]
    try:
        shown = first.relative_to(REPO_ROOT)
    except ValueError:
        shown = first
    return (
        f"unknown model {model_id!r}: it is not in the model catalog. Add it by either\n"
        f"  - dropping its Hugging Face config.json into {shown}/{model_id}/config.json,\n"
        f"  - passing --model-config path/to/config.json, or\n"
        f"  - running `tools/plan --model {model_id} --fetch` once while online "
        f"(uses $HF_TOKEN for gated models) to cache it in {shown}/."
    )


def load_model(model_id: str, extra_dirs: list[Path] | None = None) -> ModelSpec:
    """A model by Hugging Face id (or a local path holding config.json) from the catalog."""
    local = Path(model_id)
    if local.is_dir() and (local / "config.json").is_file():
        return load_model_config(local / "config.json", model_id)
    for directory in catalog_dirs(extra_dirs):
        path = _catalog_path(model_id, directory)
        if path is not None:
            cfg = _read_json(path)
            return parse_config(cfg, model_id, source=str(path))
    raise ToolError(unknown_model_message(model_id))


def list_models(extra_dirs: list[Path] | None = None) -> list[str]:
    ids: set[str] = set()
    for directory in catalog_dirs(extra_dirs):
        for path in directory.glob("*/*/config.json"):
            ids.add(f"{path.parent.parent.name}/{path.parent.name}")
    return sorted(ids)


def hub_token() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def fetch_config(model_id: str, destination: Path | None = None, timeout: float = 30.0) -> Path:
    """Download config.json from the Hugging Face Hub and cache it in the catalog folder."""
    if not _HUB_ID.match(model_id):
        raise ToolError(f"{model_id!r} is not a Hugging Face model id (expected org/name)")
    target_dir = (destination or catalog_dirs()[-1]) / model_id
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = HUB_URL.format(endpoint=endpoint, model=model_id, file="config.json")
    request = urllib.request.Request(url)
    token = hub_token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = " (gated model: set HF_TOKEN)" if exc.code in (401, 403) else ""
        raise ToolError(f"Hugging Face Hub answered {exc.code} for {model_id}{hint}") from exc
    except (urllib.error.URLError, TimeoutError) as exc:
        raise ToolError(f"cannot reach the Hugging Face Hub for {model_id}: {exc}") from exc
    try:
        cfg = json.loads(body)
    except ValueError:
        raise ToolError(f"the Hub's config.json for {model_id} is not JSON") from None
    if not isinstance(cfg, dict):
        raise ToolError(f"the Hub's config.json for {model_id} is not a JSON object")
    parse_config(cfg, model_id)  # refuse to cache a config we cannot use
    target_dir.mkdir(parents=True, exist_ok=True)
    path = target_dir / "config.json"
    write_atomic(path, json.dumps({**cfg, "_name_or_path": model_id}, indent=2) + "\n")
    return path

"""Model, GPU and instance catalogs: the facts the sizing rests on."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sizing_helpers import dense_config, run_plan

from support import REPO_ROOT
from vllm_gitops.errors import ToolError
from vllm_gitops.sizing.engine_args import EngineArgs, resolve
from vllm_gitops.sizing.hardware import (
    cheapest_instance,
    custom_gpu,
    find_gpu,
    find_instance,
    gpu_catalog,
    instance_catalog,
)
from vllm_gitops.sizing.memory import kv_bytes_per_token
from vllm_gitops.sizing.models import (
    SLIDING,
    list_models,
    load_model,
    load_model_config,
    parse_config,
)
from vllm_gitops.sizing.planner import legal_tp_sizes, plan
from vllm_gitops.sizing.version import parse_version
from vllm_gitops.sizing.weights import total_params

ISSUE_MODELS = [
    "Qwen/Qwen3-0.6B", "Qwen/Qwen3-8B", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B",
    "Qwen/Qwen3-235B-A22B", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-72B-Instruct",
    "meta-llama/Meta-Llama-3-8B", "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.3-70B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3", "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "google/gemma-2-9b-it", "google/gemma-3-12b-it", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "deepseek-ai/DeepSeek-V2-Lite-Chat",
    "deepseek-ai/DeepSeek-R1", "openai/gpt-oss-20b", "openai/gpt-oss-120b",
    # issue 10: families the public startup logs named and the catalog lacked
    "Qwen/Qwen2-7B", "Qwen/Qwen2-72B-Instruct", "Qwen/Qwen3-VL-8B-Instruct",
    "Qwen/Qwen3-VL-30B-A3B-Instruct", "Qwen/Qwen3-8B-FP8", "llava-hf/llava-1.5-7b-hf",
    "microsoft/phi-4", "meta-llama/Llama-3.2-11B-Vision-Instruct",
]

# (layers, hidden, heads, kv heads, head_dim, vocab, tied, max_model_len):
# vllm-memory-model.md §2
FACTS = {
    "Qwen/Qwen3-0.6B": (28, 1024, 16, 8, 128, 151936, True, 40960),
    "Qwen/Qwen3-14B": (40, 5120, 40, 8, 128, 151936, False, 40960),
    "Qwen/Qwen3-30B-A3B": (48, 2048, 32, 4, 128, 151936, False, 40960),
    "meta-llama/Llama-3.1-8B-Instruct": (32, 4096, 32, 8, 128, 128256, False, 131072),
    "google/gemma-2-9b-it": (42, 3584, 16, 8, 256, 256000, True, 8192),
    "google/gemma-3-12b-it": (48, 3840, 16, 8, 256, 262208, True, 131072),
    "openai/gpt-oss-20b": (24, 2880, 64, 8, 64, 201088, False, 131072),
    "Qwen/Qwen2.5-7B-Instruct": (28, 3584, 28, 4, 128, 152064, False, 32768),
}

# Published / derived totals in billions (vllm-memory-model.md §2 "Total params").
PARAMS_B = {
    "meta-llama/Llama-3.1-8B-Instruct": 8.03, "meta-llama/Llama-3.1-70B-Instruct": 70.55,
    "mistralai/Mistral-7B-Instruct-v0.3": 7.25, "Qwen/Qwen2.5-7B-Instruct": 7.62,
    "openai/gpt-oss-20b": 20.91, "openai/gpt-oss-120b": 116.83, "Qwen/Qwen3-14B": 14.77,
    "Qwen/Qwen3-30B-A3B": 30.53, "Qwen/Qwen3-235B-A22B": 235.09, "deepseek-ai/DeepSeek-R1": 671.03,
}


@pytest.mark.parametrize("model_id", ISSUE_MODELS)
def test_every_issue_model_is_in_the_catalog(model_id: str) -> None:
    model = load_model(model_id)
    assert model.num_layers > 0 and model.derived_max_model_len > 0


@pytest.mark.parametrize(("model_id", "facts"), FACTS.items())
def test_config_facts(model_id: str, facts: tuple[Any, ...]) -> None:
    m = load_model(model_id)
    assert (m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.head_dim,
            m.vocab_size, m.tie_word_embeddings, m.derived_max_model_len) == facts


@pytest.mark.parametrize(("model_id", "billions"), PARAMS_B.items())
def test_parameter_count_matches_published_totals(model_id: str, billions: float) -> None:
    assert total_params(load_model(model_id)) / 1e9 == pytest.approx(billions, abs=0.01)


def test_kv_bytes_per_token_by_hand() -> None:
    # Qwen3-14B: 2 (K,V) x 40 layers x 8 KV heads x 128 head_dim x 2 bytes = 163,840 (160 KiB)
    model = load_model("Qwen/Qwen3-14B")
    gpu = find_gpu("H100")
    version = parse_version("0.11.0")
    assert kv_bytes_per_token(model, resolve(EngineArgs(), model, gpu, version)) == 163_840
    tp4 = resolve(EngineArgs(tensor_parallel_size=4), model, gpu, version)
    assert kv_bytes_per_token(model, tp4) == 163_840 // 4
    fp8 = resolve(EngineArgs(kv_cache_dtype="fp8"), model, gpu, version)
    assert kv_bytes_per_token(model, fp8) == 163_840 // 2


def test_mla_kv_is_one_latent_per_layer_and_not_split_by_tp() -> None:
    model = load_model("deepseek-ai/DeepSeek-V2-Lite-Chat")
    gpu, version = find_gpu("H100"), parse_version("0.19.0")
    for tp in (1, 2):
        args = resolve(EngineArgs(tensor_parallel_size=tp), model, gpu, version)
        assert kv_bytes_per_token(model, args) == 27 * (512 + 64) * 2  # 31,104


def test_sliding_window_layouts() -> None:
    gemma3 = load_model("google/gemma-3-12b-it")
    assert gemma3.layer_types.count(SLIDING) == 40 and gemma3.sliding_window == 1024
    assert gemma3.vision_params > 0
    gemma2 = load_model("google/gemma-2-9b-it")
    assert gemma2.layer_types.count(SLIDING) == 21 and gemma2.layer_types[0] == SLIDING
    gpt_oss = load_model("openai/gpt-oss-120b")
    assert gpt_oss.layer_types.count(SLIDING) == 18 and gpt_oss.sliding_window == 128
    assert gpt_oss.native_quantization == "mxfp4"
    assert load_model("Qwen/Qwen2.5-7B-Instruct").sliding_window is None  # use_sliding_window off


def test_moe_and_mla_facts() -> None:
    r1 = load_model("deepseek-ai/DeepSeek-R1")
    assert r1.mla is not None and r1.moe is not None
    assert r1.moe_layers[:3] == (False, False, False) and all(r1.moe_layers[3:])
    assert r1.native_quantization == "fp8"
    qwen_moe = load_model("Qwen/Qwen3-30B-A3B")
    assert qwen_moe.moe is not None
    assert (qwen_moe.moe.num_experts, qwen_moe.moe.experts_per_token) == (128, 8)


def test_rope_scaling_and_derived_max_len() -> None:
    linear = parse_config(dense_config(rope_scaling={"rope_type": "linear", "factor": 4.0}), "x/y")
    assert linear.derived_max_model_len == 4 * 32768
    llama3 = parse_config(dense_config(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "x/y")
    assert llama3.derived_max_model_len == 32768


def test_unknown_model_says_how_to_add_it() -> None:
    with pytest.raises(ToolError) as exc:
        load_model("acme/never-heard-of-it")
    message = str(exc.value)
    assert "catalog/models/acme/never-heard-of-it/config.json" in message
    assert "--model-config" in message and "--fetch" in message


def test_user_dropped_config_and_model_config_file(
    write_config: Callable[[dict[str, Any], str], Path],
) -> None:
    path = write_config(dense_config(num_hidden_layers=12), "acme/small")
    model = load_model("acme/small", [path.parents[2]])
    assert model.num_layers == 12 and model.model_id == "acme/small"
    assert load_model_config(path).num_layers == 12


def test_broken_model_config_is_a_tool_error(tmp_path: Path) -> None:
    bad = tmp_path / "config.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ToolError):
        load_model_config(bad)
    bad.write_text('{"hidden_size": 10}', encoding="utf-8")
    with pytest.raises(ToolError, match="num_hidden_layers"):
        load_model_config(bad)


def test_gpu_catalog_names_and_memory() -> None:
    assert find_gpu("h100").torch_total_gib == 79.19
    assert find_gpu("A100-40GB").torch_total_gib == 39.38
    assert find_gpu("a10g").key == "A10G"
    assert find_gpu("L40S").torch_total_gib == 44.42
    for name in ("A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100", "H200", "B200"):
        gpu = find_gpu(name)
        assert gpu.label_memory_mib is not None
        assert gpu.torch_total_gib < gpu.label_memory_mib / 1024  # torch sees less than the label
    with pytest.raises(ToolError, match="--gpu-memory-gib"):
        find_gpu("Voodoo5")
    assert custom_gpu(47.5).torch_total_gib == 47.5
    with pytest.raises(ToolError):
        custom_gpu(0)


def test_instance_catalog() -> None:
    catalog = instance_catalog()
    assert len(catalog) == 53
    g5 = find_instance("g5.12xlarge")
    assert (g5.gpus, g5.gpu.key, g5.vcpus, g5.memory_mib, g5.usd_per_hour) == (
        4, "A10G", 48, 196608, 5.672)
    assert find_instance("p5e.48xlarge").usd_per_hour is None
    assert {i.gpu.key for i in catalog.values()} <= set(gpu_catalog())
    cheapest = cheapest_instance(find_gpu("L4"), 4)
    assert cheapest is not None and cheapest.name == "g6.12xlarge"
    with pytest.raises(ToolError):
        find_instance("m5.large")


@pytest.mark.parametrize("bad", ["../../etc", "org/..", "no-slash", "a/b/c"])
def test_fetch_refuses_ids_that_are_not_org_slash_name(bad: str) -> None:
    from vllm_gitops.sizing.models import fetch_config

    with pytest.raises(ToolError, match="not a Hugging Face model id"):
        fetch_config(bad)


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """A stand-in Hub on loopback: serves one model's config.json, records the auth header."""

    config: bytes = b""
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization"))
        if self.path == "/acme/tiny-14b/resolve/main/config.json":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.config)
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    source = REPO_ROOT / "catalog/models/Qwen/Qwen3-14B/config.json"
    _HubHandler.config = source.read_bytes()
    _HubHandler.seen_auth = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_caches_the_hub_config_then_works_offline(hub: str, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    online = run_plan("--model", "acme/tiny-14b", "--fetch", "--catalog", str(catalog),
                      "--gpu", "L40S", "--format", "json",
                      env={"HF_ENDPOINT": hub, "HF_TOKEN": "hf_test"})
    assert online.code == 0, online.stderr
    assert _HubHandler.seen_auth == ["Bearer hf_test"]
    cached = json.loads((catalog / "acme/tiny-14b/config.json").read_text())
    assert cached["_name_or_path"] == "acme/tiny-14b"
    assert cached["num_hidden_layers"] == 40
    # The Hub is not asked again: the cached file answers, with the same numbers as Qwen3-14B.
    offline = run_plan("--model", "acme/tiny-14b", "--catalog", str(catalog), "--gpu", "L40S",
                       "--format", "json", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    reference = run_plan("--model", "Qwen/Qwen3-14B", "--gpu", "L40S", "--format", "json")
    assert _HubHandler.seen_auth == ["Bearer hf_test"]
    assert json.loads(offline.stdout)["kv_cache_tokens"] == json.loads(
        reference.stdout)["kv_cache_tokens"]


def test_fetch_of_an_unknown_model_is_a_clear_error(hub: str, tmp_path: Path) -> None:
    done = run_plan("--model", "acme/missing", "--fetch", "--catalog", str(tmp_path),
                    env={"HF_ENDPOINT": hub})
    assert done.code == 2
    assert "Hugging Face Hub answered 404 for acme/missing" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing half-written


CATALOG = REPO_ROOT / "catalog/models"
CATALOG_IDS = list_models()
# A source is a file of a public GitHub repository at a fixed commit.
PINNED_SOURCE = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/\S+")
# Entries written before sources were pinned to a commit URL (repo@short-commit, shapes checked
# against calibration logs). Every other entry must name a pinned source.
UNPINNED_LEGACY = {
    "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct",
    "Qwen/Qwen3-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-ai/DeepSeek-V2-Lite-Chat", "google/gemma-2-9b-it", "google/gemma-3-12b-it",
    "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
    "meta-llama/Meta-Llama-3-8B", "mistralai/Mistral-7B-Instruct-v0.3",
    "mistralai/Mixtral-8x7B-Instruct-v0.1",
}


def _raw_config(model_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CATALOG / model_id / "config.json").read_text("utf-8"))
    return data


def test_catalog_is_broad_and_every_entry_names_its_source() -> None:
    assert len(CATALOG_IDS) >= 80
    assert set(CATALOG_IDS) >= UNPINNED_LEGACY
    for model_id in CATALOG_IDS:
        raw = _raw_config(model_id)
        assert raw.get("_name_or_path") == model_id
        source = raw.get("_source")
        assert isinstance(source, str) and source, model_id
        if model_id not in UNPINNED_LEGACY:
            assert PINNED_SOURCE.search(source), f"{model_id}: {source}"


def test_readmes_state_the_catalog_size() -> None:
    count = len(CATALOG_IDS)
    assert f"holds {count} models" in (REPO_ROOT / "README.md").read_text("utf-8")
    assert f"({count} models)" in (REPO_ROOT / "catalog/README.md").read_text("utf-8")


def test_catalog_spans_the_families_researchers_serve() -> None:
    models = [load_model(m) for m in CATALOG_IDS]
    orgs = {m.model_id.split("/")[0] for m in models}
    assert {"Qwen", "meta-llama", "mistralai", "google", "microsoft", "deepseek-ai", "openai",
            "moonshotai", "zai-org", "THUDM", "internlm", "llava-hf"} <= orgs
    assert sum(m.is_moe for m in models) >= 15
    assert sum(m.vision_params > 0 for m in models) >= 12
    assert sum(m.native_quantization is not None for m in models) >= 12


@pytest.mark.parametrize("model_id", CATALOG_IDS)
def test_every_catalog_model_loads_and_sizes(model_id: str) -> None:
    """Each entry parses and goes through the whole memory plan on 8 x H100 at its widest TP."""
    model = load_model(model_id)
    assert total_params(model) > 0 and model.derived_max_model_len > 0
    tp = max(legal_tp_sizes(model))
    args = EngineArgs(tensor_parallel_size=tp, max_model_len=min(model.derived_max_model_len, 8192))
    result = plan(model, find_gpu("H100"), args, parse_version("0.11.0"),
                  instance=find_instance("p5.48xlarge"))
    assert result.memory.stages, model_id
    assert result.weights_gib is not None and result.weights_gib > 0


# Totals published on the Hugging Face model pages (https://huggingface.co/<model id>).
PUBLISHED_PARAMS_B = {
    "meta-llama/Llama-4-Maverick-17B-128E-Instruct": 400.0,  # "400B total parameters"
    "THUDM/glm-4-9b": 9.40, "llava-hf/llava-1.5-7b-hf": 7.06, "google/gemma-3-27b-it": 27.4,
    "google/gemma-3-4b-it": 4.30, "Qwen/Qwen2-VL-7B-Instruct": 8.29,
    "Qwen/Qwen2.5-VL-7B-Instruct": 8.29, "Qwen/Qwen3-VL-8B-Instruct": 8.77,
    "microsoft/Phi-3.5-MoE-instruct": 41.9, "Qwen/Qwen3-Coder-480B-A35B-Instruct": 480.0,
}


@pytest.mark.parametrize(("model_id", "billions"), PUBLISHED_PARAMS_B.items())
def test_new_architectures_match_published_totals(model_id: str, billions: float) -> None:
    assert total_params(load_model(model_id)) / 1e9 == pytest.approx(billions, rel=0.01)


def test_llama4_interleaves_moe_layers_with_a_shared_expert() -> None:
    maverick = load_model("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    assert maverick.moe is not None
    assert maverick.moe_layers[:4] == (False, True, False, True) and sum(maverick.moe_layers) == 24
    assert (maverick.moe.expert_width, maverick.moe.shared_width) == (8192, 8192)
    assert maverick.intermediate_size == 16384  # intermediate_size_mlp: the dense layers
    scout = load_model("meta-llama/Llama-4-Scout-17B-16E-Instruct")
    assert all(scout.moe_layers)
    # 109B published with the vision tower, which this text-only copy leaves out.
    assert 107.0 < total_params(scout) / 1e9 < 109.0


def test_chatglm_field_names() -> None:
    glm = load_model("THUDM/glm-4-9b")
    assert (glm.num_layers, glm.num_kv_heads, glm.vocab_size, glm.intermediate_size,
            glm.derived_max_model_len, glm.qkv_bias) == (40, 2, 151552, 13696, 8192, True)


def test_sparse_text_configs_take_the_transformers_defaults() -> None:
    llava = load_model("llava-hf/llava-1.5-7b-hf")  # text_config names only vocab and context
    assert (llava.num_layers, llava.hidden_size, llava.intermediate_size, llava.vocab_size,
            llava.derived_max_model_len) == (32, 4096, 11008, 32064, 4096)
    assert llava.vision_params > 0
    gemma = load_model("google/gemma-3-27b-it")  # no vocab_size, max_position_embeddings
    assert (gemma.vocab_size, gemma.derived_max_model_len, gemma.num_kv_heads) == (
        262208, 131072, 16)
    assert gemma.layer_types.count(SLIDING) == 52 and gemma.sliding_window == 1024


@pytest.mark.parametrize(("quantized", "full"), [
    ("Qwen/Qwen3-32B-FP8", "Qwen/Qwen3-32B"),  # fp8 block quantization
    ("Qwen/Qwen3-30B-A3B-FP8", "Qwen/Qwen3-30B-A3B"),
    ("meta-llama/Meta-Llama-3.1-405B-Instruct-FP8", "meta-llama/Meta-Llama-3.1-405B"),  # fbgemm
    ("nvidia/Llama-3.1-70B-Instruct-FP8", "meta-llama/Meta-Llama-3.1-70B"),  # ModelOpt
])
def test_quantized_checkpoints_weigh_about_half(quantized: str, full: str) -> None:
    q_model, f_model = load_model(quantized), load_model(full)
    assert q_model.native_quantization == "fp8" and f_model.native_quantization is None
    args = EngineArgs(tensor_parallel_size=8, max_model_len=4096)
    gpu, version, inst = find_gpu("H200"), parse_version("0.11.0"), find_instance("p5en.48xlarge")
    q_gib = plan(q_model, gpu, args, version, instance=inst).weights_gib
    f_gib = plan(f_model, gpu, args, version, instance=inst).weights_gib
    assert q_gib is not None and f_gib is not None
    assert 0.45 < q_gib / f_gib < 0.65


def test_modelopt_quant_config_is_read_from_the_merged_hf_quant_config() -> None:
    raw = _raw_config("nvidia/Llama-3.1-70B-Instruct-FP8")
    assert "quant_method" not in raw["quantization_config"]
    assert raw["quantization_config"]["producer"]["name"] == "modelopt"
    cfg = {**dense_config(), "quantization_config": {
        "producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4"}}}
    assert parse_config(cfg, "x/y").native_quantization is None  # not an fp8 checkpoint


def test_list_models_cli_lists_the_whole_catalog() -> None:
    done = run_plan("--list-models", "--format", "json")
    assert done.code == 0, done.stderr
    listed = [row["model"] for row in json.loads(done.stdout)["models"]]
    assert listed == list_models()
    text = run_plan("--list-models")
    assert f"{len(listed)} models" in text.stdout and "Qwen/Qwen3-4B" in text.stdout

"""The vLLM memory model: TP rules, defaults, KV layout, and every startup failure."""

from __future__ import annotations

import pytest
from sizing_helpers import dense_config

from vllm_gitops.errors import ToolError
from vllm_gitops.sizing.engine_args import EngineArgs, default_batch_limits
from vllm_gitops.sizing.hardware import find_gpu
from vllm_gitops.sizing.kvcache import kv_layout
from vllm_gitops.sizing.memory import CUDAGRAPH_DENSE_GIB, MemoryPlan, evaluate
from vllm_gitops.sizing.models import ModelSpec, load_model, parse_config
from vllm_gitops.sizing.planner import legal_tp_sizes
from vllm_gitops.sizing.version import VllmVersion, parse_version, version_from_image
from vllm_gitops.sizing.weights import kv_heads_per_gpu, pp_layer_counts

V011 = parse_version("0.11.0")
V019 = parse_version("0.19.0")


def run(model_id: str | ModelSpec, gpu: str = "H100", version: VllmVersion = V011,
        gpus: int | None = None, **flags: object) -> MemoryPlan:
    model = load_model(model_id) if isinstance(model_id, str) else model_id
    return evaluate(model, find_gpu(gpu), EngineArgs(**flags), version, gpus)  # type: ignore[arg-type]


def failure_id(plan: MemoryPlan) -> str | None:
    return plan.failure.id if plan.failure else None


# ---------------------------------------------------------------- tensor parallel rules


@pytest.mark.parametrize(("model_id", "legal"), [
    ("Qwen/Qwen3-14B", [1, 2, 4, 8]),  # 40 heads; TP5 divides heads but not the vocab
    ("Qwen/Qwen2.5-7B-Instruct", [1, 2, 4]),  # 28 heads, 4 KV heads
    ("meta-llama/Llama-3.1-8B-Instruct", [1, 2, 4, 8]),
    ("openai/gpt-oss-20b", [1, 2, 4, 8]),
])
def test_legal_tp_sizes(model_id: str, legal: list[int]) -> None:
    assert legal_tp_sizes(load_model(model_id)) == legal


def test_kv_heads_split_then_replicate() -> None:
    qwen = load_model("Qwen/Qwen2.5-7B-Instruct")  # 4 KV heads
    assert [kv_heads_per_gpu(qwen, tp) for tp in (1, 2, 4)] == [4, 2, 1]
    moe = load_model("Qwen/Qwen3-30B-A3B")  # 4 KV heads, TP8 replicates
    assert kv_heads_per_gpu(moe, 8) == 1
    plan = run(moe, tensor_parallel_size=8, max_model_len=8192)
    assert plan.starts and any("replicated KV head" in w for w in plan.warnings)


def test_pipeline_stage_split_follows_get_pp_indices() -> None:
    assert pp_layer_counts(32, 2) == [16, 16]
    assert pp_layer_counts(61, 4) == [15, 15, 16, 15]  # spare layers go before the last stage
    assert pp_layer_counts(62, 4) == [15, 16, 16, 15]


# ---------------------------------------------------------------- every failure mode


def test_vocab_not_divisible_is_the_real_qwen3_tp5_failure() -> None:
    plan = run("Qwen/Qwen3-14B", version=V019, tensor_parallel_size=5, max_model_len=8192)
    assert failure_id(plan) == "vocab_not_divisible"
    assert plan.failure and plan.failure.message == "AssertionError: 151936 is not divisible by 5"


def test_heads_not_divisible() -> None:
    plan = run("Qwen/Qwen3-14B", tensor_parallel_size=16, gpus=16)
    assert failure_id(plan) == "heads_not_divisible"
    assert plan.failure is not None
    assert "(40) must be divisible by tensor parallel size (16)" in plan.failure.message


def test_kv_heads_and_mlp_not_divisible() -> None:
    kv = parse_config(dense_config(), "acme/kv")  # 48 heads, 8 KV heads, vocab % 6 == 0
    assert failure_id(run(kv, tensor_parallel_size=6)) == "kv_heads_not_divisible"
    mlp = parse_config(dense_config(num_key_value_heads=48, intermediate_size=12289), "acme/mlp")
    assert failure_id(run(mlp, tensor_parallel_size=2)) == "mlp_not_divisible"


def test_max_model_len_above_the_derived_maximum() -> None:
    plan = run("Qwen/Qwen3-14B", max_model_len=65536)
    assert failure_id(plan) == "max_model_len_too_long"
    assert plan.failure and "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" in plan.failure.message


def test_weights_do_not_fit() -> None:
    plan = run("meta-llama/Llama-3.3-70B-Instruct", gpu="L4", max_model_len=4096)
    assert failure_id(plan) == "weights_do_not_fit"


def test_no_memory_for_cache_blocks() -> None:
    # 72B bf16 on 2 x H100 at the default 0.90: weights 67.7 + activation + non-torch > 71.3
    plan = run("Qwen/Qwen2.5-72B-Instruct", version=V019, tensor_parallel_size=2,
               max_model_len=8192)
    assert failure_id(plan) == "no_kv_cache_memory"
    stage = plan.binding_stage
    assert stage is not None and stage.available_kv_cache_gib < 0


def test_max_model_len_larger_than_the_kv_cache() -> None:
    plan = run("meta-llama/Llama-3.1-8B-Instruct", gpu="L4")  # default 131072 tokens
    assert failure_id(plan) == "max_model_len_exceeds_kv_cache"
    assert plan.failure is not None
    assert f"the estimated maximum model length is {plan.longest_context}" in plan.failure.message
    assert 0 < plan.longest_context < 131072
    shorter = run("meta-llama/Llama-3.1-8B-Instruct", gpu="L4", max_model_len=plan.longest_context)
    assert shorter.starts
    assert not run("meta-llama/Llama-3.1-8B-Instruct", gpu="L4",
                   max_model_len=plan.longest_context + 16).starts


def test_warmup_oom_is_version_aware() -> None:
    # The real failure: gpt-oss-20b, H100, gmu 0.95, vLLM 0.19 (1024 x 201088 fp32 logits).
    failed = run("openai/gpt-oss-20b", version=V019, gpu_memory_utilization=0.95,
                 max_model_len=8192)
    assert failure_id(failed) == "warmup_oom"
    assert failed.failure is not None
    assert "warming up sampler with 1024 dummy requests" in failed.failure.message
    # Fewer sequences fit in the same headroom.
    assert run("openai/gpt-oss-20b", version=V019, gpu_memory_utilization=0.95,
               max_model_len=8192, max_num_seqs=256).starts
    # From 0.21 the CUDA-graph estimate is taken out of the KV budget, leaving the headroom
    # to the sampler: the same flags start, with less KV cache.
    later = run("openai/gpt-oss-20b", version=parse_version("0.21.0"),
                gpu_memory_utilization=0.95, max_model_len=8192)
    assert later.starts
    assert later.binding_stage and failed.binding_stage
    assert later.binding_stage.available_kv_cache_gib < failed.binding_stage.available_kv_cache_gib


def test_config_failures() -> None:
    assert failure_id(run("Qwen/Qwen3-14B", gpus=2, tensor_parallel_size=4)) == "not_enough_gpus"
    assert failure_id(run("Qwen/Qwen3-14B", max_num_seqs=512,
                          max_num_batched_tokens=256)) == "batched_tokens_below_num_seqs"
    assert failure_id(run("Qwen/Qwen3-8B", gpu="T4", dtype="bfloat16")) == "bf16_unsupported"
    fp8_on_t4 = run("Qwen/Qwen3-8B", gpu="T4", quantization="fp8")
    assert failure_id(fp8_on_t4) == "quantization_unsupported"
    assert failure_id(run("openai/gpt-oss-20b", quantization="fp8")) == "quantization_mismatch"


@pytest.mark.parametrize("flags", [
    {"gpu_memory_utilization": 1.5}, {"gpu_memory_utilization": 0.0},
    {"tensor_parallel_size": 0}, {"max_model_len": -1}, {"dtype": "int3"},
    {"kv_cache_dtype": "fp4"}, {"quantization": "magic"},
])
def test_impossible_values_are_tool_errors(flags: dict[str, object]) -> None:
    with pytest.raises(ToolError):
        run("Qwen/Qwen3-8B", **flags)


# ---------------------------------------------------------------- defaults and accounting


def test_default_batch_limits_per_gpu_and_version() -> None:
    assert default_batch_limits(find_gpu("H100"), V019, 8192) == (8192, 1024)
    assert default_batch_limits(find_gpu("A100-80GB"), V019, 8192) == (2048, 256)  # "a100" rule
    assert default_batch_limits(find_gpu("L40S"), V019, 8192) == (2048, 256)
    assert default_batch_limits(find_gpu("B200"), V019, 8192) == (8192, 1024)
    assert default_batch_limits(find_gpu("B200"), parse_version("0.33.0"), 8192) == (16384, 1024)
    assert default_batch_limits(find_gpu("H100"), parse_version("0.6.5"), 8192) == (8192, 256)


def test_sanity_check_of_the_reference_recipe() -> None:
    """vllm-memory-model.md §1.11: Llama-3.1-8B, H100, gmu 0.95, v0.19 -> 58.11 GiB, 476,016."""
    plan = run("meta-llama/Llama-3.1-8B-Instruct", version=V019, gpu_memory_utilization=0.95,
               max_model_len=8192)
    stage = plan.binding_stage
    assert stage is not None
    assert stage.requested_gib == pytest.approx(75.23, abs=0.01)
    assert stage.available_kv_cache_gib == pytest.approx(58.11, rel=0.005)
    assert plan.kv_cache_tokens == pytest.approx(476_016, rel=0.005)
    assert plan.max_concurrency == pytest.approx(58.11, rel=0.005)


def test_activation_does_not_grow_with_max_model_len_in_v1() -> None:
    kv = {run("meta-llama/Llama-3.1-8B-Instruct", version=V019, max_model_len=n).kv_cache_tokens
          for n in (2048, 8192, 32768)}
    assert len(kv) == 1


def test_fp8_kv_cache_doubles_tokens() -> None:
    auto = run("meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    fp8 = run("meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192, kv_cache_dtype="fp8")
    assert fp8.num_blocks == pytest.approx(2 * auto.num_blocks, abs=1)


def test_cudagraph_subtracted_only_from_0_21() -> None:
    before = run("Qwen/Qwen3-8B", version=parse_version("0.20.0"), max_model_len=8192)
    after = run("Qwen/Qwen3-8B", version=parse_version("0.21.0"), max_model_len=8192)
    assert before.binding_stage and after.binding_stage
    gap = before.binding_stage.available_kv_cache_gib - after.binding_stage.available_kv_cache_gib
    assert gap == pytest.approx(CUDAGRAPH_DENSE_GIB)
    eager = run("Qwen/Qwen3-8B", version=parse_version("0.21.0"), max_model_len=8192,
                enforce_eager=True)
    assert eager.binding_stage and eager.binding_stage.cudagraph_gib == 0


def test_hybrid_grouping_reproduces_gemma3_log() -> None:
    """48867 blocks -> 'GPU KV cache size: 130,304 tokens', 'Maximum concurrency ... 15.88x'."""
    gemma = load_model("google/gemma-3-12b-it")
    layout = kv_layout(gemma, range(48), 1, 2, 16, 8192, hybrid_allocator=True)
    assert (layout.group_size, layout.num_groups) == (8, 6)
    assert layout.reported_tokens(48867) == 130_304
    assert layout.max_concurrency(48867, 8192) == pytest.approx(15.88, abs=0.01)
    flat = kv_layout(gemma, range(48), 1, 2, 16, 8192, hybrid_allocator=False)
    assert flat.num_groups == 1 and flat.reported_tokens(100) == 1600


def test_sliding_layers_need_only_their_window_for_long_requests() -> None:
    gpt_oss = load_model("openai/gpt-oss-20b")
    layout = kv_layout(gpt_oss, range(24), 1, 2, 16, 8192, hybrid_allocator=True)
    full_only = 12 * (131072 // 16) * layout.page_bytes
    sliding = 12 * ((128 - 1 + 8192 + 15) // 16 + 1) * layout.page_bytes
    assert layout.bytes_for_request(131072) == full_only + sliding


def test_v0_engine_verdicts() -> None:
    old = parse_version("0.6.5")
    plan = run("meta-llama/Llama-2-7b-hf", gpu="A100-80GB", version=old)
    assert plan.starts and plan.args.max_num_seqs == 256
    too_long = run("meta-llama/Llama-3.1-8B-Instruct", gpu="L4", version=old, max_model_len=65536)
    assert too_long.failure and too_long.failure.message.startswith("The model's max seq len")


def test_versions_from_image_tags() -> None:
    assert str(version_from_image("vllm/vllm-openai:v0.11.0")) == "0.11.0"
    assert str(version_from_image("vllm/vllm-openai:v0.11.0@sha256:" + "a" * 64)) == "0.11.0"
    assert str(version_from_image(
        "public.ecr.aws/deep-learning-containers/vllm:0.12.0-gpu-py312-cu129")) == "0.12.0"
    assert version_from_image("vllm/vllm-openai:latest") is None
    assert version_from_image("vllm/vllm-openai") is None
    assert parse_version("0.7.3").engine == "V0" and V011.engine == "V1"
    with pytest.raises(ToolError):
        parse_version("latest")

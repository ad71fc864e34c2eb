"""The engine against real vLLM startup logs (../shared/reference/vllm-kv-calibration.json).

Every row the engine can be asked about is evaluated with the row's own flags (defaults left to
the engine where the log did not set them). Done-when criteria of the sizing issue:
every start/fail verdict right, median relative error of the available KV cache <= 3 %.
Run with `-s` to print the table.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

import pytest

from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import Gpu, find_gpu
from vllm_gitops.sizing.memory import MemoryPlan, evaluate
from vllm_gitops.sizing.models import load_model
from vllm_gitops.sizing.version import VllmVersion, parse_version

# Quantized derivatives of catalog models: same shapes, the row says the quantization.
BASE_MODEL = {
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16": "meta-llama/Llama-3.1-8B-Instruct",
    "RedHatAI/Qwen2.5-7B-Instruct-fp8-dynamic": "Qwen/Qwen2.5-7B-Instruct",
    "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic": "meta-llama/Llama-3.3-70B-Instruct",
    "neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8": "meta-llama/Llama-3.1-70B-Instruct",
    "meta-llama/Llama-2-7b": "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-70b": "meta-llama/Llama-2-70b-hf",
}
# Rows the engine is not asked about, and why.
NOT_EVALUATED = {
    "i34076-qwen3-coder-30b-fp8-pp2": "two different GPUs (16 GB + 32 GB) and a hand-set uneven "
                                      "VLLM_PP_LAYER_PARTITION; the engine assumes identical GPUs",
    "pr12126-llama32-11b-vision-h100": "mllama cross-attention and a 36.6 GiB multimodal encoder "
                                       "profile are outside the text-model activation model",
}
# Expected failure ids for the rows that failed (a row's outcome text -> engine failure ids).
FAILURE_IDS = {
    "failed_tp_divisibility": {"vocab_not_divisible"},
    "failed_oom_after_kv_allocation": {"warmup_oom"},
    "failed_no_kv_memory": {"no_kv_cache_memory", "max_model_len_exceeds_kv_cache"},
}
MEDIAN_BOUND = 0.03
WORST_BOUND = 0.05


@dataclass
class Outcome:
    row_id: str
    plan: MemoryPlan
    expected_start: bool
    logged_kv_gib: float | None

    @property
    def verdict_right(self) -> bool:
        return self.plan.starts == self.expected_start

    @property
    def predicted_kv_gib(self) -> float | None:
        stage = self.plan.binding_stage
        return stage.available_kv_cache_gib if stage else None

    @property
    def kv_error(self) -> float | None:
        if self.logged_kv_gib is None or self.logged_kv_gib <= 0 or self.predicted_kv_gib is None:
            return None
        return (self.predicted_kv_gib - self.logged_kv_gib) / self.logged_kv_gib


def _quantization(text: str) -> str | None:
    lowered = text.lower()
    if lowered == "none" or "native" in lowered:
        return None  # the checkpoint's own format
    for marker, method in (("w4a16", "int4"), ("w8a8", "int8"), ("int8", "int8"), ("fp8", "fp8")):
        if marker in lowered:
            return method
    raise AssertionError(f"unmapped quantization {text!r}")


def _gpu(row: dict[str, Any]) -> Gpu:
    name = row["gpu"]
    key = "H100" if "H100" in name else "A100-40GB" if "40GB" in name else "A100-80GB"
    gpu = find_gpu(key)
    if row["gpu_total_memory_gib"]:  # the log's own torch total wins over the catalog's
        gpu = dataclasses.replace(gpu, torch_total_gib=float(row["gpu_total_memory_gib"]))
    return gpu


def _version(row: dict[str, Any]) -> VllmVersion:
    text = row["vllm_version"]
    return parse_version("0.7.0" if "Jan 2025" in text else text)  # dev builds of Jan 2025


def _engine_args(row: dict[str, Any]) -> EngineArgs:
    inferred = set(row.get("inferred_fields") or [])
    return EngineArgs(
        tensor_parallel_size=row["tensor_parallel_size"],
        pipeline_parallel_size=row["pipeline_parallel_size"],
        gpu_memory_utilization=row["gpu_memory_utilization"] or 0.9,
        max_model_len=None if "max_model_len" in inferred else row["max_model_len"],
        max_num_seqs=None if "max_num_seqs" in inferred else row["max_num_seqs"],
        max_num_batched_tokens=None if "max_num_batched_tokens" in inferred
        else row["max_num_batched_tokens"],
        dtype="float32" if row["dtype"] == "float32" else "auto",
        kv_cache_dtype=row["kv_cache_dtype"],
        quantization=_quantization(row["quantization"]),
        enforce_eager="--enforce-eager" in (row.get("notes") or ""),
    )


def evaluate_row(row: dict[str, Any]) -> Outcome:
    model = load_model(BASE_MODEL.get(row["model"], row["model"]))
    plan = evaluate(model, _gpu(row), _engine_args(row), _version(row))
    logged = row["available_kv_cache_gib"]
    return Outcome(row["id"], plan, row["outcome"] == "started",
                   float(logged) if isinstance(logged, int | float) else None)


@pytest.fixture(scope="module")
def outcomes(calibration_rows: list[dict[str, Any]]) -> list[Outcome]:
    results = [evaluate_row(r) for r in calibration_rows if r["id"] not in NOT_EVALUATED]
    print(f"\n{'row':36} {'verdict':8} {'predicted':>10} {'logged':>8} {'error':>8}")
    for o in results:
        error = f"{o.kv_error:+.2%}" if o.kv_error is not None else ""
        predicted = f"{o.predicted_kv_gib:.2f}" if o.predicted_kv_gib is not None else "-"
        print(f"{o.row_id:36} {'right' if o.verdict_right else 'WRONG':8} {predicted:>10} "
              f"{o.logged_kv_gib if o.logged_kv_gib is not None else '-'!s:>8} {error:>8}")
    return results


def test_every_row_is_evaluated_or_explained(calibration_rows: list[dict[str, Any]],
                                             outcomes: list[Outcome]) -> None:
    assert len(outcomes) + len(NOT_EVALUATED) == len(calibration_rows)
    assert len(outcomes) >= 27


def test_every_start_fail_verdict_is_right(outcomes: list[Outcome]) -> None:
    wrong = [o.row_id for o in outcomes if not o.verdict_right]
    assert wrong == []


def test_failure_reasons_match_the_logs(calibration_rows: list[dict[str, Any]],
                                        outcomes: list[Outcome]) -> None:
    by_id = {r["id"]: r for r in calibration_rows}
    for outcome in outcomes:
        expected = FAILURE_IDS.get(by_id[outcome.row_id]["outcome"])
        if expected is not None:
            assert outcome.plan.failure is not None
            assert outcome.plan.failure.id in expected, outcome.row_id


def test_available_kv_cache_error_is_bounded(outcomes: list[Outcome]) -> None:
    errors = {o.row_id: abs(o.kv_error) for o in outcomes if o.kv_error is not None}
    assert len(errors) >= 20
    median = statistics.median(errors.values())
    worst_row = max(errors, key=lambda k: errors[k])
    print(f"\nKV error over {len(errors)} rows: median {median:.2%}, "
          f"worst {worst_row} {errors[worst_row]:.2%}")
    assert median <= MEDIAN_BOUND
    assert errors[worst_row] <= WORST_BOUND


def test_weights_match_the_logged_model_loading(calibration_rows: list[dict[str, Any]],
                                                outcomes: list[Outcome]) -> None:
    by_id = {r["id"]: r for r in calibration_rows}
    checked = 0
    for outcome in outcomes:
        logged = by_id[outcome.row_id]["weights_gib"]
        stage = outcome.plan.binding_stage
        if isinstance(logged, int | float) and stage is not None:
            assert stage.weights_gib == pytest.approx(logged, rel=0.03), outcome.row_id
            checked += 1
    assert checked >= 20


def test_tokens_and_concurrency_follow_the_logs(calibration_rows: list[dict[str, Any]],
                                                outcomes: list[Outcome]) -> None:
    by_id = {r["id"]: r for r in calibration_rows}
    for outcome in outcomes:
        row = by_id[outcome.row_id]
        if row["id"].startswith("llmd-") and outcome.plan.starts:
            assert outcome.plan.kv_cache_tokens == pytest.approx(row["kv_cache_tokens"], rel=0.03)
            assert outcome.plan.max_concurrency == pytest.approx(row["max_concurrency"], rel=0.03)

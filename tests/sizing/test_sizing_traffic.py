"""Traffic-aware concurrency: requests of the expected shape next to vLLM's worst case, the
--max-num-seqs / --max-num-batched-tokens advice, and the capacity/max-num-seqs-cap rule."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from calibration_rows import evaluate_row
from sizing_helpers import run_plan

from vllm_gitops.policies.capacity import max_num_seqs_cap
from vllm_gitops.scope import Scope
from vllm_gitops.sizing import EngineArgs, find_gpu, load_model, parse_version, plan
from vllm_gitops.sizing.memory import evaluate
from vllm_gitops.sizing.quantity import GIB
from vllm_gitops.sizing.traffic import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    RequestShape,
    requests_held,
)

PROD_ARGS = EngineArgs(tensor_parallel_size=4, max_model_len=32768, max_num_seqs=8,
                       max_num_batched_tokens=8192)


def prod_plan(**changes: Any) -> Any:
    from dataclasses import replace
    args = replace(PROD_ARGS, **changes)
    return plan(load_model("Qwen/Qwen3-14B"), find_gpu("L4"), args, parse_version("0.11.0"),
                traffic=RequestShape())


def test_requests_held_reproduces_vllms_logged_max_concurrency(
        calibration_rows: list[dict[str, Any]]) -> None:
    """At the full max_model_len the shape-aware count is vLLM's own logged figure
    (llm-d-planner sweep, 'Maximum concurrency for N tokens per request'), from the logged KV."""
    checked = 0
    for row in calibration_rows:
        if (row["id"].startswith("llmd") and row["outcome"] == "started"
                and row["pipeline_parallel_size"] == 1 and row.get("max_concurrency")):
            plan = evaluate_row(row).plan
            stage = plan.binding_stage
            assert stage is not None
            logged = copy.copy(plan)
            logged.num_blocks = stage.layout.num_blocks(row["available_kv_cache_gib"] * GIB)
            held = requests_held(logged, row["max_model_len"])
            assert held == pytest.approx(row["max_concurrency"], rel=0.01), row["id"]
            checked += 1
    assert checked >= 40


def test_short_requests_fit_many_times_more_than_full_length_ones() -> None:
    result = prod_plan()
    conc = result.concurrency
    assert conc is not None
    blocks = result.memory.num_blocks
    per_request = -(-(DEFAULT_PROMPT_TOKENS + DEFAULT_OUTPUT_TOKENS) // 16)
    assert conc.typical_requests == pytest.approx(blocks / per_request)
    assert conc.worst_case_requests == pytest.approx(result.memory.max_concurrency)
    assert conc.typical_requests > 100
    assert conc.worst_case_requests < 9
    assert conc.capped and "--max-num-seqs=8 caps the server at 8" in conc.cap_message()


def test_recommended_flags_start_and_hold_the_recommended_sequences() -> None:
    conc = prod_plan().concurrency
    assert conc is not None
    seqs, tokens = conc.recommended_max_num_seqs, conc.recommended_max_num_batched_tokens
    assert 8 < seqs <= conc.typical_requests and tokens >= max(seqs, DEFAULT_PROMPT_TOKENS)
    checked = evaluate(load_model("Qwen/Qwen3-14B"), find_gpu("L4"),
                       EngineArgs(tensor_parallel_size=4, max_model_len=32768, max_num_seqs=seqs,
                                  max_num_batched_tokens=tokens), parse_version("0.11.0"))
    assert checked.starts and requests_held(checked, 2500) >= seqs
    again = prod_plan(max_num_seqs=seqs).concurrency
    assert again is not None and not again.capped


def test_recommendation_backs_off_when_the_warm_up_would_not_fit() -> None:
    """gpt-oss-20b on one H100 at 0.95: 1024 sequences OOM in the sampler warm-up (logged by
    the llm-d-planner sweep); the advice for short requests must be a count that starts."""
    model, gpu, version = load_model("openai/gpt-oss-20b"), find_gpu("H100"), parse_version("0.19")
    args = EngineArgs(gpu_memory_utilization=0.95, max_model_len=8192, max_num_seqs=16)
    result = plan(model, gpu, args, version, traffic=RequestShape(500, 100))
    assert result.concurrency is not None
    seqs = result.concurrency.recommended_max_num_seqs
    assert 16 < seqs < 1024
    from dataclasses import replace
    assert evaluate(model, gpu, replace(args, max_num_seqs=seqs), version).starts


def test_longer_traffic_holds_fewer_requests() -> None:
    short = plan(load_model("Qwen/Qwen3-14B"), find_gpu("L4"), PROD_ARGS, parse_version("0.11"),
                 traffic=RequestShape(500, 200)).concurrency
    long = plan(load_model("Qwen/Qwen3-14B"), find_gpu("L4"), PROD_ARGS, parse_version("0.11"),
                traffic=RequestShape(16000, 4000)).concurrency
    assert short is not None and long is not None
    assert short.typical_requests > long.typical_requests > long.worst_case_requests


def test_cli_reports_the_shape_and_states_its_defaults() -> None:
    helped = run_plan("--help")
    assert "--prompt-tokens" in helped.stdout and f"default {DEFAULT_PROMPT_TOKENS}" in \
        helped.stdout and f"default {DEFAULT_OUTPUT_TOKENS}" in helped.stdout
    done = run_plan("--model", "Qwen/Qwen3-14B", "--instance-type", "g6.12xlarge", "-tp", "4",
                    "--max-model-len", "32768", "--max-num-seqs", "8", "--vllm-version", "0.11.0",
                    "--prompt-tokens", "1000", "--output-tokens", "1000")
    assert done.code == 0, done.stderr
    assert "1,000+1,000-token requests" in done.stdout and "CAPPED" in done.stdout
    answer = json.loads(run_plan("--model", "Qwen/Qwen3-14B", "--gpu", "L40S",
                                 "--max-model-len", "32768", "--format", "json").stdout)
    assert answer["concurrency"]["prompt_tokens"] == DEFAULT_PROMPT_TOKENS
    assert answer["concurrency"]["typical_requests"] > answer["max_concurrency"]


SERVER = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: vllm}}
spec:
  template:
    spec:
      nodeSelector: {{node.kubernetes.io/instance-type: g6.12xlarge}}
      containers:
        - name: vllm
          image: vllm/vllm-openai:v0.11.0
          args: [Qwen/Qwen3-14B, --tensor-parallel-size=4, --max-model-len=32768{extra}]
          resources: {{limits: {{nvidia.com/gpu: "4"}}}}
"""


@pytest.mark.parametrize(("extra", "fires"), [
    (", --max-num-seqs=8", True),
    (", --max-num-seqs=48", True),   # ~105 held: still less than half
    (", --max-num-seqs=64", False),
    ("", False),                     # vLLM's default: not a choice the manifest made
])
def test_cap_rule(make_scope: Callable[[str], Scope], extra: str, fires: bool) -> None:
    found = list(max_num_seqs_cap(make_scope(SERVER.format(extra=extra))))
    assert bool(found) is fires
    for violation in found:
        assert "test" not in violation.message  # never the scope's name
        assert violation.path[-1] == "args"


def test_cap_rule_is_silent_without_hardware(make_scope: Callable[[str], Scope]) -> None:
    text = SERVER.format(extra=", --max-num-seqs=8").replace(
        "      nodeSelector: {node.kubernetes.io/instance-type: g6.12xlarge}\n", "")
    assert list(max_num_seqs_cap(make_scope(text))) == []

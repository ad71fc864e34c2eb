"""tools/plan as a user runs it: answers, JSON contract, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sizing_helpers import dense_config, run_plan

REQUIRED_KEYS = {"starts", "failure", "weights_gib", "available_kv_cache_gib", "kv_cache_tokens",
                 "max_concurrency", "startup_seconds", "instance_type", "usd_per_hour"}


def test_plan_on_an_instance_type_json() -> None:
    done = run_plan("--model", "Qwen/Qwen3-14B", "--instance-type", "g5.12xlarge",
                    "--tensor-parallel-size", "4", "--max-model-len", "32768", "--format", "json")
    assert done.code == 0, done.stderr
    answer = json.loads(done.stdout)
    assert set(answer) >= REQUIRED_KEYS
    assert answer["starts"] is True and answer["failure"] is None
    assert answer["instance_type"] == "g5.12xlarge" and answer["usd_per_hour"] == 5.672
    assert answer["weights_gib"] == pytest.approx(27.51 / 4, abs=0.05)
    assert answer["kv_bytes_per_token"] == 163_840 // 4
    assert answer["kv_cache_tokens"] > 32768 and answer["max_concurrency"] > 1
    assert answer["startup_seconds"] > 0


def test_failing_plan_exits_1_with_vllms_message() -> None:
    done = run_plan("--model", "Qwen/Qwen3-14B", "--gpu", "H100", "--tensor-parallel-size", "5",
                    "--format", "json")
    assert done.code == 1
    answer = json.loads(done.stdout)
    assert answer["starts"] is False
    assert answer["failure"]["id"] == "vocab_not_divisible"
    assert "151936 is not divisible by 5" in answer["failure"]["message"]


def test_recommendation_table_cheapest_first() -> None:
    done = run_plan("--model", "Qwen/Qwen3-14B")
    assert done.code == 0, done.stderr
    assert "longest ctx" in done.stdout and "Cheapest:" in done.stdout
    rows = json.loads(run_plan("--model", "Qwen/Qwen3-14B", "--format", "json").stdout)
    prices = [r["usd_per_hour"] for r in rows["recommendations"]]
    assert prices == sorted(prices) and len(prices) >= 5
    fitting = [r for r in rows["recommendations"] if r["fits_requested_context"]]
    assert fitting and all(r["starts"] for r in fitting)
    cheapest_fit = fitting[0]["usd_per_hour"]
    for row in rows["recommendations"]:  # shorter-context rows only when cheaper
        assert row["fits_requested_context"] or row["usd_per_hour"] < cheapest_fit
        assert row["longest_context"] > 0
    assert rows["model"]["legal_tp_sizes"] == [1, 2, 4, 8]


def test_model_config_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dense_config()), encoding="utf-8")
    done = run_plan("--model-config", str(path), "--gpu-memory-gib", "47.5", "--format", "json")
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["gpu_memory_gib"] == 47.5


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "acme/unknown"], "catalog/models/acme/unknown/config.json"),
    (["--model", "Qwen/Qwen3-8B", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
    (["--model", "Qwen/Qwen3-8B", "--tensor-parallel-size", "0"], "--tensor-parallel-size"),
    (["--model", "Qwen/Qwen3-8B", "--gpu", "Voodoo5"], "unknown GPU"),
    (["--model", "Qwen/Qwen3-8B", "--gpu", "L4", "--instance-type", "g6.xlarge"], "only one"),
    (["--model", "Qwen/Qwen3-8B", "--quantization", "magic"], "magic"),
    (["--model", "Qwen/Qwen3-8B", "--max-model-len", "lots"], "--max-model-len"),
    (["--model", "Qwen/Qwen3-8B", "--gpu", "L4", "--prompt-tokens", "0"], "--prompt-tokens"),
    ([], "--model"),
    (["no/such/path"], "path not found"),
])
def test_bad_input_exits_2_without_traceback(args: list[str], message: str) -> None:
    done = run_plan(*args)
    assert done.code == 2
    assert done.stderr.startswith("error:") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_overlays_prod_end_to_end() -> None:
    done = run_plan("overlays/prod", "--format", "json")
    assert done.code == 0, done.stderr
    [workload] = json.loads(done.stdout)["workloads"]
    assert set(workload) >= REQUIRED_KEYS
    assert workload["error"] is None
    assert (workload["model"], workload["replicas"], workload["max_replicas"]) == (
        "Qwen/Qwen3-14B", 2, 3)  # the HPA of overlays/prod bounds the StatefulSet
    assert (workload["instance_type"], workload["usd_per_hour"]) == ("g6.12xlarge", 4.6016)
    assert workload["file"] == "overlays/prod/models/qwen3/model.yaml"
    # PATH mode reads the same flags a researcher would type: both answers agree exactly.
    direct = run_plan("--model", "Qwen/Qwen3-14B", "--instance-type", "g6.12xlarge",
                      "--tensor-parallel-size", "4", "--max-model-len", "32768",
                      "--max-num-seqs", "96", "--max-num-batched-tokens", "8192",
                      "--vllm-version", "0.11.0", "--format", "json")
    expected = json.loads(direct.stdout)
    for key in ("starts", "weights_gib", "available_kv_cache_gib", "kv_cache_tokens",
                "max_concurrency"):
        assert workload[key] == expected[key], key
    assert workload["concurrency"] == expected["concurrency"]
    assert workload["concurrency"]["capped_by_max_num_seqs"] is False

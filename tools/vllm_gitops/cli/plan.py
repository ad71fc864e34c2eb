"""tools/plan: will this model start on this GPU, with how much context and concurrency,
at what cost, and how long will it take to load.

    tools/plan --model Qwen/Qwen3-14B                           # recommend instance types
    tools/plan --model Qwen/Qwen3-14B --gpu L40S --max-model-len 32768
    tools/plan --model Qwen/Qwen3-14B --instance-type g5.12xlarge --tensor-parallel-size 4
    tools/plan overlays/prod                                    # every vLLM workload rendered
    tools/plan --list-models                                    # the offline model catalog

Exit codes: 0 it starts (or a recommendation was found), 1 vLLM would refuse to start,
2 bad input (unknown model, impossible values, unreadable manifests).
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from vllm_gitops.cli.common import fail, guarded, new_app
from vllm_gitops.errors import EXIT_FINDINGS, EXIT_OK, EXIT_TOOL_ERROR, ToolError
from vllm_gitops.sizing import report
from vllm_gitops.sizing.engine_args import EngineArgs
from vllm_gitops.sizing.hardware import (
    Gpu,
    InstanceType,
    cheapest_instance,
    custom_gpu,
    find_gpu,
    find_instance,
)
from vllm_gitops.sizing.models import (
    REPO_ROOT,
    ModelSpec,
    fetch_config,
    list_models,
    load_model,
    load_model_config,
)
from vllm_gitops.sizing.planner import (
    PlanResult,
    describe_model,
    plan,
    plan_scopes,
    recommend,
)
from vllm_gitops.sizing.traffic import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    RequestShape,
)
from vllm_gitops.sizing.version import DEFAULT_VERSION, parse_version


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class Quantization(StrEnum):
    none = "none"
    fp8 = "fp8"
    int8 = "int8"
    int4 = "int4"
    mxfp4 = "mxfp4"


class KvCacheDtype(StrEnum):
    auto = "auto"
    fp8 = "fp8"


app = new_app(help=__doc__)


def _model(model_id: str | None, model_config: Path | None, fetch: bool,
           catalogs: list[Path]) -> ModelSpec:
    if model_config is not None:
        return load_model_config(model_config, model_id)
    if not model_id:
        raise ToolError("give --model ID, --model-config FILE, or a PATH to plan manifests")
    if fetch:
        path = fetch_config(model_id, catalogs[0] if catalogs else None)
        print(f"cached {path}", file=sys.stderr)
    return load_model(model_id, catalogs)


def _hardware(gpu: str | None, instance_type: str | None, gpu_memory_gib: float | None,
              world_size: int) -> tuple[Gpu | None, InstanceType | None]:
    given = [x for x in (gpu, instance_type, gpu_memory_gib) if x is not None]
    if len(given) > 1:
        raise ToolError("give only one of --gpu, --instance-type, --gpu-memory-gib")
    if instance_type:
        inst = find_instance(instance_type)
        return inst.gpu, inst
    if gpu_memory_gib is not None:
        return custom_gpu(gpu_memory_gib), None
    if gpu:
        chosen = find_gpu(gpu)
        return chosen, cheapest_instance(chosen, world_size)
    return None, None


def _emit(payload: Any, text: str, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print(json.dumps(payload, indent=2))
    else:
        print(text)


def _plan_paths(paths: list[Path], output: OutputFormat, catalogs: list[Path],
                traffic: RequestShape) -> int:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ToolError(f"path not found: {missing[0]}")
    plans = plan_scopes(paths, REPO_ROOT, catalogs, traffic)
    _emit({"workloads": [p.to_dict() for p in plans]}, report.workload_plans(plans), output)
    if any(p.error for p in plans):
        return EXIT_TOOL_ERROR
    return EXIT_FINDINGS if any(p.result and not p.result.starts for p in plans) else EXIT_OK


def _list_models(catalogs: list[Path], output: OutputFormat) -> int:
    rows = [describe_model(load_model(model_id, catalogs)) for model_id in list_models(catalogs)]
    lines = [f"{'model':52} {'params':>8} {'layers':>6} {'KV heads':>8} {'context':>9} "
             f"{'MoE':>4} {'quant':>6}"]
    for row in rows:
        lines.append(f"{row['model']:52} {row['params_billion']:>7.1f}B {row['layers']:>6} "
                     f"{row['kv_heads']:>8} {row['max_model_len']:>9,} "
                     f"{row['moe_experts'] or '-':>4} {row['quantization'] or '-':>6}")
    lines.append(f"{len(rows)} models (catalog/models/<org>/<name>/config.json; add one with "
                 "--model ID --fetch while online)")
    _emit({"models": rows}, "\n".join(lines), output)
    return EXIT_OK


@app.command()
def plan_command(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Overlays or cluster folders: plan every vLLM workload they render.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Hugging Face model id.")] = None,
    model_config: Annotated[Path | None, typer.Option(
        "--model-config", help="A model's config.json, for models outside the catalog.")] = None,
    gpu: Annotated[str | None, typer.Option(
        "--gpu", help="A10G, L4, L40S, A100-40GB, A100-80GB, H100, H200, B200, ...")] = None,
    instance_type: Annotated[str | None, typer.Option("--instance-type")] = None,
    gpu_memory_gib: Annotated[float | None, typer.Option(
        "--gpu-memory-gib", help="Any other GPU: the total memory PyTorch reports.")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(
        "--tensor-parallel-size", "-tp")] = None,
    pipeline_parallel_size: Annotated[int, typer.Option("--pipeline-parallel-size", "-pp")] = 1,
    gpu_memory_utilization: Annotated[float, typer.Option("--gpu-memory-utilization")] = 0.9,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len")] = None,
    max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs")] = None,
    max_num_batched_tokens: Annotated[int | None, typer.Option("--max-num-batched-tokens")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="auto|bfloat16|float16|float32")] = "auto",
    kv_cache_dtype: Annotated[KvCacheDtype, typer.Option("--kv-cache-dtype")] = KvCacheDtype.auto,
    quantization: Annotated[Quantization, typer.Option(
        "--quantization", help="none keeps the checkpoint's own format.")] = Quantization.none,
    enforce_eager: Annotated[bool, typer.Option("--enforce-eager")] = False,
    vllm_version: Annotated[str | None, typer.Option(
        "--vllm-version",
        help=f"Default: the image tag in PATH mode, else {DEFAULT_VERSION}.")] = None,
    fetch: Annotated[bool, typer.Option(
        "--fetch",
        help="Download config.json from the Hugging Face Hub into the catalog.")] = False,
    catalog: Annotated[list[Path] | None, typer.Option(
        "--catalog", help="Extra model catalog folder (<org>/<name>/config.json).")] = None,
    prompt_tokens: Annotated[int, typer.Option(
        "--prompt-tokens",
        help="Expected prompt length of a typical request, for the concurrency figures and "
             f"the --max-num-seqs advice (default {DEFAULT_PROMPT_TOKENS}).")
    ] = DEFAULT_PROMPT_TOKENS,
    output_tokens: Annotated[int, typer.Option(
        "--output-tokens",
        help="Expected answer length of a typical request "
             f"(default {DEFAULT_OUTPUT_TOKENS}).")] = DEFAULT_OUTPUT_TOKENS,
    top: Annotated[int, typer.Option("--top", help="Rows of the recommendation table.")] = 12,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.text,
    list_catalog: Annotated[bool, typer.Option(
        "--list-models", help="List the models the offline catalog can plan, and exit.")] = False,
) -> None:
    """Plan a vLLM deployment: memory, context, concurrency, cost and startup time."""
    catalogs = list(catalog or [])
    if list_catalog:
        raise typer.Exit(_list_models(catalogs, output))
    traffic = RequestShape(prompt_tokens, output_tokens)
    if paths:
        raise typer.Exit(_plan_paths(paths, output, catalogs, traffic))
    spec = _model(model, model_config, fetch, catalogs)
    version = parse_version(vllm_version or DEFAULT_VERSION)
    args = EngineArgs(
        tensor_parallel_size=1 if tensor_parallel_size is None else tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        dtype=dtype,
        kv_cache_dtype=kv_cache_dtype.value,
        quantization=quantization.value,
        enforce_eager=enforce_eager,
    )
    args.validate()
    chosen_gpu, inst = _hardware(gpu, instance_type, gpu_memory_gib,
                                 args.tensor_parallel_size * args.pipeline_parallel_size)
    if chosen_gpu is None:
        rows = recommend(spec, args, version)
        payload = {"model": describe_model(spec), "recommendations": [r.to_dict() for r in rows]}
        _emit(payload, report.recommendations(spec, rows, args, version, top), output)
        raise typer.Exit(EXIT_OK if rows else EXIT_FINDINGS)
    result: PlanResult = plan(spec, chosen_gpu, args, version, instance=inst, traffic=traffic)
    _emit(result.to_dict(), report.plan_result(result), output)
    raise typer.Exit(EXIT_OK if result.starts else EXIT_FINDINGS)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI: tool errors, usage errors and surprises print `error: ...`, exit 2."""

    def run() -> int:
        try:
            code = app(args=argv, standalone_mode=False)
        except typer.TyperException as exc:  # usage errors: unknown option, bad value type
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            raise fail(message) from None
        except typer.Abort:
            raise fail("aborted") from None
        return code if isinstance(code, int) else EXIT_OK

    try:
        sys.exit(guarded(run))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

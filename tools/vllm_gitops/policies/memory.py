"""Memory rules: the sizing engine replays vLLM's startup memory accounting for each vLLM
server on the smallest GPU its pod can land on, and reports what vLLM would refuse."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.scope import Scope
from vllm_gitops.topology import ANY_GPU, memory_plan, vllm_servers


def _failures(scope: Scope, failure_ids: set[str], any_gpu: bool = False,
              ) -> Iterator[Violation]:
    """One finding per vLLM server whose predicted startup failure is one of these kinds.
    any_gpu: the check does not depend on the GPU (config checks), so it also runs where the
    scope does not tell which GPU the pod gets."""
    for server in vllm_servers(scope):
        planned = memory_plan(scope, server, any_gpu=any_gpu)
        if planned is None:
            continue  # unknown model or hardware
        result, hardware = planned
        failure = result.failure
        if failure is None or failure.id not in failure_ids:
            continue
        on = "" if any_gpu else f" on {hardware.gpu.device_name} ({hardware.source})"
        yield Violation(server.resource, (
            f"{server.container}: {server.model}{on}, vLLM would stop with: "
            f"{failure.message}"), (*server.container_path, "args"))


@rule(
    "memory/weights-fit", Severity.ERROR,
    "the model's weights do not fit in the memory of the GPUs the pod gets",
    why="""Each GPU must hold its share of the weights (1/TP of every layer of its pipeline
    stage). When the share is larger than the GPU, vLLM dies with CUDA out of memory while
    loading, after having downloaded everything, and the pod restarts forever.""",
    fix="""Use more GPUs (--tensor-parallel-size, with the nvidia.com/gpu limit), a GPU family
    with more memory (the nodeSelector / NodePool), or a quantized checkpoint. tools/plan
    --model <id> lists configurations that fit.""",
)
def weights_fit(scope: Scope) -> Iterator[Violation]:
    yield from _failures(scope, {"weights_do_not_fit"})


@rule(
    "memory/kv-cache", Severity.ERROR,
    "one --max-model-len request does not fit in the KV cache left after the weights",
    why="""After loading the weights vLLM gives the rest of gpu_memory_utilization x GPU memory
    to the KV cache, and refuses to start unless one request of --max-model-len tokens fits
    in it. The pod loads for minutes, then exits with "To serve at least one request...".""",
    fix="""Lower --max-model-len to the length in the message, raise
    --gpu-memory-utilization a little, use an fp8 KV cache (--kv-cache-dtype=fp8) or more /
    larger GPUs.""",
)
def kv_cache(scope: Scope) -> Iterator[Violation]:
    yield from _failures(scope, {"max_model_len_exceeds_kv_cache", "no_kv_cache_memory"})


@rule(
    "memory/max-model-len", Severity.ERROR,
    "--max-model-len is above the longest context the model supports",
    why="""vLLM checks --max-model-len against the model's max_position_embeddings (with its
    rope scaling) and refuses to start when it is larger: positions beyond what the model was
    trained on give garbage, so the server exits at startup.""",
    fix="""Set --max-model-len at most the model's limit given in the message (or enable the
    model's rope scaling in its config, which raises the limit).""",
)
def max_model_len(scope: Scope) -> Iterator[Violation]:
    yield from _failures(scope, {"max_model_len_too_long"}, any_gpu=True)


# Failure kinds other rules report: one defect, one finding.
_REPORTED_ELSEWHERE = {
    "weights_do_not_fit", "max_model_len_exceeds_kv_cache", "no_kv_cache_memory",
    "max_model_len_too_long",  # the memory rules above
    "heads_not_divisible", "pipeline_exceeds_layers", "vocab_not_divisible",
    "kv_heads_not_divisible", "mlp_not_divisible",  # parallelism/divisibility
    "not_enough_gpus",  # parallelism/gpu-count
}
# Checks of the flags and the checkpoint alone, whatever the GPU.
_GPU_INDEPENDENT = {"batched_tokens_below_num_seqs", "batched_tokens_below_max_model_len",
                    "quantization_mismatch"}


@rule(
    "memory/startup-failure", Severity.ERROR,
    "the sizing engine predicts vLLM stops at startup for another reason",
    why="""vLLM checks its configuration and the GPU before serving: a batch limit below
    --max-num-seqs, a dtype or quantization the GPU cannot run (bfloat16 needs an Ampere or
    newer GPU, T4 and V100 are older), a quantization that contradicts the checkpoint, or an
    out-of-memory while warming up after the KV cache took its share. Each one stops the
    server at startup, after minutes of loading, and the pod restarts forever.""",
    fix="""Follow the advice in vLLM's message quoted in the finding; tools/plan with the same
    flags shows the configuration's full memory budget.""",
)
def startup_failure(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        planned = memory_plan(scope, server, any_gpu=True)
        if planned is None or planned[0].failure is None:
            continue
        failure, hardware = planned[0].failure, planned[1]
        independent = failure.id in _GPU_INDEPENDENT
        if failure.id in _REPORTED_ELSEWHERE or (not independent and hardware.source == ANY_GPU):
            continue  # reported by another rule, or a GPU check where the GPU is not known
        on = "" if independent else f" on {hardware.gpu.device_name} ({hardware.source})"
        yield Violation(server.resource, (
            f"{server.container}: {server.model}{on}, vLLM would stop with: "
            f"{failure.message}"), (*server.container_path, "args"))

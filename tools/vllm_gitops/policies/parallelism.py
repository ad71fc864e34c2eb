"""Parallelism rules: the GPUs a vLLM server asks for are the GPUs its flags use, the model
splits over them the way vLLM requires, and the workers can talk to each other."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.memory import sharding_failure
from vllm_gitops.sizing.workload import VllmWorkload
from vllm_gitops.topology import catalog_model, gpus_needed, shm_volume, vllm_servers


@rule(
    "parallelism/gpu-count", Severity.ERROR,
    "the nvidia.com/gpu limit differs from the GPUs vLLM uses (TP x PP)",
    why="""vLLM starts one worker per GPU: tensor-parallel size x pipeline-parallel size of
    them. With fewer GPUs than that, it stops at startup ("World size ... is larger than the
    number of available GPUs"); with more, the extra GPUs are paid for and idle, and they
    block other pods from the node.""",
    fix="""Set resources.limits (and requests) nvidia.com/gpu to --tensor-parallel-size x
    --pipeline-parallel-size, or change the flags to match the GPUs.""",
)
def gpu_count(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        needed, how = gpus_needed(server)
        if server.gpus is None and (needed == 1 or _other_accelerator(server)):
            continue  # a CPU or Neuron/ROCm build of vLLM: nothing to compare
        if _spans_pods(server):
            continue  # the workers of a multi-node server run in other pods too
        if server.gpus != needed:
            asked = "no nvidia.com/gpu" if server.gpus is None else \
                f"nvidia.com/gpu {server.gpus}"
            yield Violation(server.resource, f"{server.container}: the pod requests {asked} "
                            f"but vLLM runs {needed} GPU workers ({how})",
                            (*server.container_path, "resources"))


def _other_accelerator(server: VllmWorkload) -> bool:
    """The container asks for a device other than an NVIDIA GPU (Neuron, AMD, Gaudi...)."""
    container = server.resource.get(*server.container_path)
    resources = container.get("resources") or {}
    keys = {str(k) for section in ("limits", "requests")
            for k in (resources.get(section) or {})}
    return any("/" in k and not k.startswith("hugepages-") for k in keys)


def _neuron(server: VllmWorkload) -> bool:
    """The container asks for AWS Neuron devices or cores. vLLM on Neuron runs tensor
    parallelism in a single process (executor "uni"), so its workers share no /dev/shm:
    https://github.com/vllm-project/vllm-neuron/blob/main/vllm_neuron/platform.py"""
    container = server.resource.get(*server.container_path)
    resources = container.get("resources") or {}
    return any(str(k).startswith("aws.amazon.com/neuron") for section in ("limits", "requests")
               for k in (resources.get(section) or {}))


def _spans_pods(server: VllmWorkload) -> bool:
    """A multi-node server (Ray executor, --nnodes, headless workers): one pod holds only
    part of the world size."""
    nodes = server.flags.get("--nnodes")
    return (server.flags.get("--distributed-executor-backend") == "ray"
            or "--headless" in server.flags or (nodes is not None and nodes != "1"))


@rule(
    "parallelism/divisibility", Severity.ERROR,
    "the model cannot be split over this tensor/pipeline parallel size",
    why="""Tensor parallelism cuts every layer into equal slices, one per GPU: the attention
    heads, the KV heads, the vocabulary and the MLP widths must divide evenly (pipeline
    parallelism needs at least one layer per stage). Otherwise vLLM stops while building the
    model and the pod restarts forever.""",
    fix="""Pick a tensor-parallel size that divides the model's attention heads (tools/plan
    --model <id> lists the legal sizes) and change the GPU count with it.""",
)
def divisibility(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        model = catalog_model(server)
        if model is None:
            continue
        tp = server.engine_args.tensor_parallel_size
        pp = server.engine_args.pipeline_parallel_size
        messages = []
        if tp > 0 and model.num_attention_heads % tp:
            messages.append(f"Total number of attention heads ({model.num_attention_heads}) "
                            f"must be divisible by tensor parallel size ({tp}).")
        elif tp > 0 and (failure := sharding_failure(model, tp)) is not None:
            messages.append(failure.message)
        if pp > model.num_layers:
            messages.append(f"pipeline_parallel_size ({pp}) is larger than the number of "
                            f"layers ({model.num_layers}).")
        for message in messages:
            yield Violation(server.resource, f"{server.container}: {server.model}: {message}",
                            (*server.container_path, "args"))


@rule(
    "parallelism/gpu-memory-utilization", Severity.ERROR,
    "--gpu-memory-utilization is not a number in (0, 1]",
    why="""--gpu-memory-utilization is the fraction of each GPU's memory vLLM may take
    (0.9 = 90 %). vLLM refuses anything outside (0, 1] at startup; a percentage such as 90
    is the usual slip.""",
    fix="""Write a fraction: --gpu-memory-utilization=0.90 (0.85-0.95 is usual).""",
)
def gpu_memory_utilization(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        if "--gpu-memory-utilization" not in server.flags:
            continue
        raw = server.flags["--gpu-memory-utilization"]
        try:
            value = float(str(raw))
        except ValueError:
            if raw is not None and "$" in raw:
                continue  # an unresolved variable: nothing to say
            value = float("nan")
        if not 0.0 < value <= 1.0:
            yield Violation(server.resource, f"{server.container}: --gpu-memory-utilization "
                            f"{raw} is not a fraction in (0, 1]", (*server.container_path, "args"))


@rule(
    "parallelism/shared-memory", Severity.ERROR,
    "multi-GPU vLLM without a memory-backed emptyDir at /dev/shm",
    why="""With more than one GPU, vLLM's workers exchange tensors through NCCL and shared
    memory in /dev/shm. A container gets only 64 MiB there by default, so NCCL fails or hangs
    at startup (ncclShmOpen / Bus error) and the model never loads.""",
    fix="""Add a volume `emptyDir: {medium: Memory, sizeLimit: 16Gi}` and mount it at
    /dev/shm in the vLLM container (the sizeLimit counts against the memory limit).""",
)
def shared_memory(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        needed, how = gpus_needed(server)
        container = server.resource.get(*server.container_path)
        if server.gpus is None and _neuron(server):
            continue  # Neuron: one process drives all the cores, no NCCL workers
        if needed > 1 and shm_volume(server.resource, container) is None:
            yield Violation(server.resource, f"{server.container}: {needed} GPU workers "
                            f"({how}) and no memory-backed emptyDir mounted at /dev/shm",
                            (*server.container_path, "volumeMounts"))

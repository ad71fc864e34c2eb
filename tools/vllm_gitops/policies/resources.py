"""Resource rules: what a vLLM container is given holds what it will use."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.quantity import GIB
from vllm_gitops.topology import gpus_needed, quantity, shm_volume, vllm_servers

# Host (CPU) memory of the vLLM processes, independent of the model: the weights live in GPU
# memory and the safetensors pages read while loading are reclaimable page cache. What stays
# resident is the API server and engine-core processes (Python, tokenizer, torch and CUDA
# libraries, ~4 GiB each) and one worker process per GPU (torch + CUDA context + NCCL host
# buffers, pinned staging: ~6 GiB each; the upper end of the 3-6 GiB RSS vLLM workers show).
HOST_BASE_GIB = 8.0
HOST_PER_GPU_WORKER_GIB = 6.0


def host_memory_gib(gpu_workers: int) -> float:
    return HOST_BASE_GIB + HOST_PER_GPU_WORKER_GIB * max(gpu_workers, 1)


@rule(
    "resources/shm-over-limit", Severity.WARNING,
    "the /dev/shm sizeLimit plus vLLM's own memory reaches the container memory limit",
    why="""A memory-backed emptyDir (tmpfs) at /dev/shm is RAM, and what is written to it
    counts against the container's memory limit
    (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir). The vLLM processes need
    their own host memory on top (about 8 GiB plus 6 GiB per GPU worker). When the two add up
    to the limit, the kernel OOM-kills vLLM as soon as shared memory fills under load.""",
    fix="""Lower the /dev/shm sizeLimit (NCCL needs a few GiB; 16Gi is plenty for 8 GPUs) or
    raise the container's memory limit so that sizeLimit + host memory stays below it.""",
)
def shm_over_limit(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        container = server.resource.get(*server.container_path)
        shm = shm_volume(server.resource, container)
        size = quantity(shm.get("sizeLimit")) if shm else None
        limit = quantity(((container.get("resources") or {}).get("limits") or {}).get("memory"))
        if size is None or limit is None:
            continue
        workers, _ = gpus_needed(server)
        host = host_memory_gib(workers)
        if size / GIB + host >= limit / GIB:
            yield Violation(server.resource, (
                f"{server.container}: /dev/shm sizeLimit {size / GIB:g} GiB + ~{host:g} GiB for "
                f"the vLLM processes ({workers} GPU worker(s)) >= memory limit "
                f"{limit / GIB:g} GiB"), (*server.container_path, "resources", "limits",
                                          "memory"))

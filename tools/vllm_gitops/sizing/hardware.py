"""GPU and EC2 instance catalogs (data/gpus.json, data/instances.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from vllm_gitops.errors import ToolError

MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Gpu:
    key: str
    device_name: str
    torch_total_gib: float  # what vLLM multiplies by --gpu-memory-utilization
    label_memory_mib: int | None = None
    karpenter_gpu_name: str | None = None
    compute_capability: float = 8.0
    aliases: tuple[str, ...] = ()
    basis: str = ""

    @property
    def supports_bf16(self) -> bool:
        return self.compute_capability >= 8.0

    @property
    def supports_fp8_weights(self) -> bool:
        """Native FP8 from Ada/Hopper (8.9); Ampere runs FP8 weights through Marlin."""
        return self.compute_capability >= 8.0


@dataclass(frozen=True)
class InstanceType:
    name: str
    family: str
    gpus: int
    gpu: Gpu
    vcpus: int
    memory_mib: int
    usd_per_hour: float | None
    local_nvme_gb: int
    network_gbps: float
    ebs_mbps: int
    eni_max_pods: int
    labels: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    allocatable_al2023_default: dict[str, str] = field(
        default_factory=dict, compare=False, hash=False
    )


def _load(name: str) -> dict[str, Any]:
    text = resources.files("vllm_gitops.sizing").joinpath("data", name).read_text("utf-8")
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


@cache
def gpu_catalog() -> dict[str, Gpu]:
    gpus = {}
    for row in _load("gpus.json")["gpus"]:
        gpu = Gpu(
            key=row["key"],
            device_name=row["device_name"],
            torch_total_gib=float(row["torch_total_gib"]),
            label_memory_mib=int(row["label_memory_mib"]),
            karpenter_gpu_name=row["karpenter_gpu_name"],
            compute_capability=float(row["compute_capability"]),
            aliases=tuple(row.get("aliases", [])),
            basis=row.get("torch_total_basis", ""),
        )
        gpus[gpu.key] = gpu
    return gpus


@cache
def instance_catalog() -> dict[str, InstanceType]:
    gpus = gpu_catalog()
    out = {}
    for row in _load("instances.json")["instances"]:
        out[row["instance_type"]] = InstanceType(
            name=row["instance_type"],
            family=row["family"],
            gpus=int(row["gpus"]),
            gpu=gpus[row["gpu"]],
            vcpus=int(row["vcpus"]),
            memory_mib=int(row["memory_mib"]),
            usd_per_hour=row["usd_per_hour"],
            local_nvme_gb=int(row["local_nvme_gb"]),
            network_gbps=float(row["network_gbps"]),
            ebs_mbps=int(row["ebs_mbps"]),
            eni_max_pods=int(row["eni_max_pods"]),
            labels=dict(row["labels"]),
            allocatable_al2023_default=dict(row["allocatable_al2023_default"]),
        )
    return out


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-").removeprefix("nvidia-")


def find_gpu(name: str) -> Gpu:
    """A GPU by catalog key, alias or Karpenter gpu-name label (case-insensitive)."""
    wanted = _normalise(name)
    for gpu in gpu_catalog().values():
        names = {gpu.key, *gpu.aliases, _normalise(gpu.device_name)}
        if wanted in {_normalise(n) for n in names}:
            return gpu
    for gpu in gpu_catalog().values():  # Karpenter label: "a100" is ambiguous, so last
        if gpu.karpenter_gpu_name == wanted:
            return gpu
    known = ", ".join(gpu_catalog())
    raise ToolError(
        f"unknown GPU {name!r}; known: {known}. For any other GPU pass --gpu-memory-gib "
        "with the total memory PyTorch reports (torch.cuda.mem_get_info()[1] / 2**30)."
    )


def find_instance(name: str) -> InstanceType:
    catalog = instance_catalog()
    if name in catalog:
        return catalog[name]
    raise ToolError(
        f"unknown instance type {name!r}; the catalog holds the EC2 GPU families "
        f"{', '.join(sorted({i.family for i in catalog.values()}))}"
    )


def gpu_by_label_memory(gpu_name: str, memory_mib: int | None) -> Gpu | None:
    """The GPU a node carries, from its Karpenter gpu-name (and gpu-memory) labels."""
    for gpu in gpu_catalog().values():
        if gpu.karpenter_gpu_name != gpu_name:
            continue
        if memory_mib is None or gpu.label_memory_mib == memory_mib:
            return gpu
    return None


def custom_gpu(total_gib: float) -> Gpu:
    """Any other GPU, described only by the total memory PyTorch reports."""
    if not 1.0 <= total_gib <= 4096.0:
        raise ToolError(f"--gpu-memory-gib must be between 1 and 4096, got {total_gib}")
    return Gpu(key=f"custom-{total_gib:g}GiB", device_name="custom GPU", torch_total_gib=total_gib,
               compute_capability=9.0, basis="given with --gpu-memory-gib")


def cheapest_instance(gpu: Gpu, min_gpus: int) -> InstanceType | None:
    """The cheapest on-demand instance with at least `min_gpus` of this GPU."""
    priced = [
        i for i in instance_catalog().values()
        if i.gpu.key == gpu.key and i.gpus >= min_gpus and i.usd_per_hour is not None
    ]
    return min(priced, key=lambda i: (i.usd_per_hour or 0.0, i.gpus), default=None)

"""How long a vLLM pod takes from container start to serving: used to size startup probes.

    cold  = engine init + download + load + torch.compile + CUDA-graph capture + KV profiling
    warm  = the same with the weights already on the cache volume

Download is bounded by the Hub, the instance network and the cache volume's write throughput;
load by the volume's read throughput (gp3: as configured, 125 MiB/s by default) and the
instance's EBS bandwidth. Constants are conservative medians of public vLLM startup logs
("Model loading took ... seconds", "torch.compile takes ... s in total", "Graph capturing
finished in ... secs"); the probe recommendation adds a 25 % margin.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from vllm_gitops.sizing.engine_args import ResolvedArgs
from vllm_gitops.sizing.models import ModelSpec
from vllm_gitops.sizing.quantity import MB, MIB
from vllm_gitops.sizing.version import VllmVersion
from vllm_gitops.sizing.weights import checkpoint_bytes

HUB_DOWNLOAD_MB_S = 150.0  # sustained Hugging Face Hub (Xet/CDN) rate one pod achieves
NETWORK_EFFICIENCY = 0.8  # share of the instance's baseline bandwidth a download reaches
GP3_DEFAULT_MIB_S = 125.0  # gp3 baseline throughput (configurable up to the volume maximum)
INSTANCE_STORE_MIB_S = 2000.0  # RAID0 local NVMe (instanceStorePolicy: RAID0)
HOST_TO_GPU_GB_S = 10.0  # pinned-memory copy into each GPU (PCIe Gen4 x16, conservative)
ENGINE_INIT_S = 20.0  # imports, tokenizer, API server, device init
DISTRIBUTED_INIT_S = 10.0  # worker processes and NCCL communicators when TP x PP > 1
COMPILE_BASE_S = 15.0  # torch.compile (V1): Dynamo trace + Inductor, cold cache
COMPILE_PER_LAYER_S = 0.8
GRAPH_BASE_S = 5.0  # CUDA-graph capture over the default capture sizes
GRAPH_PER_LAYER_S = 0.25
KV_PROFILE_S = 5.0  # profile_run + KV allocation + sampler warm-up
PROBE_MARGIN = 1.25


@dataclass(frozen=True)
class Storage:
    """Where the weights come from and go to."""

    volume_mib_s: float = GP3_DEFAULT_MIB_S  # cache volume throughput
    volume: str = "gp3"  # gp3 | instance-store | unknown
    network_gbps: float | None = None  # instance baseline bandwidth
    ebs_mbps: float | None = None  # instance EBS bandwidth (caps any gp3 volume)

    def volume_mb_s(self) -> float:
        rate = self.volume_mib_s * MIB / MB
        if self.volume == "gp3" and self.ebs_mbps:
            rate = min(rate, self.ebs_mbps / 8)
        return rate

    def download_mb_s(self) -> float:
        rates = [HUB_DOWNLOAD_MB_S, self.volume_mb_s()]
        if self.network_gbps:
            rates.append(self.network_gbps * 1000 / 8 * NETWORK_EFFICIENCY)
        return min(rates)


# Before a new model's startup probe starts counting, Karpenter launches a GPU node (~3-5 min)
# and the node pulls the vLLM image (~3-5 min, more on a cold node): what a GitOps wait for
# the first rollout adds to the start itself.
NODE_AND_PULL_S = 15 * 60


@dataclass(frozen=True)
class StartupEstimate:
    download_s: float
    load_s: float
    engine_init_s: float
    compile_s: float
    cudagraph_s: float
    kv_init_s: float
    weight_bytes: float
    download_mb_s: float
    volume_mb_s: float

    @property
    def warm_s(self) -> float:
        """Weights already on the cache volume."""
        return self.engine_init_s + self.load_s + self.compile_s + self.cudagraph_s + self.kv_init_s

    @property
    def cold_s(self) -> float:
        """First start on an empty cache volume: what a startup probe must allow."""
        return self.warm_s + self.download_s

    @property
    def recommended_probe_s(self) -> int:
        return int(math.ceil(self.cold_s * PROBE_MARGIN / 10.0) * 10)

    def to_dict(self) -> dict[str, Any]:
        out = {k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out["weight_bytes"] = int(self.weight_bytes)
        out["cold_s"] = round(self.cold_s, 1)
        out["warm_s"] = round(self.warm_s, 1)
        out["recommended_startup_probe_s"] = self.recommended_probe_s
        return out


def estimate_startup(
    model: ModelSpec,
    args: ResolvedArgs,
    version: VllmVersion,
    storage: Storage | None = None,
    weights_gib_per_gpu: float = 0.0,
) -> StartupEstimate:
    storage = storage or Storage()
    weight_bytes = checkpoint_bytes(model)
    layers = math.ceil(model.num_layers / args.pipeline_parallel_size)
    compiled = version.engine == "V1" and not args.enforce_eager
    engine_init = ENGINE_INIT_S + (DISTRIBUTED_INIT_S if args.world_size > 1 else 0.0)
    load = weight_bytes / MB / storage.volume_mb_s()
    load += weights_gib_per_gpu * 1.073741824 / HOST_TO_GPU_GB_S
    return StartupEstimate(
        download_s=weight_bytes / MB / storage.download_mb_s(),
        load_s=load,
        engine_init_s=engine_init,
        compile_s=COMPILE_BASE_S + COMPILE_PER_LAYER_S * layers if compiled else 0.0,
        cudagraph_s=0.0 if args.enforce_eager else GRAPH_BASE_S + GRAPH_PER_LAYER_S * layers,
        kv_init_s=KV_PROFILE_S,
        weight_bytes=weight_bytes,
        download_mb_s=storage.download_mb_s(),
        volume_mb_s=storage.volume_mb_s(),
    )

"""Finding vLLM workloads in rendered manifests, and planning them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vllm_gitops.scope import Scope
from vllm_gitops.sizing.planner import plan_workload
from vllm_gitops.sizing.startup import GP3_DEFAULT_MIB_S, Storage, estimate_startup
from vllm_gitops.sizing.workload import find_vllm_workloads, parse_flags

DEPLOYMENT = """
apiVersion: v1
kind: ConfigMap
metadata: {name: model, namespace: inference}
data: {MODEL_ID: Qwen/Qwen3-14B, MAX_LEN: "32768"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: qwen, namespace: inference}
spec:
  replicas: 2
  template:
    spec:
      nodeSelector: {karpenter.sh/nodepool: gpu}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      initContainers:
        - {name: fetch, image: vllm/vllm-openai:v0.11.0, command: [sh, -c, "true"]}
      containers:
        - name: vllm
          image: "vllm/vllm-openai:v0.11.0@sha256:\
            0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
          env:
            - name: MODEL
              valueFrom: {configMapKeyRef: {name: model, key: MODEL_ID}}
            - {name: HF_HOME, value: /models}
          envFrom: [{configMapRef: {name: model}}]
          args: ["$(MODEL)", "--tensor-parallel-size=4", "--max-model-len", "$(MAX_LEN)",
                 "--gpu-memory-utilization=0.90", "--enforce-eager", "--served-model-name", "q"]
          resources:
            limits: {nvidia.com/gpu: "4"}
            requests: {cpu: "16", memory: 64Gi, nvidia.com/gpu: "4"}
          startupProbe:
            httpGet: {path: /health, port: 8000}
            periodSeconds: 10
            failureThreshold: 12
          volumeMounts: [{name: cache, mountPath: /models}]
      volumes:
        - {name: cache, persistentVolumeClaim: {claimName: hf-cache}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: hf-cache, namespace: inference}
spec: {storageClassName: gp3-fast, accessModes: [ReadWriteOnce]}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3-fast}
provisioner: ebs.csi.aws.com
parameters: {type: gp3, throughput: "500"}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: gpu}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      taints: [{key: nvidia.com/gpu, value: "true", effect: NoSchedule}]
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [g6e]}
        - {key: karpenter.k8s.aws/instance-gpu-count, operator: In, values: ["4"]}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: gpu}
spec: {amiFamily: AL2023, role: r}
"""

# The guide's Deployment (seed-repo-review.md §3.1): `sh -c "vllm serve ..."`, liveness only.
GUIDE = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm-qwen-server}
spec:
  template:
    spec:
      containers:
        - name: vllm-qwen-server
          image: vllm/vllm-openai:latest
          command: ["/bin/sh", "-c"]
          args:
            - >-
              vllm serve Qwen/Qwen3-14B  --enable-auto-tool-choice --tool-call-parser hermes
              --trust-remote-code --max-num-batched-tokens 32768  --max-num-seqs 8
              --max-model-len 32768 --dtype bfloat16 --tensor-parallel-size 4
              --gpu-memory-utilization 0.90
          resources:
            limits: {nvidia.com/gpu: "4"}
            requests: {cpu: "22", memory: 64Gi, nvidia.com/gpu: "4"}
          livenessProbe:
            httpGet: {path: /health, port: 8000}
            initialDelaySeconds: 240
            periodSeconds: 10
            failureThreshold: 30
      nodeSelector: {node.kubernetes.io/instance-type: g5.12xlarge}
"""


def test_deployment_args_env_and_configmaps(make_scope: Callable[[str], Scope]) -> None:
    [wl] = find_vllm_workloads(make_scope(DEPLOYMENT))  # the init container is not a server
    assert wl.model == "Qwen/Qwen3-14B"
    assert str(wl.version) == "0.11.0"
    assert wl.engine_args.tensor_parallel_size == 4
    assert wl.engine_args.max_model_len == 32768
    assert wl.engine_args.enforce_eager
    assert wl.flags["--served-model-name"] == "q"
    assert wl.gpus == 4 and wl.replicas == 2
    assert wl.scheduling.requests["cpu"] == 16
    assert wl.kill_budget_s == 120
    cache = wl.cache
    assert (cache.kind, cache.storage_class, cache.throughput_mib_s) == ("pvc", "gp3-fast", 500)


def test_plan_workload_uses_karpenter_and_the_cache_volume(
    make_scope: Callable[[str], Scope],
) -> None:
    scope = make_scope(DEPLOYMENT)
    [wl] = find_vllm_workloads(scope)
    result = plan_workload(wl, scope)
    assert result.karpenter is not None and result.karpenter.instance_type == "g6e.12xlarge"
    assert result.result is not None and result.result.starts
    assert result.result.instance is not None and result.result.instance.name == "g6e.12xlarge"
    startup = result.result.startup
    assert startup is not None and startup.volume_mb_s == pytest.approx(500 * 1.048576)
    assert any("startupProbe allows 120 s" in note for note in result.notes)


def test_guide_shell_form_and_liveness_budget(make_scope: Callable[[str], Scope]) -> None:
    scope = make_scope(GUIDE)
    [wl] = find_vllm_workloads(scope)
    assert wl.model == "Qwen/Qwen3-14B" and wl.version is None
    assert wl.engine_args.max_num_batched_tokens == 32768 and wl.engine_args.max_num_seqs == 8
    assert "--trust-remote-code" in wl.flags and wl.flags["--tool-call-parser"] == "hermes"
    assert wl.kill_budget_s == 240 + 30 * 10
    result = plan_workload(wl, scope)
    assert result.hardware_source.startswith("nodeSelector")
    assert result.result is not None and result.result.instance is not None
    assert result.result.instance.name == "g5.12xlarge" and result.result.starts
    assert any("pins no vLLM version" in note for note in result.notes)


def test_unknown_model_in_manifests_is_reported_not_raised(
    make_scope: Callable[[str], Scope],
) -> None:
    scope = make_scope(GUIDE.replace("Qwen/Qwen3-14B", "acme/secret-model"))
    [wl] = find_vllm_workloads(scope)
    result = plan_workload(wl, scope)
    assert result.error is not None and "--model-config" in result.error


def test_no_hardware_in_scope_gives_recommendations(make_scope: Callable[[str], Scope]) -> None:
    selector = "nodeSelector: {node.kubernetes.io/instance-type: g5.12xlarge}"
    scope = make_scope(GUIDE.replace(selector, ""))
    [wl] = find_vllm_workloads(scope)
    result = plan_workload(wl, scope)
    assert result.result is None and result.recommendations
    prices = [r.instance.usd_per_hour or 0.0 for r in result.recommendations]
    assert prices == sorted(prices)


def test_flag_forms() -> None:
    model, flags = parse_flags(["python3", "-m", "vllm.entrypoints.openai.api_server",
                                "--model", "meta-llama/Llama-3.1-8B-Instruct",
                                "--max_model_len=8192", "--enforce-eager", "--port", "8000"])
    assert model == "meta-llama/Llama-3.1-8B-Instruct"
    assert flags["--max-model-len"] == "8192" and flags["--enforce-eager"] is None
    assert flags["--port"] == "8000"
    model, _ = parse_flags(["Qwen/Qwen3-8B", "--dtype", "auto"])  # image entrypoint is vllm serve
    assert model == "Qwen/Qwen3-8B"


def test_startup_components() -> None:
    from vllm_gitops.sizing.engine_args import EngineArgs, resolve
    from vllm_gitops.sizing.hardware import find_gpu
    from vllm_gitops.sizing.models import load_model
    from vllm_gitops.sizing.version import parse_version
    from vllm_gitops.sizing.weights import checkpoint_bytes

    model, version = load_model("Qwen/Qwen3-14B"), parse_version("0.11.0")
    args = resolve(EngineArgs(), model, find_gpu("H100"), version)
    gp3 = estimate_startup(model, args, version, Storage())
    size_mb = checkpoint_bytes(model) / 1e6
    rate = GP3_DEFAULT_MIB_S * 1.048576
    assert gp3.download_s == pytest.approx(size_mb / rate)  # gp3's 125 MiB/s is the bottleneck
    assert gp3.load_s == pytest.approx(size_mb / rate)
    assert gp3.cold_s == pytest.approx(gp3.warm_s + gp3.download_s)
    assert gp3.recommended_probe_s >= 1.25 * gp3.cold_s
    local = Storage(volume_mib_s=2000, volume="instance-store", network_gbps=1.0)
    nvme = estimate_startup(model, args, version, local)
    assert nvme.download_s == pytest.approx(size_mb / (1.0 * 125 * 0.8))  # network-bound
    assert nvme.load_s < gp3.load_s / 10
    eager = estimate_startup(model, resolve(EngineArgs(enforce_eager=True), model,
                                            find_gpu("H100"), version), version)
    assert eager.compile_s == 0 and eager.cudagraph_s == 0

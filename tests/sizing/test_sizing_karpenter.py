"""Karpenter simulation: allocatable maths, requirements, taints, limits, the cheapest pick."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from vllm_gitops.sizing.hardware import find_instance, instance_catalog
from vllm_gitops.sizing.karpenter import (
    EKS_DAEMONSETS,
    DaemonSetPod,
    KarpenterChoice,
    NodeClass,
    NodePool,
    PodScheduling,
    Requirement,
    allocatable,
    daemonset_overhead,
    kube_reserved_cpu_cores,
    simulate_karpenter,
)
from vllm_gitops.sizing.quantity import parse_quantity

# The guide's GPU pool (seed-repo-review.md §3.3): g5/g6 with exactly 4 GPUs, on-demand, no taint.
GUIDE = """
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: gpu-inference}
spec:
  limits: {cpu: 1024, memory: 8192Gi}
  template:
    metadata:
      labels:
        model-inferencing: gpu-inference
        ray-control-plane: "false"
        nvidia.com/gpu: present
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu-inference}
      expireAfter: 8h
      requirements:
        - {key: karpenter.k8s.aws/instance-category, operator: In, values: [g]}
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [g5, g6]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: kubernetes.io/os, operator: In, values: [linux]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}
        - {key: karpenter.k8s.aws/instance-gpu-manufacturer, operator: In, values: [nvidia]}
        - {key: karpenter.k8s.aws/instance-gpu-count, operator: In, values: ["4"]}
---
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: gpu-inference}
spec:
  kubelet: {podsPerCore: 2, maxPods: 20, systemReserved: {cpu: 500m, memory: 900Mi}}
  amiFamily: AL2023
  role: KarpenterNode-demo
  blockDeviceMappings:
    - deviceName: /dev/xvda
      ebs: {volumeSize: 500Gi, volumeType: gp3, iops: 10000, throughput: 512}
"""
# The guide's vLLM pod: 4 GPUs, cpu 22, 64Gi, nodeSelector on the pool's labels.
GUIDE_POD = {
    "nodeSelector": {"kubernetes.io/arch": "amd64", "nvidia.com/gpu": "present",
                     "karpenter.sh/nodepool": "gpu-inference"},
    "tolerations": [{"key": "model-inferencing", "operator": "Equal", "value": "gpu-inference",
                     "effect": "NoSchedule"}],
    "containers": [{"name": "vllm", "resources": {
        "limits": {"memory": "64Gi", "nvidia.com/gpu": "4"},
        "requests": {"cpu": "22", "memory": "64Gi", "nvidia.com/gpu": "4"}}}],
}


def _load(text: str) -> tuple[list[NodePool], dict[str, NodeClass]]:
    docs = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    pools = [NodePool.from_doc(d) for d in docs if d["kind"] == "NodePool"]
    classes = [NodeClass.from_doc(d) for d in docs if d["kind"] == "EC2NodeClass"]
    return pools, {c.name: c for c in classes}


def _simulate(text: str, pod: dict[str, Any] | None = None) -> KarpenterChoice:
    pools, classes = _load(text)
    return simulate_karpenter(PodScheduling.from_pod_spec(pod or GUIDE_POD), pools, classes,
                              instance_catalog().values())


@pytest.mark.parametrize("name", sorted(instance_catalog()))
def test_allocatable_formula_reproduces_karpenter(name: str) -> None:
    instance = find_instance(name)
    expected = instance.allocatable_al2023_default
    computed = allocatable(instance)
    assert computed["cpu"] == pytest.approx(parse_quantity(expected["cpu"]))
    assert computed["memory"] == pytest.approx(parse_quantity(expected["memory"]))
    ephemeral = parse_quantity(expected["ephemeral-storage"])
    assert computed["ephemeral-storage"] == pytest.approx(ephemeral, rel=0.06)  # 17Gi is rounded
    assert computed["pods"] == float(expected["pods"])
    assert computed["nvidia.com/gpu"] == float(expected["nvidia.com/gpu"])


def test_kube_reserved_cpu_examples() -> None:
    assert [round(kube_reserved_cpu_cores(n) * 1000) for n in (4, 8, 48, 96, 192)] == [
        80, 90, 190, 310, 550]


def test_guides_pool_launches_the_cheapest_4_gpu_g5_or_g6() -> None:
    choice = _simulate(GUIDE)
    assert choice.instance_type == "g6.12xlarge" and choice.usd_per_hour == pytest.approx(4.6016)
    pool = choice.pools[0]
    assert [c.instance.name for c in pool.candidates] == [
        "g6.12xlarge", "g5.12xlarge", "g6.24xlarge", "g5.24xlarge"]
    assert choice.chosen is not None and choice.chosen.capacity_types == ("on-demand",)


def test_node_class_kubelet_settings_shrink_allocatable() -> None:
    _, classes = _load(GUIDE)
    node_class = classes["gpu-inference"]
    g6 = find_instance("g6.12xlarge")
    default, tuned = allocatable(g6), allocatable(g6, node_class)
    assert tuned["pods"] == 20
    assert default["cpu"] - tuned["cpu"] == pytest.approx(0.5)
    assert default["memory"] - tuned["memory"] == pytest.approx(900 * 2**20)
    assert tuned["ephemeral-storage"] == pytest.approx(500 * 2**30 * 0.9 - 2**30)
    assert node_class.root_throughput_mib_s == 512


def test_pool_limits_and_taints_exclude() -> None:
    limited = GUIDE.replace("limits: {cpu: 1024, memory: 8192Gi}", 'limits: {nvidia.com/gpu: "2"}')
    assert _simulate(limited).chosen is None
    tainted = GUIDE.replace("expireAfter: 8h", "expireAfter: 8h\n      taints: "
                            "[{key: nvidia.com/gpu, value: 'true', effect: NoSchedule}]")
    choice = _simulate(tainted)
    assert choice.chosen is None and "does not tolerate taint nvidia.com/gpu" in choice.reason
    tolerant = {**GUIDE_POD, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                              "effect": "NoSchedule"}]}
    assert _simulate(tainted, tolerant).instance_type == "g6.12xlarge"


def test_requests_that_do_not_fit_any_type() -> None:
    pod = {**GUIDE_POD, "containers": [{"name": "vllm", "resources": {
        "requests": {"cpu": "100", "nvidia.com/gpu": "4"}}}]}
    choice = _simulate(GUIDE, pod)
    assert choice.chosen is None and "requests do not fit" in choice.reason


def test_undefined_custom_label_is_incompatible() -> None:
    pod = {**GUIDE_POD, "nodeSelector": {"accelerator": "nvidia"}}
    choice = _simulate(GUIDE, pod)
    assert choice.chosen is None
    assert 'label "accelerator" does not have known values' in choice.reason


def test_weight_orders_pools_and_gpu_memory_requirement_selects() -> None:
    big = """
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: big}
spec:
  weight: 50
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      requirements:
        - {key: karpenter.k8s.aws/instance-gpu-memory, operator: Gt, values: ["40000"]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [on-demand, spot]}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: small}
spec:
  weight: 10
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [g6]}
"""
    pod = {"containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}
    choice = _simulate(big, pod)  # no EC2NodeClass in scope: defaults apply
    assert choice.chosen is not None and choice.chosen.nodepool == "big"
    assert choice.instance_type == "g6e.xlarge"  # cheapest GPU with more than 40000 MiB
    assert choice.chosen.capacity_types == ("on-demand", "spot")
    wants_l4 = {**pod, "nodeSelector": {"karpenter.k8s.aws/instance-gpu-name": "l4"}}
    # "big" has no L4, so the pod falls through to "small"
    assert _simulate(big, wants_l4).instance_type == "g6.xlarge"


def test_requirement_operators() -> None:
    gt = Requirement("x", "Gt", ("10",))
    assert gt.allows(True, frozenset({"11"})) and not gt.allows(True, frozenset({"10"}))
    assert Requirement("x", "NotIn", ("a",)).allows(False, None)
    assert not Requirement("x", "Exists").allows(False, None)
    assert Requirement("x", "In", ("a",)).allows(True, None)  # unknown value (zone) may match


# --------------------------------------------------------------------------- DaemonSets

TAINTED_GUIDE = GUIDE.replace("expireAfter: 8h", "expireAfter: 8h\n      taints: "
                              "[{key: nvidia.com/gpu, value: 'true', effect: NoSchedule}]")
DCGM = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: dcgm-exporter}
spec:
  template:
    spec:
      nodeSelector: {nvidia.com/gpu: present}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers:
        - name: exporter
          resources: {requests: {cpu: "1", memory: 2Gi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: cpu-only-agent}
spec:
  template:
    spec:
      containers:
        - name: agent
          resources: {requests: {cpu: "4", memory: 8Gi}}
"""


def _daemonsets(text: str) -> list[DaemonSetPod]:
    return [DaemonSetPod.from_doc(d) for d in yaml.load_all(text, Loader=yaml.CSafeLoader)]


def test_eks_allowance_is_counted_on_every_gpu_node() -> None:
    pools, _ = _load(GUIDE)
    overhead = daemonset_overhead(pools[0], find_instance("g6.12xlarge"))
    assert overhead["pods"] == len(EKS_DAEMONSETS) == 4
    assert overhead["cpu"] == pytest.approx(0.025 + 0.1 + 0.01)
    assert overhead["memory"] == pytest.approx(40 * 2**20)
    cpu_only = daemonset_overhead(pools[0], find_instance("g6.12xlarge").__class__(
        **{**find_instance("g6.12xlarge").__dict__, "gpus": 0}))
    assert cpu_only["pods"] == 3  # no device plugin without GPUs
    assert daemonset_overhead(pools[0], find_instance("g6.12xlarge"), eks_allowance=False) == {}


def test_daemonsets_in_scope_count_only_where_they_land() -> None:
    pools, _ = _load(TAINTED_GUIDE)
    gpu_node = find_instance("g6.12xlarge")
    overhead = daemonset_overhead(pools[0], gpu_node, _daemonsets(DCGM))
    # dcgm-exporter tolerates the GPU taint and selects the pool's label; the agent does not
    # tolerate the taint, so it never lands on these nodes.
    assert overhead["cpu"] == pytest.approx(1 + 0.135)
    assert overhead["memory"] == pytest.approx(2 * 2**30 + 40 * 2**20)
    assert overhead["pods"] == 5
    untainted, _ = _load(GUIDE)
    both = daemonset_overhead(untainted[0], gpu_node, _daemonsets(DCGM))
    assert both["cpu"] == pytest.approx(1 + 4 + 0.135)


def test_a_daemonset_in_scope_replaces_the_allowance_of_the_same_name() -> None:
    pools, _ = _load(GUIDE)
    own_proxy = _daemonsets("""
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-proxy}
spec:
  template:
    spec:
      tolerations: [{operator: Exists}]
      containers: [{name: kube-proxy, resources: {requests: {cpu: 300m}}}]
""")
    overhead = daemonset_overhead(pools[0], find_instance("g6.12xlarge"), own_proxy)
    assert overhead["pods"] == 4
    assert overhead["cpu"] == pytest.approx(0.025 + 0.3 + 0.01)


def test_daemonsets_push_a_tight_pod_to_the_next_instance_type() -> None:
    """g6.12xlarge: 48 vCPUs, 20 pods and 0.5 CPU system-reserved by the guide's node class.
    A pod that fits alone no longer fits once the GPU DaemonSets take their share."""
    pools, classes = _load(TAINTED_GUIDE)
    alloc = allocatable(find_instance("g6.12xlarge"), classes["gpu-inference"])
    cpu = f"{int((alloc['cpu'] - 0.2) * 1000)}m"  # room for the 0.135 CPU allowance, not DCGM
    pod = {**GUIDE_POD, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                         "effect": "NoSchedule"}],
           "containers": [{"name": "vllm", "resources": {
               "requests": {"cpu": cpu, "memory": "64Gi", "nvidia.com/gpu": "4"}}}]}
    scheduling = PodScheduling.from_pod_spec(pod)
    catalog = instance_catalog().values()
    alone = simulate_karpenter(scheduling, pools, classes, catalog, eks_allowance=False)
    allowance = simulate_karpenter(scheduling, pools, classes, catalog)
    with_dcgm = simulate_karpenter(scheduling, pools, classes, catalog,
                                   daemonsets=_daemonsets(DCGM))
    assert alone.instance_type == allowance.instance_type == "g6.12xlarge"
    assert with_dcgm.instance_type == "g6.24xlarge"  # g5.12xlarge has 48 vCPUs too: no room
    assert with_dcgm.chosen is not None
    assert with_dcgm.chosen.daemon_overhead["cpu"] == pytest.approx(1.135)

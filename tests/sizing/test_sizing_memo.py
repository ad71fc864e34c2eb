"""The sizing answers kept per process (sizing/memo.py): shared by equal inputs only."""

from __future__ import annotations

from dataclasses import replace

from vllm_gitops.sizing import EngineArgs, find_gpu, load_model, parse_version, plan
from vllm_gitops.sizing.hardware import instance_catalog
from vllm_gitops.sizing.karpenter import NodePool, PodScheduling, simulate_karpenter
from vllm_gitops.sizing.memo import ValueMemo

ARGS = EngineArgs(tensor_parallel_size=4, max_model_len=32768)


def test_equal_inputs_share_an_answer_and_different_ones_do_not() -> None:
    model, gpu, version = load_model("Qwen/Qwen3-14B"), find_gpu("L4"), parse_version("0.11.0")
    first = plan(model, gpu, ARGS, version)
    again = plan(load_model("Qwen/Qwen3-14B"), find_gpu("L4"), replace(ARGS), version)
    assert again is first  # equal by value, though built anew
    shorter = plan(model, gpu, replace(ARGS, max_model_len=8192), version)
    assert shorter is not first
    assert shorter.memory.args.max_model_len == 8192
    assert first.memory.args.max_model_len == 32768


def test_karpenter_answers_follow_the_pools() -> None:
    pod = PodScheduling.from_pod_spec({"containers": [{"name": "vllm", "resources": {
        "limits": {"nvidia.com/gpu": 4}, "requests": {"cpu": "8", "memory": "64Gi"}}}],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]})
    pool = NodePool.from_doc({"metadata": {"name": "gpu"}, "spec": {"template": {"spec": {
        "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                          "values": ["g6.12xlarge"]}],
        "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}}})
    catalog = instance_catalog().values()
    chosen = simulate_karpenter(pod, [pool], {}, catalog).chosen
    assert chosen is not None and chosen.instance.name == "g6.12xlarge"
    other = NodePool.from_doc({"metadata": {"name": "gpu"}, "spec": {"template": {"spec": {
        "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                          "values": ["g5.12xlarge"]}],
        "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}}})
    moved = simulate_karpenter(pod, [other], {}, catalog).chosen
    assert moved is not None and moved.instance.name == "g5.12xlarge"


def test_a_full_memo_starts_over() -> None:
    memo, computed = ValueMemo(), []
    for index in range(5000):
        memo.get(index, lambda i=index: computed.append(i) or i)
    assert memo.get(4999, lambda: -1) == 4999  # kept since the restart
    assert memo.get(0, lambda: -1) == -1  # dropped with the first 4096

"""Subtle cases of the error-level core rules (wiring, probes, parallelism, memory,
scheduling) and of the facts module they share, which one fire/pass pair cannot show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vllm_gitops.findings import Finding
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings
from vllm_gitops.topology import (
    gpus_needed,
    landing,
    memory_plan,
    smallest_gpu,
    vllm_port,
    vllm_servers,
)

_load_builtin_rules()

NODEPOOL = """
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: gpu}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [%s]}
        - {key: karpenter.k8s.aws/instance-gpu-count, operator: In, values: ["%s"]}
"""


def server(args: list[str], *, name: str = "vllm", command: list[str] | None = None,
           gpus: int | None = 1, container: dict[str, Any] | None = None,
           pod: dict[str, Any] | None = None) -> str:
    """A Deployment running one vLLM container, as YAML."""
    spec: dict[str, Any] = {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0", "args": args}
    if command:
        spec["command"] = command
    if gpus:
        spec["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec.update(container or {})
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "inference"},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {**(pod or {}), "containers": [spec]}}},
    }, sort_keys=False)


def probe(path: str | int, **fields: int) -> dict[str, Any]:
    port = fields.pop("port", 8000)
    return {"httpGet": {"path": path, "port": port}, **fields}


def load(tmp_path: Path, *documents: str, kind: str = "paths") -> Scope:
    path = tmp_path / "manifests.yaml"
    path.write_text("\n---\n".join(documents))
    scope = ScopeLoader(load_settings(tmp_path)).load(Target(path, "manifests", "paths"))
    assert not scope.findings, scope.findings
    return Scope(scope.name, kind, scope.resources) if kind != "paths" else scope


def run(scope: Scope, rule_id: str) -> list[Finding]:
    return run_policies(scope, [RULES[rule_id]])


# ---------------------------------------------------------------- facts


def test_flags_are_read_from_a_shell_command_line(tmp_path: Path) -> None:
    scope = load(tmp_path, server(
        ["exec vllm serve Qwen/Qwen3-14B --tensor-parallel-size 2 --port=9000"],
        command=["/bin/bash", "-lc"], gpus=4))
    (found,) = vllm_servers(scope)
    assert found.model == "Qwen/Qwen3-14B"
    assert vllm_port(found) == 9000
    assert gpus_needed(found) == (2, "tensor parallel 2 x pipeline parallel 1")
    (finding,) = run(scope, "parallelism/gpu-count")
    assert "nvidia.com/gpu 4 but vLLM runs 2 GPU workers" in finding.message


def test_facts_are_computed_once_per_scope_and_again_when_it_grows(tmp_path: Path) -> None:
    scope = load(tmp_path, server(["Qwen/Qwen3-8B"]))
    first = vllm_servers(scope)
    assert vllm_servers(scope) is first
    scope.resources.extend(load(tmp_path, server(["Qwen/Qwen3-0.6B"], name="small")).resources)
    assert [s.model for s in vllm_servers(scope)] == ["Qwen/Qwen3-8B", "Qwen/Qwen3-0.6B"]


def test_smallest_gpu_among_the_instance_types_a_pool_can_launch(tmp_path: Path) -> None:
    # g6 (L4, 24 GB) and g6e (L40S, 48 GB) single-GPU nodes: the model must fit the L4.
    scope = load(tmp_path, NODEPOOL % ("g6, g6e", "1"),
                 server(["Qwen/Qwen3-14B", "--max-model-len=8192"]))
    (found,) = vllm_servers(scope)
    hardware = smallest_gpu(scope, found)
    assert hardware is not None and hardware.gpu.key == "L4"
    planned = memory_plan(scope, found)
    assert planned is not None and planned[0].failure is not None
    (finding,) = run(scope, "memory/weights-fit")
    assert "on NVIDIA L4" in finding.message and "CUDA out of memory" in finding.message


# ---------------------------------------------------------------- wiring


def test_one_finding_when_only_the_vllm_port_changed(tmp_path: Path) -> None:
    """--port moved to 9000; containerPort, probes and the Service still say 8000: one
    defect, one finding, naming every place that disagrees."""
    scope = load(tmp_path, server(
        ["Qwen/Qwen3-0.6B", "--port=9000"], gpus=None, container={
            "ports": [{"name": "http", "containerPort": 8000}],
            "startupProbe": probe("/health", failureThreshold=120),
            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}}}), """
apiVersion: v1
kind: Service
metadata: {name: vllm, namespace: inference}
spec:
  selector: {app: vllm}
  ports: [{port: 80, targetPort: 8000}, {name: named, port: 8000, targetPort: http}]
""")
    (finding,) = run(scope, "wiring/vllm-port")
    assert finding.message == ("vllm: vLLM listens on 9000 (--port), but containerPort 8000, "
                               "startupProbe port 8000, Service vllm targetPort 8000 point "
                               "elsewhere")
    assert run(scope, "wiring/service-target-port") == []


def test_service_ports_of_a_sidecar_are_not_the_vllm_port(tmp_path: Path) -> None:
    """An auth proxy in front of vLLM: the Service targets the proxy's port, not vLLM's."""
    document = yaml.safe_load(server(["Qwen/Qwen3-0.6B"], gpus=None))
    document["spec"]["template"]["spec"]["containers"].append(
        {"name": "proxy", "image": "quay.io/oauth2-proxy/oauth2-proxy:v7.6.0",
         "ports": [{"name": "proxy", "containerPort": 4180}]})
    service = """
apiVersion: v1
kind: Service
metadata: {name: vllm, namespace: inference}
spec:
  selector: {app: vllm}
  ports: [{name: https, port: 443, targetPort: 4180}, {name: metrics, port: 9400}]
"""
    scope = load(tmp_path, yaml.safe_dump(document), service)
    assert run(scope, "wiring/vllm-port") == []
    # ... but the metrics port nobody declares is a wrong number.
    (finding,) = run(scope, "wiring/service-target-port")
    assert finding.message.startswith("targetPort 9400 is not a containerPort")


def test_service_port_without_target_port_targets_the_same_number(tmp_path: Path) -> None:
    scope = load(tmp_path, server(["Qwen/Qwen3-0.6B"], gpus=None, container={
        "ports": [{"name": "http", "containerPort": 8000}]}), """
apiVersion: v1
kind: Service
metadata: {name: vllm, namespace: inference}
spec:
  selector: {app: vllm}
  ports: [{port: 80}]
""")
    (finding,) = run(scope, "wiring/service-target-port")
    assert finding.message == ("targetPort 80 is not a containerPort of Deployment vllm "
                               "(it declares 8000)")
    assert run(scope, "wiring/vllm-port") == []  # one defect, reported by one rule


def test_probe_path_ignores_query_strings_and_exec_probes(tmp_path: Path) -> None:
    scope = load(tmp_path, server(["Qwen/Qwen3-0.6B"], gpus=None, container={
        "readinessProbe": probe("/v1/models?x=1"),
        "livenessProbe": {"exec": {"command": ["curl", "-f", "localhost:8000/healthz"]}}}))
    assert run(scope, "wiring/probe-path") == []


# ---------------------------------------------------------------- probes


def test_liveness_budget_counts_when_there_is_no_startup_probe(tmp_path: Path) -> None:
    tp4 = ["Qwen/Qwen3-14B", "--tensor-parallel-size=4"]
    liveness = probe("/health", initialDelaySeconds=60, periodSeconds=10, failureThreshold=3)
    scope = load(tmp_path, server(tp4, gpus=4, container={"livenessProbe": liveness}))
    (finding,) = run(scope, "probes/startup-budget")
    assert finding.message.startswith("vllm: livenessProbe budget 90 s < estimated cold start ")
    assert "download 30 GB" in finding.message

    both = load(tmp_path, server(tp4, gpus=4, container={
        "livenessProbe": liveness, "startupProbe": probe("/health", failureThreshold=180)}))
    assert run(both, "probes/startup-budget") == []  # liveness starts after startup succeeds


@pytest.mark.parametrize(("model", "expected"), [("Qwen/Qwen3-14B", 1),
                                                ("example-org/secret-model", 0)])
def test_unknown_model_stays_silent(tmp_path: Path, model: str, expected: int) -> None:
    """The same manifests name defects for a catalog model and say nothing (rather than
    guess) for a model the catalog does not know."""
    split = load(tmp_path, server([model, "--tensor-parallel-size=3",
                                   "--max-model-len=10000000"], gpus=3))
    slow = load(tmp_path, server([model, "--tensor-parallel-size=4"], gpus=4,
                                 container={"livenessProbe": probe("/health")}))
    big = load(tmp_path, NODEPOOL % ("g6", "1"), server([model, "--max-model-len=8192"]))
    for scope, rule_id in ((split, "parallelism/divisibility"),
                           (split, "memory/max-model-len"),
                           (slow, "probes/startup-budget"),
                           (big, "memory/weights-fit")):
        assert len(run(scope, rule_id)) == expected, rule_id


# ---------------------------------------------------------------- scheduling, partial scopes


def test_scheduling_rules_are_silent_without_node_pools(tmp_path: Path) -> None:
    """An apps-only target: the NodePools live elsewhere, so nothing can be said."""
    scope = load(tmp_path, server(["Qwen/Qwen3-14B", "--tensor-parallel-size=4"], gpus=4,
                                  pod={"nodeSelector": {"karpenter.sh/nodepool": "missing"}}))
    assert landing(scope, vllm_servers(scope)[0].resource) is None
    for rule_id in ("scheduling/unschedulable", "scheduling/nodepool-limits"):
        assert run(scope, rule_id) == [], rule_id


def test_node_class_reference_checked_only_where_node_classes_live(tmp_path: Path) -> None:
    pools_only = NODEPOOL % ("g6", "1")
    assert run(load(tmp_path, pools_only), "scheduling/nodeclass-missing") == []
    (finding,) = run(load(tmp_path, pools_only, kind="cluster"), "scheduling/nodeclass-missing")
    assert finding.message == "nodeClassRef EC2NodeClass 'gpu' does not exist"


def test_limits_are_not_reported_as_unschedulable(tmp_path: Path) -> None:
    """A pool whose limits admit no node: nodepool-limits says so, unschedulable does not."""
    pool = (NODEPOOL % ("g6", "4")).replace("spec:\n  template:",
                                            "spec:\n  limits: {nvidia.com/gpu: 2}\n  template:")
    scope = load(tmp_path, pool, server(["Qwen/Qwen3-14B", "--tensor-parallel-size=4"],
                                       gpus=4))
    assert run(scope, "scheduling/unschedulable") == []
    (finding,) = run(scope, "scheduling/nodepool-limits")
    assert "admit 0 pod(s) of Deployment vllm" in finding.message


def test_pods_without_gpu_or_karpenter_labels_are_not_judged(tmp_path: Path) -> None:
    gateway = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: litellm, namespace: inference}
spec:
  selector: {matchLabels: {app: litellm}}
  template:
    metadata: {labels: {app: litellm}}
    spec:
      containers: [{name: litellm, image: "ghcr.io/berriai/litellm:v1.74.0-stable"}]
"""
    tainted = (NODEPOOL % ("g6", "1")).rstrip() + \
        "\n      taints: [{key: nvidia.com/gpu, value: 'true', effect: NoSchedule}]\n"
    assert run(load(tmp_path, tainted, gateway), "scheduling/unschedulable") == []


def test_daemonsets_in_scope_take_node_room(tmp_path: Path) -> None:
    """A DaemonSet that lands on the GPU nodes leaves too little CPU for the vLLM pod."""
    policies = Path(__file__).resolve().parents[2] / "policies"
    pass_fixture = policies / "scheduling/unschedulable/pass.yaml"
    daemonset = """
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: greedy-agent, namespace: monitoring}
spec:
  selector: {matchLabels: {app: greedy-agent}}
  template:
    metadata: {labels: {app: greedy-agent}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
        - name: agent
          image: example/agent:1.0.0
          resources: {requests: {cpu: "%s", memory: 1Gi}}
"""
    rule = [RULES["scheduling/unschedulable"]]
    for cpu, expected in (("1", []), ("90", ["scheduling/unschedulable"])):
        manifest = tmp_path / f"cpu-{cpu}.yaml"
        manifest.write_text(pass_fixture.read_text() + daemonset % cpu)
        scope = ScopeLoader(load_settings(tmp_path)).load(Target(manifest, "x", "paths"))
        assert [f.rule for f in run_policies(scope, rule)] == expected, cpu

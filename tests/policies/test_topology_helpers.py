"""The shared label-selector and do-not-disrupt helpers, and the rules built on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.resources import Resource
from vllm_gitops.settings import load_settings
from vllm_gitops.topology import do_not_disrupt, selector_matches

_load_builtin_rules()
LABELS = {"app": "vllm", "tier": "gpu"}


@pytest.mark.parametrize(("selector", "matches"), [
    ({}, True),
    ({"matchLabels": {"app": "vllm"}}, True),
    ({"matchLabels": {"app": "other"}}, False),
    ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]}, True),
    ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}]}, False),
    ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
    ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
    ({"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}, False),
    ({"matchExpressions": ["app"]}, False),  # malformed: matches nothing, does not crash
    ({"matchLabels": ["app"]}, False),
    (None, False),
])
def test_selector_matches(selector: Any, matches: bool) -> None:
    assert selector_matches(selector, LABELS) is matches


def _workload(kind: str, value: Any) -> Resource:
    meta = {"annotations": {"karpenter.sh/do-not-disrupt": value}}
    pod = {"metadata": meta, "spec": {"containers": []}}
    spec = {"Pod": pod["spec"], "Deployment": {"template": pod},
            "CronJob": {"jobTemplate": {"spec": {"template": pod}}}}[kind]
    doc = {"kind": kind, "metadata": meta if kind == "Pod" else {"name": "x"}, "spec": spec}
    return Resource(doc, "t")


@pytest.mark.parametrize("kind", ["Pod", "Deployment", "CronJob"])
@pytest.mark.parametrize(("value", "protected"), [("true", True), ("True", False),
                                                   ("yes", False), (True, False)])
def test_do_not_disrupt_is_exactly_true(kind: str, value: Any, protected: bool) -> None:
    assert do_not_disrupt(_workload(kind, value)) is protected


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: vllm}
spec:
  selector:
    matchLabels: {app: vllm}
    matchExpressions: [{key: app, operator: Gt, values: ["1"]}]
  template:
    metadata: {labels: {app: vllm}}
    spec:
      containers: [{name: c, image: "nginx:1.27.0"}]
"""


def test_unknown_operator_is_a_selector_mismatch(tmp_path: Path) -> None:
    manifest = tmp_path / "deployment.yaml"
    manifest.write_text(DEPLOYMENT)
    scope = ScopeLoader(load_settings(tmp_path)).load(Target(manifest, manifest.name, "paths"))
    messages = [f.message for f in run_policies(scope, [RULES["wiring/selector-mismatch"]])]
    assert messages == ["spec.selector requires app Gt ['1'], which the pod template's "
                        "labels do not have"]


def test_unresolved_vllm_port_is_not_judged(tmp_path: Path) -> None:
    """--port $(PORT) used to crash networkpolicy/blocks-gateway (int('$(PORT)'))."""
    from tests.policies.test_hygiene_rules import VLLM_AND_GATEWAY, findings

    manifest = tmp_path / "all.yaml"
    manifest.write_text(VLLM_AND_GATEWAY.replace("args: [Qwen/Qwen3-8B]",
                                                 "args: [Qwen/Qwen3-8B, --port, $(PORT)]")
                        + "  ingress: []\n")
    assert findings(tmp_path, manifest, "networkpolicy/blocks-gateway") == []

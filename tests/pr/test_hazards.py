"""What the apply refuses or loses, decided per pair of objects (before, after)."""

from __future__ import annotations

import copy
from typing import Any

from vllm_gitops.diff.compare import resource_key
from vllm_gitops.diff.hazards import (
    DATA_LOSS,
    DISRUPTION,
    REFUSED,
    RESTART,
    hazards_of_change,
    hazards_of_removals,
)


def deployment() -> dict[str, Any]:
    labels = {"app": "gateway"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "gw", "namespace": "inference"},
            "spec": {"selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)},
                                  "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}}


def pvc(size: str = "100Gi", storage_class: str = "gp3") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "inference"},
            "spec": {"storageClassName": storage_class, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": size}}}}


def statefulset(name: str = "vllm-a") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": "inference"},
            "spec": {"serviceName": "h", "selector": {"matchLabels": {"app": "v"}},
                     "template": {"spec": {"containers": [{"name": "vllm", "image": "v:1"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "model-cache"},
                                               "spec": {"resources": {"requests": {
                                                   "storage": "100Gi"}}}}]}}


def kinds(old: dict[str, Any], new: dict[str, Any], serving: bool = False) -> list[str]:
    return [h.kind for h in hazards_of_change(resource_key(new), old, new, serving)]


def test_selector_change_is_refused_and_template_change_restarts_only_serving() -> None:
    old, new = deployment(), deployment()
    new["spec"]["selector"]["matchLabels"]["tier"] = "x"
    assert kinds(old, new) == [REFUSED]
    new = deployment()
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "i:2"
    assert kinds(old, new) == []
    assert kinds(old, new, serving=True) == [RESTART]


def test_statefulset_immutable_fields() -> None:
    old, new = statefulset(), statefulset()
    new["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "200Gi"
    (hazard,) = hazards_of_change(resource_key(new), old, new, False)
    assert hazard.kind == REFUSED and "--cascade=orphan" in hazard.message
    new = statefulset()
    new["spec"]["serviceName"] = "other"
    new["spec"]["replicas"] = 3  # mutable: not mentioned
    (hazard,) = hazards_of_change(resource_key(new), old, new, False)
    assert "spec.serviceName" in hazard.message and "replicas" not in hazard.message


def test_pvc_class_and_shrink_refused_growth_allowed() -> None:
    assert kinds(pvc(), pvc(storage_class="io2")) == [REFUSED]
    assert kinds(pvc("100Gi"), pvc("50Gi")) == [REFUSED]
    assert kinds(pvc("100Gi"), pvc("0.5Ti")) == []


def test_service_cluster_ip_and_type() -> None:
    def service(**spec: Any) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80}], **spec}}

    assert kinds(service(clusterIP="None"), service()) == [REFUSED]
    assert kinds(service(clusterIP="10.0.0.1"), service(clusterIP="10.0.0.2")) == [REFUSED]
    assert kinds(service(), service(type="LoadBalancer")) == [DISRUPTION]
    assert kinds(service(), service(type="ExternalName", externalName="x.org")) == [REFUSED]
    assert kinds(service(), copy.deepcopy(service())) == []


def test_removals_rename_and_pvc() -> None:
    old = statefulset("vllm-a")
    renamed = statefulset("vllm-b")
    found = hazards_of_removals({resource_key(old): old}, {resource_key(renamed): renamed})
    (hazard,) = found
    assert hazard.kind == DATA_LOSS and "renamed to vllm-b" in hazard.message
    assert "model-cache-vllm-a-<ordinal>" in hazard.message
    (alone,) = hazards_of_removals({resource_key(old): old}, {})
    assert "removed" in alone.message and "still billed" in alone.message
    claim = pvc()
    (lost,) = hazards_of_removals({resource_key(claim): claim}, {})
    assert lost.kind == DATA_LOSS

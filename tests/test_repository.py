"""The repository's own manifests: the guide's system, rendered the way Flux and Argo CD would."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import REPO_ROOT
from vllm_gitops.pipeline import ScopeLoader, Target, discover_targets, validate
from vllm_gitops.resources import Resource
from vllm_gitops.routes import expected_routes_text, routes_files, routes_scope
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings
from vllm_gitops.sizing.quantity import parse_quantity


@pytest.fixture(scope="module")
def loader() -> ScopeLoader:
    return ScopeLoader(load_settings(REPO_ROOT))


def cluster(loader: ScopeLoader, name: str) -> Scope:
    path = REPO_ROOT / "clusters" / name
    scope = loader.load(Target(path, f"clusters/{name}", "cluster"))
    assert scope.findings == []
    return scope


def only(scope: Scope, kind: str, name: str) -> Resource:
    found = [r for r in scope.resources if r.kind == kind and r.name == name]
    assert len(found) == 1, f"{kind} {name}: {len(found)} found"
    return found[0]


def vllm_container(statefulset: Resource) -> dict[str, Any]:
    containers = statefulset.get("spec", "template", "spec", "containers")
    return next(c for c in containers if c["name"] == "vllm")


def test_targets_are_discovered() -> None:
    names = {t.name for t in discover_targets(load_settings(REPO_ROOT))}
    expected = {"clusters/dev/flux", "clusters/dev/argocd", "clusters/prod/flux",
                "clusters/prod/argocd", "overlays/dev", "overlays/staging", "overlays/prod",
                "base/vllm", "base/storage", "base/karpenter", "base/litellm"}
    assert expected <= names
    assert not any(name.startswith("base/components") for name in names)  # components


def test_flux_entry_point_orders_infrastructure_before_apps(loader: ScopeLoader) -> None:
    scope = cluster(loader, "prod/flux")
    assert only(scope, "GitRepository", "vllm-gitops").namespace == "flux-system"
    infra = only(scope, "Kustomization", "infrastructure")
    apps = only(scope, "Kustomization", "apps")
    assert infra.get("spec", "path") == "./overlays/prod/infrastructure"
    assert apps.get("spec", "path") == "./overlays/prod/apps"
    assert apps.get("spec", "dependsOn") == [{"name": "infrastructure"}]
    # Each model is its own Flux Kustomization, after the apps (namespace, HF token).
    model = only(scope, "Kustomization", "model-qwen3")
    assert model.get("spec", "path") == "./overlays/prod/models/qwen3"
    assert model.get("spec", "dependsOn") == [{"name": "apps"}]


def test_argocd_entry_point_uses_sync_waves(loader: ScopeLoader) -> None:
    scope = cluster(loader, "prod/argocd")
    waves = {r.get("spec", "source", "path"):
             r.annotations["argocd.argoproj.io/sync-wave"]
             for r in scope.of_kind("Application")}
    assert waves == {"overlays/prod/infrastructure": "-1", "overlays/prod/apps": "0",
                     "overlays/prod/models/qwen3": "1"}
    # Issue 11 finding 1: the AppProject exists before any Application that uses it.
    project = only(scope, "AppProject", "vllm-gitops")
    project_wave = int(project.annotations["argocd.argoproj.io/sync-wave"])
    assert all(project_wave < int(wave) for wave in waves.values())
    assert {r.get("spec", "project") for r in scope.of_kind("Application")} == {"vllm-gitops"}
    # The Argo CD scope holds what the Applications sync, like Flux's.
    only(scope, "StatefulSet", "vllm-qwen3")


def test_flux_entry_point_includes_what_bootstrap_adds() -> None:
    """Issue 11 finding 3: Flux builds clusters/<env>/flux with our kustomization.yaml as-is,
    so it lists flux-system/, whose kustomization lists the two files bootstrap writes."""
    for env in ("dev", "staging", "prod"):
        folder = REPO_ROOT / "clusters" / env / "flux"
        entry = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert "flux-system" in entry["resources"] and "namespace" not in entry
        inner = yaml.safe_load((folder / "flux-system" / "kustomization.yaml").read_text())
        assert inner["resources"] == ["gotk-components.yaml", "gotk-sync.yaml"]
        for name in inner["resources"]:
            assert yaml.safe_load((folder / "flux-system" / name).read_text()) is None


def test_external_secrets_spell_out_what_their_crd_defaults(loader: ScopeLoader) -> None:
    """Issue 11 finding 4, same class: under Argo CD server-side apply a field the CRD
    defaults but Git leaves out keeps the application OutOfSync."""
    secrets = list(cluster(loader, "prod/argocd").of_kind("ExternalSecret"))
    assert {s.name for s in secrets} == {"hf-token", "litellm-secrets"}
    for secret in secrets:
        assert secret.get("spec", "target", "deletionPolicy") == "Retain"
        for item in secret.get("spec", "data"):
            ref = item["remoteRef"]
            assert (ref["conversionStrategy"], ref["decodingStrategy"],
                    ref["metadataPolicy"]) == ("Default", "None", "None")


def test_servicemonitor_labels_survive_argocd_label_tracking(loader: ScopeLoader) -> None:
    """Issue 11 finding 8: the model label comes from the pods, which Argo CD never relabels."""
    monitor = only(cluster(loader, "prod/argocd"), "ServiceMonitor", "vllm")
    assert monitor.get("spec", "podTargetLabels") == ["app.kubernetes.io/instance"]
    assert "targetLabels" not in monitor.doc["spec"]


def test_prod_serves_the_guides_model_on_four_gpus(loader: ScopeLoader) -> None:
    scope = cluster(loader, "prod/flux")
    server = only(scope, "StatefulSet", "vllm-qwen3")
    assert server.namespace == "inference"
    container = vllm_container(server)
    assert container["image"] == "vllm/vllm-openai:v0.11.0"
    assert container["args"][0] == "Qwen/Qwen3-14B"
    assert "--tensor-parallel-size=4" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    pod = server.get("spec", "template", "spec")
    assert pod["nodeSelector"]["karpenter.sh/nodepool"] == "gpu-g5-g6"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"]
    assert server.get("spec", "template", "metadata", "annotations") == {
        "karpenter.sh/do-not-disrupt": "true"}


def test_prod_model_server_avoids_the_seed_defects(loader: ScopeLoader) -> None:
    server = only(cluster(loader, "prod/flux"), "StatefulSet", "vllm-qwen3")
    container = vllm_container(server)
    pod = server.get("spec", "template", "spec")
    # Defect 3: one RWO cache volume per replica, never shared.
    templates = server.get("spec", "volumeClaimTemplates")
    assert [t["spec"]["accessModes"] for t in templates] == [["ReadWriteOnce"]]
    assert templates[0]["spec"]["storageClassName"] == "vllm-gp3"
    # Issue 11 finding 4: what the API server would fill in is written out (Argo CD SSA).
    assert [(t["apiVersion"], t["kind"]) for t in templates] == [("v1", "PersistentVolumeClaim")]
    # Defect 4: the startup probe covers download + load (30 min), liveness waits for it.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert "initialDelaySeconds" not in container["livenessProbe"]
    # Defect 5: /dev/shm fits inside the memory limit with room for the server.
    shm = next(v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    limit = parse_quantity(container["resources"]["limits"]["memory"])
    assert parse_quantity(shm["emptyDir"]["sizeLimit"]) <= limit / 4
    # Defects 8, 9: no debug logging, no hard-coded GPU list; the token only from a Secret.
    env = {e["name"]: e for e in container["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in env and "VLLM_LOGGING_LEVEL" not in env
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert "value" not in env["HF_TOKEN"]


def test_prod_infrastructure_is_the_guides_with_fixes(loader: ScopeLoader) -> None:
    scope = cluster(loader, "prod/flux")
    # Issue 11 finding 7: a class name of our own, not a cluster's stock "gp3".
    assert not [r for r in scope.of_kind("StorageClass") if r.name in ("gp2", "gp3")]
    gp3 = only(scope, "StorageClass", "vllm-gp3")
    assert gp3.doc["parameters"]["type"] == "gp3"
    assert gp3.doc["volumeBindingMode"] == "WaitForFirstConsumer"  # defect 18
    assert gp3.doc["parameters"]["encrypted"] == "true"
    assert gp3.doc["allowVolumeExpansion"] is True
    pool = only(scope, "NodePool", "gpu-g5-g6")
    requirements = {r["key"]: r["values"] for r in pool.get("spec", "template", "spec",
                                                            "requirements")}
    assert sorted(requirements["karpenter.k8s.aws/instance-family"]) == ["g5", "g6"]
    assert requirements["karpenter.k8s.aws/instance-gpu-count"] == ["4"]
    taints = pool.get("spec", "template", "spec", "taints")
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in taints  # 1
    assert pool.get("spec", "template", "spec", "expireAfter") == "Never"  # defect 16
    assert pool.get("spec", "disruption", "consolidationPolicy") == "WhenEmpty"  # defect 17
    assert "nvidia.com/gpu" in pool.get("spec", "limits")
    # Issue 11 finding 2: no grace period that would override do-not-disrupt on drift.
    assert "terminationGracePeriod" not in pool.get("spec", "template", "spec")
    # No Secret object is ever rendered from git (defect 27).
    assert not list(scope.of_kind("Secret"))


def test_prod_gateway_routes_the_guides_name(loader: ScopeLoader) -> None:
    scope = cluster(loader, "prod/flux")
    config = next(r for r in scope.of_kind("ConfigMap") if "models.yaml" in r.doc["data"])
    assert config.doc["data"]["models.yaml"].splitlines()[1:] == [
        "model_list:",
        "  - model_name: vllm-server-qwen3",
        "    litellm_params:",
        "      model: hosted_vllm/Qwen/Qwen3-14B",
        "      api_base: http://vllm-qwen3.inference.svc.cluster.local:8000/v1",
    ]
    service = only(scope, "Service", "vllm-qwen3")
    assert service.get("spec", "ports") == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP",
         "appProtocol": "http"}]
    litellm = only(scope, "Deployment", "litellm")
    image = litellm.get("spec", "template", "spec", "containers", 0, "image")
    assert image.startswith("ghcr.io/berriai/litellm:") and not image.endswith(":latest")


def test_dev_runs_the_same_model_on_one_l40s(loader: ScopeLoader) -> None:
    scope = cluster(loader, "dev/flux")
    server = only(scope, "StatefulSet", "vllm-qwen3")
    container = vllm_container(server)
    assert container["args"][0] == "Qwen/Qwen3-14B"
    assert "--tensor-parallel-size=1" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server.get("spec", "template", "spec", "nodeSelector",
                      "karpenter.sh/nodepool") == "gpu-g6e"


def test_committed_routes_match_the_models(loader: ScopeLoader) -> None:
    files = routes_files(REPO_ROOT)
    assert {f.relative_to(REPO_ROOT).as_posix() for f in files} >= {
        "overlays/dev/apps/models.yaml", "overlays/prod/apps/models.yaml"}
    for path in files:
        assert path.read_text() == expected_routes_text(routes_scope(path, loader)), path


def test_editing_a_model_without_regenerating_routes_fails_validation(tmp_path: Path) -> None:
    copy = tmp_path / "repo"
    for name in ("base", "overlays", "clusters", "schemas", "vllm-gitops.yaml"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            shutil.copy(source, copy / name)
    model = copy / "overlays/prod/models/qwen3/model.yaml"
    model.write_text(model.read_text().replace("--served-model-name=Qwen/Qwen3-14B",
                                               "--served-model-name=qwen3"))
    settings = load_settings(copy)
    # The routes are judged in the cluster that deploys the gateway beside its models.
    target = Target(copy / "clusters/prod/flux", "clusters/prod/flux", "cluster")
    report = validate([target], settings)
    errors = {(f.rule, f.file) for f in report.findings if f.severity.value == "error"}
    # Other gateway rules may name the same stale file; all errors point at it.
    assert ("litellm/routes-stale", "overlays/prod/apps/models.yaml") in errors
    assert {file for _, file in errors} == {"overlays/prod/apps/models.yaml"}
    routes = copy / "overlays/prod/apps/models.yaml"
    routes.write_text(expected_routes_text(routes_scope(routes, ScopeLoader(settings))))
    assert "model: hosted_vllm/qwen3\n" in routes.read_text()
    assert validate([target], settings).summary()["errors"] == 0


def test_the_gateway_alone_is_not_judged_on_routes_its_cluster_is(loader: ScopeLoader) -> None:
    """overlays/<env>/apps routes to models that are sync units of their own: checked alone it
    raises no route finding (nothing of its models is there), its cluster judges them."""
    from vllm_gitops.policies.gateway import judges_routes

    apps = loader.load(Target(REPO_ROOT / "overlays/prod/apps", "overlays/prod/apps", "paths"))
    assert not judges_routes(apps)
    assert judges_routes(cluster(loader, "prod/flux"))
    report = validate([Target(REPO_ROOT / "overlays/prod/apps", "overlays/prod/apps", "paths")],
                      load_settings(REPO_ROOT))
    assert not [f for f in report.findings if f.rule.startswith("litellm/")]
    assert routes_scope(REPO_ROOT / "overlays/prod/apps/models.yaml", loader).name == (
        "clusters/prod/argocd")


def test_a_gateway_no_cluster_deploys_routes_to_the_models_of_its_environment(
        tmp_path: Path) -> None:
    """overlays/lab (a copy of dev) with no clusters/lab: its routes come from overlays/lab,
    which lists the gateway and the models, so they are dev's."""
    copy = tmp_path / "repo"
    for name in ("base", "overlays", "clusters", "vllm-gitops.yaml"):
        source = REPO_ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    shutil.copytree(copy / "overlays/dev", copy / "overlays/lab")
    routes = copy / "overlays/lab/apps/models.yaml"
    scope = routes_scope(routes, ScopeLoader(load_settings(copy)))
    assert scope.name == "overlays/lab"
    assert expected_routes_text(scope) == routes.read_text()

"""The GitOps and Karpenter rules catch, on a copy of this repository, each defect the expert
review found in it (issue 11) once that defect is put back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import REPO_ROOT
from vllm_gitops.findings import Finding
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.settings import load_settings

_load_builtin_rules()


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    for name in ("base", "overlays", "clusters", "catalog", "vllm-gitops.yaml"):
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        elif source.is_file():
            shutil.copy(source, copy / name)
    return copy


def findings(repo: Path, target: str, rule_id: str) -> list[Finding]:
    loader = ScopeLoader(load_settings(repo))
    scope = loader.load(Target(repo / target, target, "cluster"))
    return run_policies(scope, [RULES[rule_id]])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, path
    path.write_text(text.replace(old, new))


def test_repository_entry_points_are_clean(repo: Path) -> None:
    for rule_id in ("argocd/sync-wave-order", "flux/bootstrap-not-reconciled",
                    "karpenter/grace-period-bypasses-do-not-disrupt"):
        for target in ("clusters/prod/argocd", "clusters/prod/flux"):
            assert findings(repo, target, rule_id) == []


def test_appproject_after_its_applications_is_an_error(repo: Path) -> None:
    edit(repo / "clusters/prod/argocd/appproject.yaml",
         'argocd.argoproj.io/sync-wave: "-2"', 'argocd.argoproj.io/sync-wave: "0"')
    found = findings(repo, "clusters/prod/argocd", "argocd/sync-wave-order")
    assert [(f.resource.name if f.resource else None, f.file) for f in found] == [
        ("prod-infrastructure", "clusters/prod/argocd/infrastructure.yaml")]
    assert "before AppProject vllm-gitops it needs (wave 0)" in found[0].message


def test_flux_entry_point_without_flux_system_is_found_at_its_kustomization(
        repo: Path) -> None:
    edit(repo / "clusters/prod/flux/kustomization.yaml", "  - flux-system\n", "")
    shutil.rmtree(repo / "clusters/prod/flux/flux-system")
    found = findings(repo, "clusters/prod/flux", "flux/bootstrap-not-reconciled")
    assert [(f.file, f.line) for f in found] == [
        ("clusters/prod/flux/kustomization.yaml", 14)]


def test_flux_system_placeholder_that_bootstrap_would_keep_is_found(repo: Path) -> None:
    inner = repo / "clusters/prod/flux/flux-system/kustomization.yaml"
    edit(inner, "resources:\n  - gotk-components.yaml\n  - gotk-sync.yaml\n", "resources: []\n")
    found = findings(repo, "clusters/prod/flux", "flux/bootstrap-not-reconciled")
    assert [f.file for f in found] == ["clusters/prod/flux/flux-system/kustomization.yaml"]
    assert "installs nothing" in found[0].message


def test_no_kustomization_at_the_entry_point_is_fine(repo: Path) -> None:
    """Flux then generates one that includes every file and sub-folder (flux-system too)."""
    (repo / "clusters/prod/flux/kustomization.yaml").unlink()
    assert findings(repo, "clusters/prod/flux", "flux/bootstrap-not-reconciled") == []


def test_grace_period_on_the_pool_serving_the_model_is_found(repo: Path) -> None:
    pool = repo / "base/karpenter/nodepools/gpu-g5-g6/nodepool.yaml"
    edit(pool, "      expireAfter: Never\n", "      expireAfter: Never\n"
         "      terminationGracePeriod: 1h\n")
    found = findings(repo, "clusters/prod/flux", "karpenter/grace-period-bypasses-do-not-disrupt")
    assert [(f.resource.name if f.resource else None, f.file) for f in found] == [
        ("gpu-g5-g6", "base/karpenter/nodepools/gpu-g5-g6/nodepool.yaml")]
    assert "StatefulSet vllm-qwen3" in found[0].message
    # A pool no serving pod lands on is not reported once pods are in scope.
    other = repo / "base/karpenter/nodepools/gpu-g6e/nodepool.yaml"
    edit(other, "      expireAfter: Never\n", "      expireAfter: Never\n"
         "      terminationGracePeriod: 1h\n")
    edit(repo / "overlays/prod/infrastructure/kustomization.yaml",
         "  - ../../../base/karpenter/nodepools/gpu-g5-g6\n",
         "  - ../../../base/karpenter/nodepools/gpu-g5-g6\n"
         "  - ../../../base/karpenter/nodepools/gpu-g6e\n")
    names = [f.resource.name for f in findings(
        repo, "clusters/prod/flux", "karpenter/grace-period-bypasses-do-not-disrupt")
        if f.resource]
    assert names == ["gpu-g5-g6"]


def test_bare_gpu_pool_with_a_grace_period_is_found(repo: Path) -> None:
    edit(repo / "base/karpenter/nodepools/gpu-g6e/nodepool.yaml", "      expireAfter: Never\n",
         "      expireAfter: Never\n      terminationGracePeriod: 30m\n")
    found = findings(repo, "base/karpenter", "karpenter/grace-period-bypasses-do-not-disrupt")
    assert [f.resource.name for f in found if f.resource] == ["gpu-g6e"]


def test_shared_names_and_tracking_labels_in_the_seed_layout(repo: Path) -> None:
    edit(repo / "base/storage/storageclass-vllm-gp3.yaml", "name: vllm-gp3", "name: gp3")
    edit(repo / "base/components/servicemonitor/servicemonitor.yaml", "podTargetLabels:",
         "targetLabels:")
    storage = findings(repo, "clusters/prod/flux", "storage/shared-class-name")
    assert [f.file for f in storage] == ["base/storage/storageclass-vllm-gp3.yaml"]
    tracking = findings(repo, "clusters/prod/flux", "observability/tracking-label")
    assert [f.file for f in tracking] == ["base/components/servicemonitor/servicemonitor.yaml"]


def test_volume_claim_template_without_kind_drifts(repo: Path) -> None:
    edit(repo / "base/vllm/statefulset.yaml",
         "    - apiVersion: v1\n      kind: PersistentVolumeClaim\n      metadata:",
         "    - metadata:")
    found = findings(repo, "clusters/prod/argocd", "argocd/server-side-apply-drift")
    assert [f.message for f in found] == [
        "volumeClaimTemplates model-cache has no apiVersion and no kind"]


def test_object_applied_a_step_before_its_namespace_is_an_error(repo: Path) -> None:
    """Infrastructure is applied first (Flux dependsOn, Argo CD wave -1); a namespaced object
    there cannot be created before apps creates its Namespace."""
    infra = repo / "overlays/prod/infrastructure"
    (infra / "settings.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: inference}\n"
        "data: {a: b}\n")
    edit(infra / "kustomization.yaml", "resources:\n", "resources:\n  - settings.yaml\n")
    # Reported where the order is written: the sync unit that applies it too early.
    flux = findings(repo, "clusters/prod/flux", "argocd/sync-wave-order")
    assert [f.message for f in flux] == [
        "ConfigMap settings is applied by Flux Kustomization infrastructure, before Namespace "
        "inference it needs, which apps applies later (dependsOn)"]
    assert flux[0].file == "clusters/prod/flux/infrastructure.yaml"
    argo = findings(repo, "clusters/prod/argocd", "argocd/sync-wave-order")
    assert [f.message for f in argo] == [
        "ConfigMap settings syncs in wave -1/0, before Namespace inference it needs (wave 0/0)"]
    assert (argo[0].file, argo[0].line) == ("clusters/prod/argocd/infrastructure.yaml", 8)
    # Alone, the overlay is one sync: nothing to order.
    assert findings(repo, "overlays/prod/infrastructure", "argocd/sync-wave-order") == []


def test_a_model_synced_before_the_apps_it_needs_is_an_error(repo: Path) -> None:
    """Each model is a sync unit of its own: it must come after apps (the Namespace)."""
    edit(repo / "clusters/prod/argocd/models/qwen3.yaml",
         'argocd.argoproj.io/sync-wave: "1"', 'argocd.argoproj.io/sync-wave: "-1"')
    # One defect, one finding: at the Application's wave, not at each of the model's objects.
    [found] = findings(repo, "clusters/prod/argocd", "argocd/sync-wave-order")
    assert (found.file, found.line) == ("clusters/prod/argocd/models/qwen3.yaml", 7)
    assert found.message == ("Service vllm-headless-qwen3 (and 4 more) syncs in wave -1/0, before "
                             "Namespace inference it needs (wave 0/0)")


def test_a_model_unit_without_dependson_apps_is_a_warning(repo: Path) -> None:
    edit(repo / "clusters/prod/flux/models/qwen3.yaml", "    - name: apps\n",
         "    - name: infrastructure\n")
    [found] = findings(repo, "clusters/prod/flux", "flux/dependency-unordered")
    assert (found.file, found.line) == ("clusters/prod/flux/models/qwen3.yaml", 8)
    assert "needs Namespace inference that apps creates" in found.message
    assert findings(repo, "clusters/prod/flux", "argocd/sync-wave-order") == []

"""gitops/listed-not-synced on small repositories written for each test: real files, the real
kustomize, the real pipeline from a cluster entry point."""

from __future__ import annotations

import shutil
from pathlib import Path

from support import REPO_ROOT
from vllm_gitops.findings import Finding
from vllm_gitops.pipeline import ScopeLoader, Target, discover_targets, validate
from vllm_gitops.policies.registry import RULES, _load_builtin_rules, run_policies
from vllm_gitops.settings import load_settings

_load_builtin_rules()
RULE = "gitops/listed-not-synced"
APPLICATION = """apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {{name: {name}, namespace: argocd}}
spec:
  project: default
  source: {{repoURL: "https://github.com/example-org/repo", targetRevision: main, path: {path}}}
  destination: {{server: https://kubernetes.default.svc, namespace: inference}}
"""
FLUX = """apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {{name: {name}, namespace: flux-system}}
spec:
  interval: 10m
  sourceRef: {{kind: GitRepository, name: repo}}
  path: {path}
  prune: true
"""


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def folders(root: Path, listing: dict[str, list[str]]) -> None:
    """Each folder's kustomization.yaml lists its entries; a folder listing nothing gets a
    ConfigMap of its own."""
    for folder, entries in listing.items():
        if not entries:
            name = folder.replace("/", "-")
            write(root / folder / "configmap.yaml",
                  f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\n")
        write(root / folder / "kustomization.yaml",
              "resources:\n" + "".join(f"  - {entry}\n" for entry in entries or
                                        ["configmap.yaml"]))


def entry_point(root: Path, folder: str, template: str, synced: list[str]) -> None:
    files = []
    for index, path in enumerate(synced):
        files.append(f"sync-{index}.yaml")
        write(root / folder / files[-1], template.format(name=f"sync-{index}", path=path))
    write(root / folder / "kustomization.yaml",
          "resources:\n" + "".join(f"  - {name}\n" for name in files))


def env(root: Path, *models: str) -> None:
    """overlays/dev: apps and models (an aggregation of one folder per model)."""
    folders(root, {"overlays/dev": ["apps", "models"], "overlays/dev/apps": [],
                   "overlays/dev/models": list(models),
                   **{f"overlays/dev/models/{m}": [] for m in models}})


def findings(root: Path, entry: str = "clusters/dev/argocd") -> list[Finding]:
    scope = ScopeLoader(load_settings(root)).load(Target(root / entry, entry, "cluster"))
    assert not scope.findings, scope.findings
    return run_policies(scope, [RULES[RULE]])


def test_a_model_without_its_application_is_found_at_its_entry(tmp_path: Path) -> None:
    env(tmp_path, "qwen3", "llama")
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION,
                ["overlays/dev/apps", "overlays/dev/models/qwen3"])
    [found] = findings(tmp_path)
    assert (found.file, found.line) == ("overlays/dev/models/kustomization.yaml", 3)
    assert found.message.startswith("overlays/dev/models lists llama beside folders this "
                                    "cluster syncs")
    assert "never deployed" in found.message


def test_every_model_synced_is_clean(tmp_path: Path) -> None:
    env(tmp_path, "qwen3", "llama")
    entry_point(tmp_path, "clusters/dev/flux", FLUX, ["./overlays/dev/apps/",
                "./overlays/dev/models/qwen3", "overlays/dev/models/llama"])
    assert findings(tmp_path, "clusters/dev/flux") == []


def test_a_nested_aggregation_is_judged_once_at_its_own_level(tmp_path: Path) -> None:
    env(tmp_path, "qwen3", "llama", "mistral")
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION,
                ["overlays/dev/apps", "overlays/dev/models/qwen3"])
    found = findings(tmp_path)
    # Not "overlays/dev lists models" as well: one defect, one finding at its line.
    assert [(f.file, f.line) for f in found] == [
        ("overlays/dev/models/kustomization.yaml", 3),
        ("overlays/dev/models/kustomization.yaml", 4)]


def test_an_aggregation_with_nothing_synced_is_looked_into(tmp_path: Path) -> None:
    """Only apps is synced: the model folders inside models are each found at their line."""
    env(tmp_path, "qwen3")
    folders(tmp_path, {"overlays/dev/infrastructure": []})
    write(tmp_path / "overlays/dev/kustomization.yaml",
          "resources:\n  - infrastructure\n  - apps\n  - models\n")
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION,
                ["overlays/dev/infrastructure", "overlays/dev/apps"])
    [found] = findings(tmp_path)
    assert (found.file, found.line) == ("overlays/dev/models/kustomization.yaml", 2)
    assert "(inside overlays/dev, which lists folders this cluster syncs)" in found.message


def test_a_listing_none_of_whose_folders_is_synced_is_not_judged(tmp_path: Path) -> None:
    env(tmp_path, "qwen3")
    folders(tmp_path, {"overlays/staging": ["apps"], "overlays/staging/apps": []})
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION,
                ["overlays/dev/apps", "overlays/dev/models/qwen3"])
    assert findings(tmp_path) == []


def test_a_cycle_of_kustomizations_ends(tmp_path: Path) -> None:
    folders(tmp_path, {"overlays/dev": ["apps", "loop"], "overlays/dev/apps": [],
                       "overlays/dev/loop": ["../loop2", "extra"],
                       "overlays/dev/loop2": ["../loop"], "overlays/dev/loop/extra": []})
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION, ["overlays/dev/apps"])
    assert [(f.file, f.line) for f in findings(tmp_path)] == [
        ("overlays/dev/loop/kustomization.yaml", 3)]


def test_missing_in_both_entry_points_is_one_finding(tmp_path: Path) -> None:
    env(tmp_path, "qwen3", "llama")
    synced = ["overlays/dev/apps", "overlays/dev/models/qwen3"]
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION, synced)
    entry_point(tmp_path, "clusters/dev/flux", FLUX, [f"./{path}" for path in synced])
    settings = load_settings(tmp_path)
    report = validate(discover_targets(settings), settings)
    found = [f for f in report.findings if f.rule == RULE]
    assert [(f.file, f.line, f.targets) for f in found] == [
        ("overlays/dev/models/kustomization.yaml", 3,
         ("clusters/dev/argocd", "clusters/dev/flux"))]


def test_one_sync_object_checked_alone_is_not_judged(tmp_path: Path) -> None:
    """A file given on the command line (or an example) with one sync object says nothing
    about what else its cluster syncs; the same object as a cluster entry point does."""
    env(tmp_path, "qwen3", "llama")
    entry_point(tmp_path, "clusters/dev/argocd", APPLICATION, ["overlays/dev/models/qwen3"])
    alone = tmp_path / "clusters/dev/argocd/sync-0.yaml"
    scope = ScopeLoader(load_settings(tmp_path)).load(Target(alone, "sync-0.yaml", "paths"))
    assert run_policies(scope, [RULES[RULE]]) == []
    assert [f.line for f in findings(tmp_path)] == [3]


def test_an_environment_without_models_lists_nothing_to_deploy(tmp_path: Path) -> None:
    """The last model removed: `resources: []` in the models list is not a folder left behind."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "overlays", repo / "overlays")
    shutil.copytree(REPO_ROOT / "base", repo / "base")
    shutil.copytree(REPO_ROOT / "clusters", repo / "clusters")
    shutil.copy(REPO_ROOT / "vllm-gitops.yaml", repo / "vllm-gitops.yaml")
    (repo / "overlays/dev/models/kustomization.yaml").write_text("resources: []\n")
    for tool in ("flux", "argocd"):
        (repo / f"clusters/dev/{tool}/models/kustomization.yaml").write_text("resources: []\n")
    report = validate([Target(repo / "clusters/dev/flux", "clusters/dev/flux", "cluster")],
                      load_settings(repo))
    assert not [f for f in report.findings if f.rule == "gitops/listed-not-synced"]

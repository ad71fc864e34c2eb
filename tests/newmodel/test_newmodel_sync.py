"""The sync files of a new model (clusters/<env>/{flux,argocd}/models/<name>.yaml): a sibling's
with only the name, path and the comments naming its model changed, else the built-in
template. In-process, on small trees: no rendering."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from support import REPO_ROOT
from vllm_gitops.newmodel import sync

ENVS = ("dev", "staging", "prod")


def _entry_point(root: Path, env: str, tool: sync.Tool, siblings: bool) -> Path:
    """clusters/<env>/<tool> copied into `root`, its models/ folder with or without its
    sync files (then listing none)."""
    rel = f"clusters/{env}/{tool.entry}"
    shutil.copytree(REPO_ROOT / rel, root / rel)
    models = root / sync.models_folder(env, tool)
    if not siblings:
        for file in models.glob("*.yaml"):
            file.unlink()
        (models / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n")
    return models


def _added(root: Path, env: str, name: str) -> dict[str, sync.SyncFile]:
    folder = f"overlays/{env}/models/{name}"
    return {unit.tool.entry: unit for unit in sync.to_add(root, env, name, folder, "inference")}


def test_a_models_own_files_are_kept_as_they_are() -> None:
    """Rerunning for a model rewrites nothing: its own file is its template."""
    for env in ENVS:
        for tool, unit in _added(REPO_ROOT, env, "qwen3").items():
            assert unit.text == (REPO_ROOT / unit.path).read_text(), (env, tool)
            assert unit.listing == f"clusters/{env}/{tool}/models/kustomization.yaml"
            assert unit.entry == "qwen3.yaml"


def test_a_sibling_changes_in_name_path_and_comments_only(tmp_path: Path) -> None:
    """Customised fields, quoting and comments carry over; each mention of the sibling's
    model (folder, object name, bare name in a comment) names the new one."""
    models = _entry_point(tmp_path, "dev", sync.FLUX, siblings=True)
    sibling = models / "qwen3.yaml"
    customised = (sibling.read_text()
                  .replace("name: model-qwen3", 'name: "model-qwen3"')
                  .replace("interval: 10m", "interval: 20m  # qwen3 polls less often")
                  .replace("timeout: 45m", "# qwen3-coder is another model: kept\ntimeout: 90m"))
    sibling.write_text(customised)
    (models / "aaa-notes.yaml").write_text("# not a sync object: no template\nnotes: []\n")
    unit = _added(tmp_path, "dev", "llama")["flux"]
    expected = re.sub(r"(?<![\w-])qwen3(?![\w-])", "llama",
                      customised.replace("model-qwen3", "model-llama"))
    assert unit.text == expected
    assert unit.name == "model-llama" and unit.path == "clusters/dev/flux/models/llama.yaml"
    data = yaml.safe_load(unit.text or "")
    assert (data["spec"]["path"], data["spec"]["interval"]) == (
        "./overlays/dev/models/llama", "20m")
    assert '  name: "model-llama"' in (unit.text or "")


def test_an_argo_cd_sibling_named_otherwise_gets_the_default_name(tmp_path: Path) -> None:
    models = _entry_point(tmp_path, "prod", sync.ARGO_CD, siblings=True)
    sibling = models / "qwen3.yaml"
    sibling.write_text(sibling.read_text().replace("name: prod-model-qwen3", "name: chat"))
    data = yaml.safe_load(_added(tmp_path, "prod", "llama")["argocd"].text or "")
    assert data["metadata"]["name"] == "prod-model-llama"
    assert data["spec"]["source"]["path"] == "overlays/prod/models/llama"
    assert data["spec"]["syncPolicy"]["retry"]["limit"] == 5


@pytest.mark.parametrize("env", ENVS)
def test_without_a_sibling_the_template_has_the_committed_shape(tmp_path: Path,
                                                                 env: str) -> None:
    for tool in sync.TOOLS:
        _entry_point(tmp_path, env, tool, siblings=False)
    added = _added(tmp_path, env, "qwen3")
    assert sorted(added) == ["argocd", "flux"]
    for unit in added.values():
        committed = yaml.safe_load((REPO_ROOT / unit.path).read_text())
        assert yaml.safe_load(unit.text or "") == committed, unit.path


def test_without_a_sibling_the_source_comes_from_the_apps_object(tmp_path: Path) -> None:
    for tool in sync.TOOLS:
        _entry_point(tmp_path, "dev", tool, siblings=False)
    argocd_apps = tmp_path / "clusters/dev/argocd/apps.yaml"
    argocd_apps.write_text(argocd_apps.read_text().replace(
        "example-org/vllm-gitops", "acme/llm-deploy").replace("project: vllm-gitops",
                                                              "project: llm"))
    flux_apps = tmp_path / "clusters/dev/flux/apps.yaml"
    flux_apps.write_text(flux_apps.read_text().replace("name: apps", "name: gateway").replace(
        "name: vllm-gitops", "name: llm-deploy"))
    added = _added(tmp_path, "dev", "llama")
    argo = yaml.safe_load(added["argocd"].text or "")
    assert argo["spec"]["project"] == "llm"
    assert argo["spec"]["source"]["repoURL"] == "https://github.com/acme/llm-deploy"
    flux = yaml.safe_load(added["flux"].text or "")
    assert flux["spec"]["dependsOn"] == [{"name": "gateway"}]
    assert flux["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "llm-deploy"}
    assert flux["metadata"]["name"] == "model-llama"


def test_an_entry_point_without_models_folder_gets_no_file(tmp_path: Path) -> None:
    _entry_point(tmp_path, "dev", sync.FLUX, siblings=True)
    assert sorted(_added(tmp_path, "dev", "llama")) == ["flux"]
    assert [u.path for u in sync.to_remove(tmp_path, "dev", "llama")] == [
        "clusters/dev/flux/models/llama.yaml"]
    assert sync.to_add(tmp_path / "nothing", "dev", "llama", "x", "inference") == []

"""The sync files of a new model (clusters/<env>/{flux,argocd}/models/<name>.yaml): a sibling's
with only the name, path and the comments naming its model changed, else the built-in
template; a Flux timeout long enough for the model's startup; the models/ folder of an entry
point that has none. In-process, on small trees: no rendering."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import REPO_ROOT
from vllm_gitops.durations import go_duration
from vllm_gitops.newmodel import sync

ENVS = ("dev", "staging", "prod")
BASE_STARTUP_S = 1800  # the base's startup probe (10 s x 180): the committed 45m holds it
LONG_STARTUP_S = 8070  # Meta-Llama-3.1-405B-Instruct-FP8 in prod, as new-model sizes it


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


def _added(root: Path, env: str, name: str,
           startup_s: int = BASE_STARTUP_S) -> dict[str, sync.SyncFile]:
    folder = f"overlays/{env}/models/{name}"
    return {unit.tool.entry: unit
            for unit in sync.to_add(root, env, name, folder, "inference", startup_s)}


def _edit_yaml(path: Path, edit: Callable[[Any], None]) -> None:
    """Change a one-document YAML file (its comments are lost)."""
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


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
                  .replace("timeout: 45m", "# qwen3-coder is another model: kept\n  timeout: 90m"))
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


def test_a_tool_without_entry_point_gets_no_file(tmp_path: Path) -> None:
    _entry_point(tmp_path, "dev", sync.FLUX, siblings=True)
    assert sorted(_added(tmp_path, "dev", "llama")) == ["flux"]
    assert [u.path for u in sync.to_remove(tmp_path, "dev", "llama")] == [
        "clusters/dev/flux/models/llama.yaml"]
    assert _added(tmp_path / "nothing", "dev", "llama") == {}
    assert sync.entry_point_edits(tmp_path, "dev", list(_added(tmp_path, "dev", "x").values())) \
        == {}  # its models/ folder is there


def test_an_entry_point_without_models_folder_gets_one(tmp_path: Path) -> None:
    """The template, its models/kustomization.yaml listing it, `models` in the entry point."""
    models = _entry_point(tmp_path, "dev", sync.ARGO_CD, siblings=True)
    shutil.rmtree(models)
    entry = tmp_path / "clusters/dev/argocd/kustomization.yaml"
    entry.write_text(entry.read_text().replace("  - models\n", ""))
    unit = _added(tmp_path, "dev", "llama")["argocd"]
    edits = sync.entry_point_edits(tmp_path, "dev", [unit])
    assert sorted(edits) == ["clusters/dev/argocd/kustomization.yaml", unit.listing]
    assert yaml.safe_load(edits[unit.listing])["resources"] == ["llama.yaml"]
    assert edits[unit.listing].startswith("# One Argo CD Application per model folder")
    committed = (REPO_ROOT / "clusters/dev/argocd/kustomization.yaml").read_text()
    assert edits["clusters/dev/argocd/kustomization.yaml"] == committed


# ---------------------------------------------------------------- Flux timeout


def _timeout_comment(budget: str) -> str:
    return ("  # First rollout: GPU node launch and image pull (~15 min) + startup probe budget\n"
            f"  # ({budget}, see model.yaml), rounded up to 5 minutes.\n")


@pytest.mark.parametrize("siblings", [True, False])
def test_a_long_startup_raises_the_flux_timeout_and_says_why(tmp_path: Path,
                                                             siblings: bool) -> None:
    """Only the timeout and the comment above it change; Argo CD has no such timeout."""
    for tool in sync.TOOLS:
        _entry_point(tmp_path, "prod", tool, siblings)
    usual = _added(tmp_path, "prod", "llama")
    long = _added(tmp_path, "prod", "llama", LONG_STARTUP_S)
    assert long["argocd"] == usual["argocd"]
    text = usual["flux"].text or ""
    old_comment = text[text.index("  # First rollout"):text.index("  timeout:")]
    # 8070 s + 15 min = 149.5 min: 2h30m; the probe budget alone is 134.5 min: 2h15m.
    assert long["flux"].text == text.replace(old_comment, _timeout_comment("2h15m")).replace(
        "timeout: 45m", "timeout: 2h30m")


def test_a_larger_sibling_timeout_is_kept_and_a_missing_one_added(tmp_path: Path) -> None:
    models = _entry_point(tmp_path, "dev", sync.FLUX, siblings=True)
    sibling = models / "qwen3.yaml"
    committed = sibling.read_text()
    sibling.write_text(committed.replace("timeout: 45m", 'timeout: "3h"'))
    kept = _added(tmp_path, "dev", "llama", LONG_STARTUP_S)["flux"].text or ""
    assert 'timeout: "3h"' in kept and "startupProbe allows up to 30 min" in kept
    sibling.write_text(committed[:committed.index("  # First rollout")])
    added = _added(tmp_path, "dev", "llama", 3000)["flux"].text or ""
    assert added.endswith("  wait: true\n" + _timeout_comment("50m") + "  timeout: 1h5m\n")


@pytest.mark.parametrize(("seconds", "expected"), [
    (600, "10m"), (2700, "45m"), (3600, "1h"), (3601, "1h1m"), (4500, "1h15m"),
    (8070, "2h15m")])
def test_go_durations(seconds: int, expected: str) -> None:
    assert go_duration(seconds) == expected


# ---------------------------------------------------------------- destination


@pytest.mark.parametrize("destination", [
    {"server": "https://workload.eks.example:443", "namespace": "llm"},
    {"name": "workload", "namespace": "llm"},  # instead of a server (Argo CD takes one)
])
def test_without_a_sibling_argo_cd_deploys_where_the_apps_go(
        tmp_path: Path, destination: dict[str, str]) -> None:
    _entry_point(tmp_path, "dev", sync.ARGO_CD, siblings=False)
    _edit_yaml(tmp_path / "clusters/dev/argocd/apps.yaml",
               lambda apps: apps["spec"].update(destination=destination))
    text = _added(tmp_path, "dev", "llama")["argocd"].text or ""
    assert yaml.safe_load(text)["spec"]["destination"] == destination
    assert "  destination:\n" + "".join(f"    {k}: {v}\n" for k, v in destination.items()) \
        in text  # in the template's place and order


def test_without_a_sibling_flux_syncs_as_the_apps_do(tmp_path: Path) -> None:
    """The source's namespace, the impersonated account and a remote cluster's kubeconfig."""
    _entry_point(tmp_path, "dev", sync.FLUX, siblings=False)
    kubeconfig = {"secretRef": {"name": "workload-kubeconfig", "key": "value"}}
    _edit_yaml(tmp_path / "clusters/dev/flux/apps.yaml", lambda apps: (
        apps["spec"]["sourceRef"].update(namespace="gitops"),
        apps["spec"].update(serviceAccountName="deployer", kubeConfig=kubeconfig)))
    spec = yaml.safe_load(_added(tmp_path, "dev", "llama")["flux"].text or "")["spec"]
    assert spec["sourceRef"] == {"kind": "GitRepository", "name": "vllm-gitops",
                                 "namespace": "gitops"}
    assert (spec["serviceAccountName"], spec["kubeConfig"]) == ("deployer", kubeconfig)

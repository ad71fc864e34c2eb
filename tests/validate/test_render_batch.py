"""kustomize-batch (tools/kustomize-batch) renders exactly what `kubectl kustomize` renders, and
a hung or dead batch process is a render failure, never a hang or a wrong render."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import REPO_ROOT, TIMEOUT_SECONDS
from vllm_gitops.pipeline import discover_targets
from vllm_gitops.render import (
    BATCH_BINARY,
    Renderer,
    RenderFailed,
    renderer_for,
    renderer_version,
)
from vllm_gitops.settings import load_settings


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    """The project's build (`make test` makes it first), built now when Go is here."""
    if not BATCH_BINARY.is_file() and shutil.which("go") and shutil.which("make"):
        subprocess.run(["make", "-s", "kustomize-batch"], cwd=REPO_ROOT, check=False,
                       capture_output=True, timeout=TIMEOUT_SECONDS)
    if not os.access(BATCH_BINARY, os.X_OK):
        pytest.skip("no .bin/kustomize-batch: building it needs Go (`make kustomize-batch`)")


@pytest.fixture
def batch() -> Renderer:
    return renderer_for(str(BATCH_BINARY), 60)


@pytest.fixture(scope="module")
def cli() -> Renderer:
    return Renderer((str(REPO_ROOT / ".venv" / "bin" / "kubectl"), "kustomize"), 60)


def outcome(renderer: Renderer, folder: Path) -> str:
    try:
        return renderer.render(folder, folder)[0]
    except RenderFailed as failed:
        return f"failed: {failed}"


def test_every_kustomization_of_the_repository_renders_the_same(batch: Renderer,
                                                                 cli: Renderer) -> None:
    folders = [t.path for t in discover_targets(load_settings(REPO_ROOT))]
    assert len(folders) > 30
    for folder in folders:
        assert outcome(batch, folder) == outcome(cli, folder), folder


BROKEN = {
    "missing-file": "resources: [nowhere.yaml]\n",
    "patch-without-target": ("resources: [cm.yaml]\npatches:\n  - patch: |\n"
                             "      apiVersion: v1\n      kind: ConfigMap\n"
                             "      metadata: {name: other}\n"),
    "outside-the-root": "resources: [../../etc]\n",
    "not-yaml": "resources: [cm.yaml\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_refused_kustomization_fails_with_kustomize_s_own_message(
        batch: Renderer, cli: Renderer, tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(BROKEN[name])
    (folder / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    batch_says, cli_says = outcome(batch, folder), outcome(cli, folder)
    assert batch_says.startswith("failed: ") and batch_says == cli_says


def test_it_is_the_pinned_kustomize(batch: Renderer, cli: Renderer) -> None:
    assert renderer_version(batch) == renderer_version(cli) != "unknown"


def test_a_hung_render_times_out_and_the_next_one_works(tmp_path: Path) -> None:
    hung = tmp_path / "hung"
    hung.mkdir()
    os.mkfifo(hung / "kustomization.yaml")  # reading it blocks: kustomize never answers
    quick = renderer_for(str(BATCH_BINARY), 2)
    with pytest.raises(RenderFailed) as failed:
        quick.render(hung, tmp_path)
    assert failed.value.transient and "did not finish in 2 s" in str(failed.value)
    good = REPO_ROOT / "base" / "vllm"
    assert "kind: StatefulSet" in quick.render(good, REPO_ROOT)[0]


def test_a_process_killed_while_idle_is_replaced(batch: Renderer) -> None:
    good = REPO_ROOT / "base" / "vllm"
    first = batch.render(good, REPO_ROOT)[0]
    assert batch.servers is not None
    [server] = batch.servers._idle
    server.process.kill()
    server.process.wait()
    assert batch.render(good, REPO_ROOT)[0] == first


def test_the_processes_end_with_the_renderer() -> None:
    renderer = renderer_for(str(BATCH_BINARY), 60)
    renderer.render(REPO_ROOT / "base" / "vllm", REPO_ROOT)
    assert renderer.servers is not None
    [server] = renderer.servers._idle
    del renderer
    gc.collect()
    assert server.process.poll() is not None


def test_a_custom_openapi_schema_does_not_leak_into_the_next_folder(cli: Renderer,
                                                                    tmp_path: Path) -> None:
    """kustomize keeps the OpenAPI schema process-wide, and a kustomization's `openapi:` field
    replaces it: the next folder must still merge its patches with the built-in schema."""
    custom, plain = tmp_path / "custom", tmp_path / "plain"
    custom.mkdir()
    plain.mkdir()
    (custom / "schema.json").write_text(
        '{"swagger": "2.0", "info": {"title": "none", "version": "1"}, "paths": {}, '
        '"definitions": {}}')
    (custom / "kustomization.yaml").write_text("openapi: {path: schema.json}\n"
                                               "resources: [cm.yaml]\n")
    (custom / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    (plain / "kustomization.yaml").write_text(
        "resources: [deploy.yaml]\npatches:\n  - patch: |\n      apiVersion: apps/v1\n"
        "      kind: Deployment\n      metadata: {name: web}\n      spec:\n        template:\n"
        "          spec:\n            containers: [{name: b, image: y}]\n")
    (plain / "deploy.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n"
        "    spec:\n      containers: [{name: a, image: x, env: [{name: A, value: '1'}]}]\n")
    done = subprocess.run([str(BATCH_BINARY)], input=f"{custom}\n{plain}\n", text=True,
                          capture_output=True, timeout=TIMEOUT_SECONDS, check=True)
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    expected = subprocess.run([*cli.command, str(plain)], capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS, check=True).stdout
    assert "image: x" in expected and replies[1] == {"output": expected}

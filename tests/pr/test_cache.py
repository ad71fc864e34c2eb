"""The render/check cache: warm runs do no kustomize work, edits invalidate, corrupt entries
and concurrent runs never change a verdict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pr_support import calls, edit_re, verdict

from support import REPO_ROOT, TIMEOUT_SECONDS, Run
from vllm_gitops.cache import KEPT_VERSIONS, CheckCache, Inputs, RenderCache
from vllm_gitops.findings import Severity
from vllm_gitops.resources import Resource
from vllm_gitops.schema.engine import JsonSchemaEngine
from vllm_gitops.schema.locations import SchemaLocations
from vllm_gitops.settings import load_settings

MODEL = "overlays/dev/models/qwen3/model.yaml"


def cached_render(cache: RenderCache, folder: Path) -> Any:
    """What the cache holds for the folder's files as they are now."""
    return cache.get(folder, cache.inputs(folder))


def test_warm_run_does_no_kustomize_work_and_an_edit_invalidates(
        validate_repo: Callable[..., Run], counting_kustomize: tuple[Path, Path],
        repo: Path) -> None:
    _, log = counting_kustomize
    cold = verdict(validate_repo())
    assert calls(log) > 10
    log.unlink()
    warm = verdict(validate_repo())
    assert calls(log) == 0 and warm == cold
    edit_re(repo / MODEL, r"--tensor-parallel-size=\d+", "--tensor-parallel-size=3")
    edited = verdict(validate_repo())
    rendered_again = set(log.read_text().split())
    # only the model's folder: Flux and Argo CD sync each model on its own (test_coverage.py)
    assert {p.split("/repo/")[-1] for p in rendered_again} == {"overlays/dev/models/qwen3"}
    assert edited != cold  # TP 3 does not divide the model's heads: the verdict changes
    uncached = verdict(validate_repo(env={"VLLM_GITOPS_NO_CACHE": "1"}))
    assert edited == uncached


def test_a_created_file_is_seen(validate_repo: Callable[..., Run], repo: Path) -> None:
    """A kustomization naming a file that does not exist yet: creating it changes the verdict."""
    apps = repo / "overlays/dev/apps/kustomization.yaml"
    edit_re(apps, r"resources:\n", "resources:\n  - extra.yaml\n")
    missing = verdict(validate_repo())
    assert any(f["rule"] == "kustomize/missing-path" for f in missing["findings"])
    (repo / "overlays/dev/apps/extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  a: b\n")
    present = verdict(validate_repo())
    assert not any(f["rule"] == "kustomize/missing-path" for f in present["findings"])
    assert present["summary"]["resources"] > missing["summary"]["resources"]


def test_corrupt_entries_are_ignored_and_rewritten(validate_repo: Callable[..., Run],
                                                   cache_dir: Path) -> None:
    cold = verdict(validate_repo())
    entries = sorted(cache_dir.glob("renders/*/*.pickle"))
    assert entries
    garbage = [b"", b"\x80\x05garbage", b"not a pickle at all", os.urandom(64)]
    for index, entry in enumerate(entries):
        entry.write_bytes(garbage[index % len(garbage)])
    assert verdict(validate_repo()) == cold
    assert all(entry.read_bytes() not in garbage for entry in entries)  # rewritten
    assert verdict(validate_repo()) == cold


def test_two_runs_at_once_agree(validate_repo: Callable[..., Run], repo: Path,
                                cache_dir: Path, counting_kustomize: tuple[Path, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tools"),
           "VLLM_GITOPS_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "-m", "vllm_gitops.cli.validate", "--repo", str(repo), "-f",
               "json"]
    runs = [subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [json.loads(p.communicate(timeout=TIMEOUT_SECONDS)[0]) for p in runs]
    reference = verdict(validate_repo(env={"VLLM_GITOPS_NO_CACHE": "1"}))
    assert all(output == reference for output in outputs)
    assert verdict(validate_repo()) == reference


def test_entry_is_refused_when_an_input_changes(tmp_path: Path) -> None:
    """The API: a recorded input edited, deleted or created makes the entry a miss."""
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources: [a.yaml]\n")
    (folder / "a.yaml").write_text("a: 1\n")

    def fresh() -> RenderCache:
        return RenderCache(tmp_path / "cache", tmp_path, "fingerprint")

    cache = fresh()
    cache.put(folder, cache.inputs(folder), {"rendered": 1})
    assert cached_render(fresh(), folder) == {"rendered": 1}
    (folder / "a.yaml").write_text("a: 2\n")
    assert cached_render(fresh(), folder) is None
    (folder / "a.yaml").write_text("a: 1\n")  # back to the first version: its entry stays
    assert cached_render(fresh(), folder) == {"rendered": 1}
    (folder / "a.yaml").write_text("a: 2\n")
    cache = fresh()
    cache.put(folder, cache.inputs(folder), {"rendered": 2})
    (folder / "kustomization.yml").write_text("resources: []\n")  # a second name appears
    assert cached_render(fresh(), folder) is None
    other = RenderCache(tmp_path / "cache", tmp_path, "another fingerprint")
    assert cached_render(other, folder) is None
    assert isinstance(cache.inputs(folder), Inputs)


def test_check_entries_wait_for_missing_schemas(tmp_path: Path) -> None:
    """A verdict reached without a schema is reused only while the schema is still missing."""
    from vllm_gitops.cache import CheckedTarget

    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources: []\n")
    renders = RenderCache(tmp_path / "cache", tmp_path, "fp")
    entry = CheckedTarget([], 0, [("example.org/v1", "Widget")])
    inputs = CheckCache(renders, lambda *_: False).inputs(folder)
    CheckCache(renders, lambda *_: False).put("k", inputs, entry)
    assert CheckCache(RenderCache(tmp_path / "cache", tmp_path, "fp"),
                      lambda *_: False).get("k", inputs) == entry
    assert CheckCache(RenderCache(tmp_path / "cache", tmp_path, "fp"),
                      lambda *_: True).get("k", inputs) is None


def test_each_folder_keeps_its_newest_versions(tmp_path: Path) -> None:
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources: [a.yaml]\n")

    def fresh() -> RenderCache:  # one per run: a run hashes each file once
        return RenderCache(tmp_path / "cache", tmp_path, "fingerprint")

    for version in range(KEPT_VERSIONS + 3):
        (folder / "a.yaml").write_text(f"a: {version}\n")
        cache = fresh()
        cache.put(folder, cache.inputs(folder), version)
    assert len(list((tmp_path / "cache").rglob("*.pickle"))) == KEPT_VERSIONS
    assert cached_render(fresh(), folder) == KEPT_VERSIONS + 2  # the newest
    (folder / "a.yaml").write_text("a: 3\n")
    assert cached_render(fresh(), folder) == 3  # still kept
    (folder / "a.yaml").write_text("a: 0\n")
    assert cached_render(fresh(), folder) is None  # the oldest went


def test_schema_verdicts_are_reused_by_content(tmp_path: Path) -> None:
    """A verdict an earlier run kept is used for a document of the same content only."""
    settings = load_settings(REPO_ROOT)
    locations = SchemaLocations(settings.schema_locations, settings.kubernetes_version,
                                settings.repo_root, tmp_path, 1.0)
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
           "data": {"k": "v"}}
    first = JsonSchemaEngine(locations, True)
    assert first.validate([Resource(doc, "t")]) == [[]]
    kept = first.verdicts_to_keep()
    assert len(kept) == 1
    planted = {key: [("schema/invalid", Severity.ERROR, ("data",), "planted")] for key in kept}
    later = JsonSchemaEngine(locations, True, planted)
    assert [f.message for f in later.validate([Resource(dict(doc), "t")])[0]] == ["planted"]
    assert later.fresh == 0  # nothing new: the run has nothing to store
    changed = {**doc, "data": {"k": 1}}
    assert [f.rule for f in later.validate([Resource(changed, "t")])[0]] == ["schema/invalid"]
    assert later.fresh == 1 and len(later.verdicts_to_keep()) == 2  # the known one stays

"""`tools/diff` on a real git copy of the repository: edits, commits, worktrees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pr_support import commit_all, edit, edit_re, git

from support import REPO_ROOT, TIMEOUT_SECONDS, Run

PROD = ("clusters/prod/argocd", "clusters/prod/flux")
MODEL = "overlays/prod/models/qwen3/model.yaml"


def clusters(run: Run) -> dict[str, Any]:
    assert run.code == 0, run.output
    return {c["cluster"]: c for c in run.json()["clusters"]}


def hazards(cluster: dict[str, Any], kind: str) -> list[str]:
    return [f"{h['resource']}: {h['message']}" for h in cluster["hazards"] if h["kind"] == kind]


def no_worktrees_left(repo: Path) -> bool:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_nothing_changed(diff: Callable[..., Run], repo: Path) -> None:
    run = diff("--base", "HEAD", "--format", "markdown")
    assert run.code == 0, run.output
    assert "No cluster's rendered manifests change." in run.stdout
    assert no_worktrees_left(repo)


def test_model_edit_in_working_tree(diff: Callable[..., Run], repo: Path) -> None:
    """Uncommitted: a shorter context and one more replica at most, in prod only."""
    edit_re(repo / MODEL, r"--max-model-len=\d+", "--max-model-len=16384")
    edit_re(repo / MODEL, r"minReplicas: \d+", "minReplicas: 2")
    edit_re(repo / MODEL, r"maxReplicas: \d+", "maxReplicas: 4")
    expect_changed = {("StatefulSet", "vllm-qwen3"), ("HorizontalPodAutoscaler", "vllm-qwen3")}
    found = clusters(diff("--base", "HEAD", "--format", "json"))
    for name in PROD:
        cluster = found[name]
        changed = {(r["kind"], r["name"]) for r in cluster["resources"]}
        assert changed <= expect_changed and ("StatefulSet", "vllm-qwen3") in changed
        restart = hazards(cluster, "restart")
        assert len(restart) == 1 and "StatefulSet inference/vllm-qwen3" in restart[0]
        assert not hazards(cluster, "refused")
        cost = cluster["cost_usd_per_hour"]
        assert cost["after"]["min"] > 0
        assert cost["after"]["max"] / cost["after"]["min"] == pytest.approx(2.0, 1e-3)  # 4 / 2
        (model,) = cluster["models"]
        assert "max_model_len" in model["changed"]
        assert model["after"]["replicas"] == 2 and model["after"]["max_replicas"] == 4
        assert model["after"]["max_model_len"] == 16384
        sts = next(r for r in cluster["resources"] if r["kind"] == "StatefulSet")
        assert "\n-        - --max-model-len=" in sts["diff"]
        assert "\n+        - --max-model-len=16384\n" in sts["diff"]
    for name in found:
        if not name.startswith("clusters/prod/"):
            assert not found[name]["resources"], name


def test_immutable_and_data_loss_between_commits(diff: Callable[..., Run], repo: Path) -> None:
    """--head REF: a volume resize, a headless Service made normal, a renamed model."""
    edit_re(repo / "base/vllm/statefulset.yaml", r"storage: \d+Gi", "storage: 999Gi")
    edit(repo / "base/vllm/service-headless.yaml", "  clusterIP: None\n  selector:", "  selector:")
    kustomization = repo / "overlays/dev/models/qwen3/kustomization.yaml"
    edit(kustomization, "nameSuffix: -qwen3", "nameSuffix: -qwen3-small")
    head = commit_all(repo, "resize, headless, rename")
    found = clusters(diff("--base", "HEAD~1", "--head", head, "--format", "json"))
    prod = found["clusters/prod/flux"]
    refused = hazards(prod, "refused")
    assert any("volumeClaimTemplates is immutable" in h and "--cascade=orphan" in h
               and "edit each existing PVC" in h for h in refused), refused
    assert any(h.startswith("Service inference/vllm-headless-qwen3") and "headless" in h
               for h in refused), refused
    dev = found["clusters/dev/argocd"]
    loss = hazards(dev, "data-loss")
    assert any("renamed to vllm-qwen3-small" in h and "model-cache-vllm-qwen3-<ordinal>" in h
               for h in loss), loss
    statuses = {(r["status"], r["kind"], r["name"]) for r in dev["resources"]}
    assert ("removed", "StatefulSet", "vllm-qwen3") in statuses
    assert ("added", "StatefulSet", "vllm-qwen3-small") in statuses
    assert no_worktrees_left(repo)


def test_markdown_is_a_collapsible_comment(diff: Callable[..., Run], repo: Path) -> None:
    edit_re(repo / MODEL, r"--max-num-seqs=\d+", "--max-num-seqs=7")
    run = diff("--base", "HEAD", "--format", "markdown", "--output", "comment.md")
    assert run.code == 0, run.output
    text = (repo / "comment.md").read_text()
    assert text.startswith("<!-- vllm-gitops-diff -->")
    assert "<summary><b>clusters/prod/flux</b>" in text
    assert "<summary><b>clusters/dev/flux</b>" not in text  # unchanged clusters fold away
    assert "```diff" in text and "\n+        - --max-num-seqs=7\n" in text
    assert "| `clusters/prod/flux` | +0 −0 ~1 | 🔄 1 restarts serving pods |" in text
    assert "rendered" not in git(repo, "status", "--porcelain")  # only comment.md is new


def test_bad_revision_is_exit_2(diff: Callable[..., Run]) -> None:
    run = diff("--base", "no-such-branch")
    assert run.code == 2
    assert "unknown git revision 'no-such-branch'" in run.stderr
    assert "Traceback" not in run.output


def test_worktrees_removed_when_cancelled(repo: Path, cache_dir: Path) -> None:
    """SIGTERM while rendering (a cancelled CI job): the temporary worktree is removed."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tools"),
           "VLLM_GITOPS_CACHE_DIR": str(cache_dir)}
    process = subprocess.Popen([sys.executable, "-m", "vllm_gitops.cli.diff", "--base", "HEAD",
                                "--head", "HEAD"], cwd=repo, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while no_worktrees_left(repo) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
    assert no_worktrees_left(repo)
    if process.returncode != 0:  # stopped in time (it may also have finished first)
        assert process.returncode == 2 and "interrupted" in stderr, stderr
    assert not [p for p in Path(repo).parent.iterdir() if p.name.startswith("vllm-gitops-diff")]


def test_a_head_that_does_not_render_is_not_shown_as_removals(diff: Callable[..., Run],
                                                              repo: Path) -> None:
    service = repo / "base/vllm/service.yaml"
    service.write_text(service.read_text() + "\n  : broken: [\n")
    found = clusters(diff("--base", "HEAD", "--format", "json"))
    prod = found["clusters/prod/flux"]
    assert prod["render_errors"]["head"] and "base/vllm/service.yaml" in str(
        prod["render_errors"])
    assert prod["resources"] == [] and prod["hazards"] == []  # nothing claimed removed


def move_dev_model_into_apps(repo: Path) -> None:
    """The layout before one sync unit per model: `apps` applies the dev model again."""
    edit(repo / "overlays/dev/apps/kustomization.yaml", "  - ../../../base/litellm\n",
         "  - ../../../base/litellm\n  - ../models/qwen3\n")
    for tool in ("flux", "argocd"):
        edit(repo / f"clusters/dev/{tool}/models/kustomization.yaml",
             "resources:\n  - qwen3.yaml\n", "resources: []\n")


def test_objects_that_move_to_another_sync_unit_are_one_hazard(diff: Callable[..., Run],
                                                                repo: Path) -> None:
    """The rendered objects are the same, but `apps` now applies them, and the model's unit,
    pruning, may delete them first."""
    move_dev_model_into_apps(repo)
    found = clusters(diff("--base", "HEAD", "--format", "json"))
    flux = found["clusters/dev/flux"]
    assert {r["kind"] for r in flux["resources"]} == {"Kustomization"}  # only model-qwen3 goes
    [moved] = hazards(flux, "restart")
    assert moved.startswith("Service inference/vllm-headless-qwen3 and 3 more: moves from "
                            "Flux Kustomization model-qwen3 to Flux Kustomization apps")
    assert "kustomize.toolkit.fluxcd.io/prune: disabled" in moved and "Prune=false" not in moved
    [argo] = hazards(found["clusters/dev/argocd"], "restart")
    assert "moves from Application dev-model-qwen3 to Application dev-apps" in argo
    assert "argocd.argoproj.io/sync-options: Prune=false" in argo


def test_a_move_the_base_protects_from_pruning_is_no_hazard(diff: Callable[..., Run],
                                                             repo: Path) -> None:
    """The advice followed: the annotations merged first, then the move."""
    edit(repo / "base/vllm/statefulset.yaml", "  annotations:\n",
         "  annotations:\n    kustomize.toolkit.fluxcd.io/prune: disabled\n"
         "    argocd.argoproj.io/sync-options: Prune=false\n")
    for name in ("service.yaml", "service-headless.yaml", "poddisruptionbudget.yaml"):
        edit(repo / "base/vllm" / name, "metadata:\n", "metadata:\n  annotations:\n"
             "    kustomize.toolkit.fluxcd.io/prune: disabled\n"
             "    argocd.argoproj.io/sync-options: Prune=false\n")
    commit_all(repo, "protect the model objects from pruning")
    move_dev_model_into_apps(repo)
    found = clusters(diff("--base", "HEAD", "--format", "json"))
    for name in ("clusters/dev/flux", "clusters/dev/argocd"):
        assert hazards(found[name], "restart") == [], name

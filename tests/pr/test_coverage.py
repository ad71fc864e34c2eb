"""Each kustomization is rendered once: a target inside another is checked within it
(coverage.py), a failure is reported by the innermost kustomization that fails."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pr_support import edit_re, verdict

from support import Run
from vllm_gitops.changes import Closure
from vllm_gitops.coverage import plan
from vllm_gitops.pipeline import Target

MODEL = "overlays/dev/models/qwen3"
CLUSTERS = {f"clusters/{env}/{tool}" for env in ("dev", "staging", "prod")
            for tool in ("flux", "argocd")}


def rendered(log: Path) -> Counter[str]:
    """Repo-relative folders the counting kustomize rendered, with how often."""
    return Counter(line.split("/repo/")[-1] for line in log.read_text().split())


def test_a_whole_run_renders_each_folder_once(validate_repo: Callable[..., Run],
                                              counting_kustomize: tuple[Path, Path]) -> None:
    _, log = counting_kustomize
    result = verdict(validate_repo())
    counts = rendered(log)
    assert set(counts.values()) == {1}, counts
    # What Flux and Argo CD sync, plus the one base no environment includes (all its
    # NodePools); never a model, a base or an overlay on its own.
    assert set(counts) == CLUSTERS | {f"overlays/{env}/{unit}" for env in (
        "dev", "staging", "prod") for unit in ("apps", "infrastructure", "models/qwen3")} | {
        "base/karpenter"}
    assert result["summary"]["targets"] == 40 and result["summary"]["scopes"] == 7


def test_a_defect_in_a_model_is_one_finding_in_the_clusters_that_run_it(
        validate_repo: Callable[..., Run], repo: Path) -> None:
    edit_re(repo / MODEL / "model.yaml", r"--tensor-parallel-size=\d+",
            "--tensor-parallel-size=3")
    result = verdict(validate_repo())
    found = [f for f in result["findings"] if f["rule"] == "parallelism/divisibility"]
    assert len(found) == 1, found
    assert found[0]["file"] == f"{MODEL}/model.yaml"
    assert set(found[0]["targets"]) == {"clusters/dev/flux", "clusters/dev/argocd"}


def test_a_broken_model_is_reported_at_its_own_kustomization(
        validate_repo: Callable[..., Run], repo: Path) -> None:
    """kustomize fails on the model, so on everything that includes it: one finding,
    at the model, from rendering the covered targets under the failed render on their own."""
    edit_re(repo / MODEL / "model.yaml", r"(?m)^(  name: \S+)$", r"\1-typo")
    result = verdict(validate_repo())
    failed = [f for f in result["findings"] if f["rule"] == "kustomize/render-failed"]
    assert [f["file"] for f in failed] == [f"{MODEL}/kustomization.yaml"], failed
    assert result["summary"]["errors"] >= 1


def test_kustomizations_that_include_each_other_are_both_checked(tmp_path: Path) -> None:
    """A cycle covers nothing for sure: the plan checks the first, the other is covered only
    until the render fails (then both are reported, neither hides the other)."""
    for name, other in (("a", "b"), ("b", "a")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kustomization.yaml").write_text(f"resources: [../{other}]\n")
    targets = [Target(tmp_path / n, n, "overlay") for n in ("a", "b")]
    coverage = plan(targets, tmp_path, {})
    assert [t.name for t in coverage.checked] == ["a"] and coverage.covered == {"b": "a"}


def test_an_aggregation_is_covered_by_what_covers_its_parts(tmp_path: Path) -> None:
    for name in ("infra", "apps"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "kustomization.yaml").write_text("resources: [../infra, ../apps]\n")
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "kustomization.yaml").write_text(
        "resources: [../infra, ../apps]\nnamespace: x\n")  # not a pure aggregation
    targets = [Target(tmp_path / n, n, "cluster" if n == "cluster" else "overlay")
               for n in ("apps", "cluster", "env", "infra")]
    memo: dict[Path, Closure] = {}
    coverage = plan(targets, tmp_path, memo)
    assert [t.name for t in coverage.checked] == ["cluster"]
    assert coverage.covered == {"apps": "cluster", "env": "cluster", "infra": "cluster"}
    assert coverage.parts["env"] == [tmp_path / "infra", tmp_path / "apps"]


def test_a_folder_the_sources_suggest_but_nothing_syncs_is_checked_alone(
        validate: Callable[..., Run], scratch_repo: Path) -> None:
    """The plan reads sync paths from the sources generously (a JSON patch value that looks
    like a path counts); after rendering, a folder no scope really rendered is checked alone."""
    cluster = scratch_repo / "clusters" / "c"
    cluster.mkdir(parents=True)
    (cluster / "kustomization.yaml").write_text(
        "kind: Kustomization\nresources: [cm.yaml]\n"
        "patches:\n"
        "  - target: {kind: ConfigMap}\n"
        "    patch: '[{\"op\": \"add\", \"path\": \"/data/where\", \"value\": \"overlays/x\"}]'\n")
    (cluster / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n")
    overlay = scratch_repo / "overlays" / "x"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (overlay / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndatta:\n  a: b\n")
    targets = [Target(cluster, "clusters/c", "cluster"), Target(overlay, "overlays/x", "overlay")]
    assert plan(targets, scratch_repo, {}).covered == {"overlays/x": "clusters/c"}  # planned
    result = verdict(validate("-f", "json", cwd=scratch_repo))
    typo = [f for f in result["findings"] if f["rule"] == "schema/invalid"]
    assert [(f["file"], f["targets"]) for f in typo] == [("overlays/x/cm.yaml", ["overlays/x"])]
    assert result["summary"]["targets"] == 2 and result["summary"]["scopes"] == 2


def test_an_aggregation_a_cluster_deploys_in_part_is_not_checked_whole(
        tmp_path: Path) -> None:
    """env lists two models; the cluster syncs one. The other is checked on its own, and env
    is not: checked whole it would judge both models as if deployed together."""
    for name in ("m1", "m2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "kustomization.yaml").write_text("resources: [cm.yaml]\n")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "kustomization.yaml").write_text("resources: [../m1, ../m2]\n")
    (tmp_path / "cluster").mkdir()
    (tmp_path / "cluster" / "kustomization.yaml").write_text("resources: [m1.yaml]\n")
    (tmp_path / "cluster" / "m1.yaml").write_text(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n"
        "metadata: {name: m1, namespace: flux-system}\n"
        "spec: {path: ./m1, sourceRef: {kind: GitRepository, name: repo}}\n")
    targets = [Target(tmp_path / n, n, "cluster" if n == "cluster" else "overlay")
               for n in ("cluster", "env", "m1", "m2")]
    coverage = plan(targets, tmp_path, {})
    assert [t.name for t in coverage.checked] == ["cluster", "m2"]
    assert coverage.covered == {"env": "cluster", "m1": "cluster"}
    assert coverage.parts["env"] == [tmp_path / "m1"]


def test_a_model_nothing_syncs_is_one_finding(validate_repo: Callable[..., Run],
                                              repo: Path) -> None:
    models = repo / "overlays/dev/models"
    shutil.copytree(models / "qwen3", models / "extra")
    edit_re(models / "extra/kustomization.yaml", r"-qwen3\b", "-extra")
    edit_re(models / "extra/kustomization.yaml", r"instance: qwen3\b", "instance: extra")
    edit_re(models / "kustomization.yaml", r"  - qwen3\n", "  - qwen3\n  - extra\n")
    result = verdict(validate_repo())
    # (this copy locates no schemas: schema/missing findings are the test setup's)
    found = [f for f in result["findings"] if f["rule"] != "schema/missing"]
    assert [(f["rule"], f["file"], f["line"]) for f in found] == [
        ("gitops/listed-not-synced", "overlays/dev/models/kustomization.yaml", 10)]
    assert result["summary"]["scopes"] == 8  # the 7, and the unsynced model on its own

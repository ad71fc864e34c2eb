"""`tools/validate --changed-since REF` as a user runs it, on a real git copy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pr_support import edit_re

from support import Run, run_tool

# the model, the aggregations listing it, and what syncs it (the entry points and the
# folders of their per-model sync objects, which are checked within the entry points)
PROD = {"overlays/prod/models/qwen3", "overlays/prod/models", "overlays/prod",
        "clusters/prod/flux", "clusters/prod/argocd", "clusters/prod/flux/models",
        "clusters/prod/argocd/models"}


@pytest.fixture
def changed_since(repo: Path, cache_dir: Path) -> Callable[..., Run]:
    def call(*args: str) -> Run:
        return run_tool("vllm_gitops.cli.validate", "--repo", str(repo), *args, cwd=repo,
                        env={"VLLM_GITOPS_CACHE_DIR": str(cache_dir)})

    return call


def checked_targets(run: Run) -> set[str]:
    assert run.code in (0, 1), run.output
    return {t for f in run.json()["findings"] for t in f.get("targets", [f["target"]])}


def test_one_model_edit_checks_its_environment(changed_since: Callable[..., Run],
                                               repo: Path) -> None:
    edit_re(repo / "overlays/prod/models/qwen3/model.yaml", r"--max-model-len=\d+",
            "--max-model-len=999999")  # longer than the model allows: an error somewhere
    run = changed_since("--changed-since", "HEAD", "-f", "json")
    assert run.code == 1, run.output
    assert run.json()["summary"]["targets"] == len(PROD)
    assert checked_targets(run) <= PROD
    assert "1 changed file(s) affect 7 of" in run.stderr
    assert run.json()["summary"]["scopes"] == 2  # the two entry points, the rest within them


def test_nothing_changed_checks_nothing(changed_since: Callable[..., Run]) -> None:
    run = changed_since("--changed-since", "HEAD")
    assert run.code == 0, run.output
    assert "0 targets" in run.stdout


def test_a_setting_change_checks_everything(changed_since: Callable[..., Run],
                                            repo: Path) -> None:
    everything = changed_since("-f", "json").json()["summary"]["targets"]
    settings = repo / "vllm-gitops.yaml"
    settings.write_text(settings.read_text() + "# a comment\n")
    run = changed_since("--changed-since", "HEAD", "-f", "json")
    assert run.json()["summary"]["targets"] == everything
    assert "vllm-gitops.yaml changed: every target is re-checked" in run.stderr


def test_bad_uses_exit_2(changed_since: Callable[..., Run], repo: Path) -> None:
    run = changed_since("--changed-since", "no-such-ref")
    assert run.code == 2 and "unknown git revision 'no-such-ref'" in run.stderr
    run = changed_since("--changed-since", "HEAD", str(repo / "base/vllm"))
    assert run.code == 2 and "--changed-since" in run.stderr
    assert "Traceback" not in run.output

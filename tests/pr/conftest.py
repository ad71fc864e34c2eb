"""Fixtures of the pull-request tools: a real git copy of the repository, the CLIs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pr_support import make_repo

from support import Run, run_tool


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def diff(repo: Path, cache_dir: Path) -> Callable[..., Run]:
    def call(*args: str) -> Run:
        return run_tool("vllm_gitops.cli.diff", *args, cwd=repo,
                        env={"VLLM_GITOPS_CACHE_DIR": str(cache_dir)})

    return call


@pytest.fixture
def counting_kustomize(tmp_path: Path) -> tuple[Path, Path]:
    """A `kustomize` that logs each call, then runs the pinned kubectl's kustomize."""
    log = tmp_path / "kustomize-calls.log"
    script = tmp_path / "bin" / "kustomize"
    script.parent.mkdir()
    kubectl = Path(sys.executable).parent / "kubectl"
    # tools/validate wraps each target in a throwaway kustomization naming it: log the target
    script.write_text(f'#!/bin/sh\nsed -n "s/^  - //p" "$2/kustomization.yaml" >> "{log}"\n'
                      f'exec "{kubectl}" kustomize "$2"\n')
    script.chmod(0o755)
    return script, log


@pytest.fixture
def validate_repo(repo: Path, cache_dir: Path, counting_kustomize: tuple[Path, Path]
                  ) -> Callable[..., Run]:
    """`tools/validate --repo REPO -f json ARGS` with the counting kustomize."""
    script, _ = counting_kustomize
    settings = repo / "vllm-gitops.yaml"
    settings.write_text(settings.read_text() + f"\nkustomize: {script}\n")

    def call(*args: str, env: dict[str, str] | None = None) -> Run:
        return run_tool("vllm_gitops.cli.validate", "--repo", str(repo), "-f", "json", *args,
                        cwd=repo, env={"VLLM_GITOPS_CACHE_DIR": str(cache_dir), **(env or {})})

    return call

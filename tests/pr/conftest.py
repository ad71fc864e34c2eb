"""Fixtures of the pull-request tools: a real git copy of the repository, the CLIs."""

from __future__ import annotations

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

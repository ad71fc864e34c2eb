"""Shared test fixtures: the real CLI, real kustomize, real schemas (schemas/, locked)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from support import REPO_ROOT, Run, crd_schema_dir, run_tool


@pytest.fixture(scope="session")
def crd_schemas() -> Path:
    return crd_schema_dir()


@pytest.fixture
def validate(crd_schemas: Path, tmp_path: Path) -> Callable[..., Run]:
    """`tools/validate ARGS` with the CRD schemas located and a private schema cache."""

    def call(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> Run:
        base_env = {"VLLM_GITOPS_SCHEMA_LOCATIONS": str(crd_schemas),
                    "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "1",
                    "VLLM_GITOPS_CACHE_DIR": str(tmp_path / "cache")}
        return run_tool("vllm_gitops.cli.validate", *args, cwd=cwd, env={**base_env, **(env or {})})

    return call


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    """An empty repository root of our own (a vllm-gitops.yaml marks it) for bad inputs."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "vllm-gitops.yaml").write_text('kubernetesVersion: "1.34.0"\n'
                                           "schemaLocations: [default]\n")
    return root

"""Shared test fixtures: the real CLI, real kustomize, real schemas (../shared/crd-schemas)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def crd_schema_dir() -> Path | None:
    """The CRD schemas CI passes in (VLLM_GITOPS_SCHEMA_LOCATIONS) or ../shared/crd-schemas."""
    for location in os.environ.get("VLLM_GITOPS_SCHEMA_LOCATIONS", "").split(os.pathsep):
        if location and Path(location).is_dir():
            return Path(location)
    shared = REPO_ROOT.parent / "shared" / "crd-schemas"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def crd_schemas() -> Path:
    found = crd_schema_dir()
    if found is None:
        pytest.skip("CRD schemas not available (../shared/crd-schemas)")
    return found


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_tool(module: str, *args: str, cwd: Path = REPO_ROOT,
             env: dict[str, str] | None = None, timeout: float = 300) -> Run:
    """Run a CLI module as a user would (fresh interpreter, real subprocesses)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO_ROOT / "tools")
    full_env.pop("VLLM_GITOPS_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


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

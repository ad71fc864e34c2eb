"""Helpers shared by the tools/validate tests (named uniquely: test folders have no __init__).

Tests that need one CLI run for many assertions use `run_validate` from module-scoped
fixtures; it sets up the same environment as the `validate` fixture of tests/conftest.py
(CRD schemas located, missing schemas are errors, a private schema cache).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from support import REPO_ROOT, Run, run_tool

FIXTURES = REPO_ROOT / "tests" / "fixtures"
MODULE = "vllm_gitops.cli.validate"
SCRATCH_CONFIG = 'kubernetesVersion: "1.34.0"\nschemaLocations: [default]\n'

FindingKey = tuple[str, str | None, int | None]


CliRun = Run


def run_validate(*args: str, cwd: Path, crd_schemas: Path, cache_dir: Path,
                 env: dict[str, str] | None = None) -> CliRun:
    """`tools/validate ARGS` in a fresh interpreter, like the `validate` fixture."""
    settings = {"VLLM_GITOPS_SCHEMA_LOCATIONS": str(crd_schemas),
                "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "1",
                "VLLM_GITOPS_CACHE_DIR": str(cache_dir)}
    return run_tool(MODULE, *args, cwd=cwd, env={**settings, **(env or {})})


def make_scratch_repo(root: Path) -> Path:
    """A repository root of our own (same config as the `scratch_repo` fixture)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "vllm-gitops.yaml").write_text(SCRATCH_CONFIG)
    return root


def copy_fixture(name: str, repo: Path) -> Path:
    """Copy tests/fixtures/<name> into a scratch repository; returns the copy."""
    target = repo / Path(name).name
    shutil.copytree(FIXTURES / name, target)
    return target


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def assert_no_crash(run: Any) -> None:
    """Never a Python traceback, never an internal error, whatever the input."""
    output = run.stdout + run.stderr
    assert "Traceback" not in output, output
    assert "internal error" not in output, output


def keys(findings: list[dict[str, Any]]) -> set[FindingKey]:
    return {(f["rule"], f["file"], f["line"]) for f in findings}


def by_file(findings: list[dict[str, Any]], file: str) -> list[dict[str, Any]]:
    return [f for f in findings if f["file"] == file]

"""Helpers of the tools/new-model tests: a private copy of the repository, the real CLIs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import REPO_ROOT, Run, run_tool
from vllm_gitops.pipeline import ScopeLoader, Target
from vllm_gitops.scope import Scope
from vllm_gitops.settings import load_settings

_NOT_COPIED = (".git", ".venv", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache")


def copy_repo(dest: Path) -> Path:
    """The repository's files (git ls-files: tracked and not ignored) copied into `dest`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                            check=False)
    if listed.returncode != 0:  # not a git checkout (a release tarball): copy the tree
        shutil.copytree(REPO_ROOT, dest, symlinks=True,
                        ignore=shutil.ignore_patterns(*_NOT_COPIED))
        return dest
    for name in listed.stdout.decode().split("\0"):
        source = REPO_ROOT / name
        if name and (source.is_file() or source.is_symlink()):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    return dest


def _env(repo: Path, extra: dict[str, str] | None) -> dict[str, str]:
    # A private schema cache: nothing from the user's home, nothing shared between tests.
    return {"VLLM_GITOPS_CACHE_DIR": str(repo.parent / "cache"), **(extra or {})}


def new_model(repo: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    """`tools/new-model ARGS` run inside the copy, as a user would."""
    return run_tool("vllm_gitops.cli.new_model", *args, cwd=repo, env=_env(repo, env))


def validate(repo: Path, *paths: str) -> Run:
    """`tools/validate [PATHS]` inside the copy."""
    return run_tool("vllm_gitops.cli.validate", *paths, cwd=repo, env=_env(repo, None))


def render(repo: Path, rel: str) -> Scope:
    """A folder of the copy rendered with the real kustomize."""
    loader = ScopeLoader(load_settings(repo))
    return loader.load(Target(repo / rel, rel, "paths"))


def snapshot(repo: Path, *rels: str) -> dict[str, bytes]:
    """Every file under `rels` (default: the overlays and the cluster entry points; hidden
    leftovers included), to prove nothing changed."""
    return {p.relative_to(repo).as_posix(): p.read_bytes()
            for rel in rels or ("overlays", "clusters")
            for p in sorted((repo / rel).rglob("*")) if p.is_file()}


def routes_check(repo: Path) -> Run:
    """`tools/routes --check` inside the copy."""
    return run_tool("vllm_gitops.cli.routes", "--check", cwd=repo, env=_env(repo, None))


def load_yaml(repo: Path, rel: str) -> Any:
    return yaml.safe_load((repo / rel).read_text(encoding="utf-8"))

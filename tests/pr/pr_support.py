"""A real git repository in tmp: a copy of this repository's manifests, committed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from support import REPO_ROOT, TIMEOUT_SECONDS, Run

# What renders need: the manifests and the settings (the tool's code runs from REPO_ROOT).
COPIED = ("base", "overlays", "clusters", "vllm-gitops.yaml")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}, timeout=TIMEOUT_SECONDS)
    return done.stdout


def tracked_files() -> list[str]:
    """This repository's files (tracked or new, not ignored) under COPIED."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard", "--", *COPIED], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True).stdout
    return sorted(name for name in set(listed.split("\0")) if name
                  and (REPO_ROOT / name).is_file())


def make_repo(root: Path) -> Path:
    """A committed copy of the manifests at `root` (branch main)."""
    root.mkdir(parents=True)
    for name in tracked_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    git(root, "init", "--quiet", "--initial-branch=main")
    commit_all(root, "base")
    return root


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert text.count(old) >= count, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def edit_re(path: Path, pattern: str, new: str) -> None:
    """Replace every match of a regular expression (robust to the values others choose)."""
    text, count = re.subn(pattern, new, path.read_text())
    assert count, f"{pattern!r} not in {path}"
    path.write_text(text)


def verdict(run: Run) -> dict[str, Any]:
    """The JSON report of a run that could run (exit 0 or 1)."""
    assert run.code in (0, 1), run.output
    data: dict[str, Any] = run.json()
    return data


def calls(log: Path) -> int:
    """How many renders the counting kustomize logged."""
    return len(log.read_text().splitlines()) if log.exists() else 0

"""A read-only checkout of one revision, in a temporary folder, removed afterwards.

`git worktree add --detach` into a temporary directory: the user's working copy, index and
branches are never touched, hooks do not run, and the worktree is removed (and pruned from
git's list) whatever happens: an error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

from vllm_gitops.changes import git, resolve_ref
from vllm_gitops.errors import ToolError


@contextmanager
def revision_checkout(repo_root: Path, ref: str) -> Iterator[Path]:
    """The repository at `ref`, checked out in a temporary folder for the duration."""
    commit = resolve_ref(repo_root, ref)
    top = Path(git(repo_root, "rev-parse", "--show-toplevel").strip())
    inside = repo_root.resolve().relative_to(top.resolve())  # the repo may sit in a subfolder
    holder = Path(tempfile.mkdtemp(prefix="vllm-gitops-diff-"))
    tree = holder / commit[:12]
    try:
        # hooksPath: a post-checkout hook of the repository must not run here.
        git(repo_root, "-c", "core.hooksPath=/dev/null", "worktree", "add", "--detach",
            "--quiet", str(tree), commit)
        yield tree / inside
    finally:
        _remove(repo_root, tree)
        shutil.rmtree(holder, ignore_errors=True)


def _remove(repo_root: Path, tree: Path) -> None:
    try:
        git(repo_root, "worktree", "remove", "--force", str(tree))
    except ToolError:  # best effort: prune below cleans git's list
        shutil.rmtree(tree, ignore_errors=True)
    with suppress(ToolError):
        git(repo_root, "worktree", "prune")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) unwinds like Ctrl-C, so `finally` clean-ups run."""

    def raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

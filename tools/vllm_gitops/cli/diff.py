"""`tools/diff --base REF [--head REF]`: what a change does to each cluster, rendered.

Exit codes: 0 the diff was made (whatever it shows); 2 the tool could not run.
"""

from __future__ import annotations

from contextlib import ExitStack
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from vllm_gitops.changes import git, resolve_ref
from vllm_gitops.cli.common import guarded, new_app, repo_root, write_output
from vllm_gitops.diff import DiffReport, diff_clusters, render_clusters
from vllm_gitops.diff.formats import FORMATS
from vllm_gitops.diff.worktree import revision_checkout, terminate_as_interrupt
from vllm_gitops.errors import EXIT_OK, ToolError

app = new_app()


class Format(StrEnum):
    markdown = "markdown"
    json = "json"
    text = "text"


@app.command()
def main(
    base: Annotated[str, typer.Option(help="Git revision to compare against (e.g. origin/main).")],
    head: Annotated[str | None, typer.Option(
        help="Git revision of the change. Default: the working tree, uncommitted edits "
             "included.")] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write the report to FILE.")] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository root (default: found from "
                                                   "the current folder).")] = None,
) -> None:
    """Render every cluster entry point at BASE and at HEAD and show, per cluster, the
    resources added, removed and changed, what the apply would refuse or lose, the serving
    pods it restarts, and the hourly cost before and after."""

    def body() -> int:
        root = repo_root(repo)
        with terminate_as_interrupt(), ExitStack() as stack:
            base_root = stack.enter_context(revision_checkout(root, base))
            head_root = stack.enter_context(revision_checkout(root, head)) if head else root
            report = DiffReport(_label(root, base), _label(root, head) if head
                                else "working tree",
                                diff_clusters(render_clusters(base_root),
                                              render_clusters(head_root)))
        write_output(FORMATS[output_format.value](report), output)
        return EXIT_OK

    raise typer.Exit(guarded(body))


def _label(root: Path, ref: str) -> str:
    commit = resolve_ref(root, ref)
    try:
        short = git(root, "rev-parse", "--short", commit).strip()
    except ToolError:
        short = commit[:12]
    return ref if ref == commit else f"{ref} ({short})"


if __name__ == "__main__":
    app()

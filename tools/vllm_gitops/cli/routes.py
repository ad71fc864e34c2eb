"""`tools/routes [--check]`: regenerate each gateway's LiteLLM models.yaml from the models
deployed beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vllm_gitops.cli.common import guarded, new_app, write_output
from vllm_gitops.pipeline import ScopeLoader
from vllm_gitops.routes import expected_routes_text, routes_files, routes_scope
from vllm_gitops.settings import find_repo_root, load_settings

app = new_app()


@app.command()
def main(check: Annotated[bool, typer.Option(help="Only report stale files; exit 1 if any.")]
         = False) -> None:
    """Regenerate overlays/**/models.yaml (LiteLLM routes) from the vLLM models."""

    def body() -> int:
        root = find_repo_root(Path.cwd())
        loader = ScopeLoader(load_settings(root))
        stale = 0
        for path in routes_files(root):
            scope = routes_scope(path, loader)
            expected = expected_routes_text(scope)
            rel = path.relative_to(root)
            if path.read_text(encoding="utf-8") == expected:
                typer.echo(f"up to date: {rel}")
                continue
            stale += 1
            if check:
                typer.echo(f"stale: {rel} (run `make routes`)")
            else:
                write_output(expected, path)
                typer.echo(f"wrote: {rel}")
        return 1 if check and stale else 0

    raise typer.Exit(guarded(body))


if __name__ == "__main__":
    app()

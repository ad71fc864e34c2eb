"""What every CLI shares: exit codes, error printing, atomic output files."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from vllm_gitops.errors import EXIT_TOOL_ERROR, ToolError
from vllm_gitops.fileio import write_atomic

T = TypeVar("T")


def new_app(**options: Any) -> typer.Typer:
    """A command-line app as every tool here has it: -h/--help, plain help text, no shell
    completion installer, and never a traceback printed by typer itself."""
    return typer.Typer(add_completion=False, rich_markup_mode=None,
                       pretty_exceptions_enable=False,
                       context_settings={"help_option_names": ["-h", "--help"],
                                         "max_content_width": 120}, **options)


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_TOOL_ERROR)


def guarded(body: Callable[[], T]) -> T:
    """Run a command body: tool errors and surprises become exit 2 with a message."""
    try:
        return body()
    except ToolError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        raise fail("interrupted") from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug of ours must still not show a traceback to a researcher
        if os.environ.get("VLLM_GITOPS_DEBUG"):
            raise
        raise fail(f"internal error: {type(exc).__name__}: {exc} "
                   "(set VLLM_GITOPS_DEBUG=1 for details)") from None


def write_output(text: str, output: Path | None) -> None:
    """stdout, or a file written atomically (never half-written)."""
    if output is None:
        sys.stdout.write(text)
    else:
        write_atomic(output, text)


def repo_root(repo: Path | None) -> Path:
    """`--repo` when given, else the repository the current folder is in."""
    from vllm_gitops.settings import find_repo_root

    return repo.resolve() if repo else find_repo_root(Path.cwd())

"""`tools/validate [PATH...]`: render and check the repository (or the given paths).

Exit codes: 0 no error-level finding; 1 at least one; 2 the tool could not run.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from vllm_gitops.changes import Closure, targets_changed_since
from vllm_gitops.cli.common import guarded, new_app, repo_root, write_output
from vllm_gitops.errors import EXIT_FINDINGS, EXIT_OK, ToolError
from vllm_gitops.pipeline import Target, discover_targets, targets_from_paths, validate
from vllm_gitops.render import find_renderer, renderer_version
from vllm_gitops.report import FORMATS, RenderOptions
from vllm_gitops.settings import Settings, is_local_location, load_settings

app = new_app()


class Format(StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"
    junit = "junit"
    github = "github"
    markdown = "markdown"  # --list-rules only


class Engine(StrEnum):
    jsonschema = "jsonschema"
    kubeconform = "kubeconform"


def _progress(enabled: bool) -> object:
    def show(done: int, total: int, name: str) -> None:
        width = 24
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done == total and not name else ""
        sys.stderr.write(f"\r[{bar}] {done}/{total} {name[:60]:<60}{end}")
        sys.stderr.flush()

    return show if enabled else None


@app.command()
def main(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Kustomization folders, folders of YAML, or YAML files; together one scope. "
             "Default: every cluster, overlay and base of the repository.")] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                                help="Write the report to FILE.")] = None,
    kubernetes_version: Annotated[str | None, typer.Option(
        help="Kubernetes version whose API the documents must match (e.g. 1.34.0).")] = None,
    schema_location: Annotated[list[str] | None, typer.Option(
        help="Extra schema location (folder or kubeconform URL/path template); repeatable.")
    ] = None,
    engine: Annotated[Engine | None, typer.Option(help="Schema engine.")] = None,
    missing_schema_is_error: Annotated[bool | None, typer.Option(
        "--missing-schema-is-error/--missing-schema-is-warning")] = None,
    allow_remote_bases: Annotated[bool | None, typer.Option(
        "--allow-remote-bases/--no-remote-bases")] = None,
    color: Annotated[bool | None, typer.Option("--color/--no-color")] = None,
    repo: Annotated[Path | None, typer.Option(help="Repository root (default: found from "
                                                   "the current folder).")] = None,
    changed_since: Annotated[str | None, typer.Option(
        "--changed-since", metavar="REF",
        help="Check only the targets that the difference between the git revision REF and "
             "the working tree (committed or not, new files included) can affect.")] = None,
    list_rules: Annotated[bool, typer.Option(
        "--list-rules", help="Print the rule catalogue (id, severity, summary) and exit; "
                             "--format json or markdown for the full texts.")] = False,
) -> None:
    """Render every target with kustomize and check it against Kubernetes and CRD schemas
    and the policies that catch what breaks LLM serving."""

    def body() -> int:
        if list_rules:
            root = repo_root(repo)
            write_output(_catalogue(output_format, load_settings(root)), output)
            return EXIT_OK
        if output_format is Format.markdown:
            raise ToolError("--format markdown is for --list-rules; reports use text, json, "
                            "sarif, junit or github")
        settings = _settings(repo, kubernetes_version, schema_location, engine,
                             missing_schema_is_error, allow_remote_bases)
        targets, given = _targets(settings, paths)
        closures: dict[Path, Closure] = {}  # walked once, by the selection and the run
        if changed_since is not None:
            targets = _changed_targets(targets, given, settings, changed_since, closures)
        show_progress = sys.stderr.isatty() and len(targets) > 3 and output_format is Format.text
        report = validate(targets, settings, _progress(show_progress), given,  # type: ignore[arg-type]
                          closures)
        use_color = sys.stdout.isatty() and output is None if color is None else color
        context = _versions(settings) if output_format is Format.text else ""
        options = RenderOptions(color=use_color, tool_version="0.1.0", context=context)
        write_output(FORMATS[output_format.value](report, options), output)
        return EXIT_FINDINGS if report.summary()["errors"] else EXIT_OK

    raise typer.Exit(guarded(body))


def _changed_targets(targets: list[Target], given: list[Path] | None, settings: Settings,
                     ref: str, closures: dict[Path, Closure]) -> list[Target]:
    """`--changed-since REF`: the targets the change can affect (changes.py); why, on stderr."""
    if given:
        raise ToolError("--changed-since selects among the repository's targets; "
                        "give no PATH with it")
    chosen, selection = targets_changed_since(targets, settings, ref, closures)
    typer.echo(f"--changed-since {ref}: {selection.reason}", err=True)
    return chosen


def _catalogue(output_format: Format, settings: Settings) -> str:
    from vllm_gitops.report import catalogue  # loads every rule (see pipeline.py)

    if output_format is Format.json:
        return catalogue.render_json(settings.severity_overrides)
    if output_format is Format.markdown:
        return catalogue.render_markdown()
    return catalogue.render_text(settings.severity_overrides)


def _settings(repo: Path | None, kubernetes_version: str | None, locations: list[str] | None,
              engine: Engine | None, missing_is_error: bool | None,
              allow_remote: bool | None) -> Settings:
    root = repo_root(repo)
    settings = load_settings(root)
    extra = tuple(str(Path(loc).resolve()) if is_local_location(loc) else loc
                  for loc in locations or ())
    return settings.with_overrides(
        kubernetes_version=kubernetes_version,
        schema_locations=(*extra, *settings.schema_locations) if extra else None,
        engine=engine.value if engine else None,
        missing_schema_is_error=missing_is_error,
        allow_remote_bases=allow_remote,
    )


def _versions(settings: Settings) -> str:
    """What the verdict was reached with, for bug reports and the curious."""
    try:
        renderer = find_renderer(settings.kustomize, settings.render_timeout_seconds)
        kustomize = f"kustomize {renderer_version(renderer)} ({renderer.description})"
    except ToolError:
        kustomize = "no kustomize"
    return (f"checked with {kustomize}, Kubernetes {settings.kubernetes_version} schemas, "
            f"{settings.engine} engine")


def _targets(settings: Settings, paths: list[Path] | None) -> tuple[list[Target],
                                                                   list[Path] | None]:
    if not paths:
        return discover_targets(settings), None
    return [targets_from_paths(paths, settings)], paths


if __name__ == "__main__":
    app()

"""`tools/schemas`: the custom resource schemas locked in `schemas/` (list, add, check).

Exit codes: 0 fine; 1 `check` found the folder and its lock disagree; 2 the tool could not run.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vllm_gitops.cli.common import guarded, new_app, repo_root
from vllm_gitops.errors import EXIT_FINDINGS, EXIT_OK, ToolError
from vllm_gitops.fileio import write_atomic
from vllm_gitops.schema.cel import rules_of_schema
from vllm_gitops.schema.convert import ConvertedSchema, schemas_from_crd_text
from vllm_gitops.schema.lock import (
    SCHEMA_DIR,
    Lock,
    LockedSchema,
    check_lock,
    layout_path,
    read_lock,
    sha256_of,
    write_lock,
)
from vllm_gitops.yamlsafe import read_text

CATALOG_URL = ("https://raw.githubusercontent.com/datreeio/CRDs-catalog/main/"
               "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json")
CATALOG_LICENSE_FILE = "licenses/CRDs-catalog.MIT.txt"
MAX_DOWNLOAD_BYTES = 32 * 1024 * 1024

app = new_app()
RepoOption = Annotated[Path | None, typer.Option(
    help="Repository root (default: found from the current folder).")]


def _folder(repo: Path | None) -> Path:
    root = repo_root(repo)
    folder = root / SCHEMA_DIR
    if not folder.is_dir():
        raise ToolError(f"no {SCHEMA_DIR}/ folder in {root}")
    return folder


@app.callback(invoke_without_command=True)
def main(ctx: typer.Context,
         check: Annotated[bool, typer.Option("--check", help="Same as `check`.")] = False,
         repo: RepoOption = None) -> None:
    """The JSON schemas of custom resources, locked in schemas/ (source, release, sha256)."""
    if ctx.invoked_subcommand is not None:
        return
    if check:
        raise typer.Exit(guarded(lambda: _check(repo)))
    typer.echo(ctx.get_help())


@app.command("check")
def check_command(repo: RepoOption = None) -> None:
    """Verify the lock: every schema file locked, present, unchanged (sha256); nothing extra."""
    raise typer.Exit(guarded(lambda: _check(repo)))


def _check(repo: Path | None) -> int:
    folder = _folder(repo)
    lock = read_lock(folder)
    problems = check_lock(folder, lock)
    for problem in problems:
        typer.echo(f"{SCHEMA_DIR}/{problem}")
    if problems:
        typer.echo(f"schema lock: {len(problems)} problem(s)")
        return EXIT_FINDINGS
    typer.echo(f"schema lock: {len(lock.schemas)} schemas, all match")
    return EXIT_OK


@app.command("list")
def list_command(repo: RepoOption = None,
                 rules: Annotated[bool, typer.Option(
                     help="Also count each schema's CEL rules (x-kubernetes-validations); "
                          "transition rules (oldSelf) are skipped by the validator.")] = False,
                 ) -> None:
    """The locked schemas: kind, API version, release, licence."""

    def body() -> int:
        folder = _folder(repo)
        table = Table("kind", "apiVersion", "release", "license", *(
            ("CEL rules", "skipped (oldSelf)") if rules else ()), box=None)
        for entry in sorted(read_lock(folder).schemas, key=lambda e: (e.group, e.kind)):
            extra: tuple[str, ...] = ()
            if rules:
                found = rules_of_schema(json.loads((folder / entry.file).read_bytes()))
                transition = sum(1 for r in found if r.is_transition)
                extra = (str(len(found) - transition), str(transition))
            table.add_row(entry.kind, entry.api_version, entry.release, entry.license, *extra)
        Console(width=160).print(table)
        return EXIT_OK

    raise typer.Exit(guarded(body))


@app.command("add")
def add_command(
    crd: Annotated[Path | None, typer.Option(
        help="A CRD YAML file: each served version's openAPIV3Schema is converted.")] = None,
    catalog: Annotated[str | None, typer.Option(
        help="GROUP/VERSION/Kind fetched from the CRDs catalog (needs the network).")] = None,
    release: Annotated[str, typer.Option(
        help="The CRD release, e.g. 'Karpenter v1.14.1'.")] = "unspecified",
    source: Annotated[str | None, typer.Option(
        help="Where the CRD came from (URL); default: the file or URL read.")] = None,
    license_id: Annotated[str | None, typer.Option(
        "--license", help="SPDX licence of the source (default MIT for the catalog).")] = None,
    license_file: Annotated[str | None, typer.Option(
        help="Licence text, relative to schemas/ (must exist).")] = None,
    catalog_url: Annotated[str, typer.Option(
        help="Catalog URL template (kubeconform variables).")] = CATALOG_URL,
    repo: RepoOption = None,
) -> None:
    """Add (or replace) schemas in schemas/ and the lock."""

    def body() -> int:
        if (crd is None) == (catalog is None):
            raise ToolError("give exactly one of --crd FILE or --catalog GROUP/VERSION/Kind")
        folder = _folder(repo)
        lock = read_lock(folder)
        release_text = release
        if crd is not None:
            converted = schemas_from_crd_text(read_text(crd, str(crd)), str(crd))
            origin = source or crd.as_posix()
            licence = license_id or "unspecified"
            licence_file = license_file or ""
        else:
            converted, url = _from_catalog(str(catalog), catalog_url)
            origin = source or url
            licence = license_id or "MIT"
            licence_file = license_file or CATALOG_LICENSE_FILE
            if release == "unspecified":
                release_text = f"CRDs-catalog main, fetched {today()}"
        if not licence_file or not (folder / licence_file).is_file():
            raise ToolError(f"--license-file {licence_file or '(none)'}: give the licence text "
                            f"of the source as a file under {SCHEMA_DIR}/")
        for schema in converted:
            lock = _store(folder, lock, schema, LockedSchema(
                "", schema.group, schema.version, schema.kind, release_text, origin, licence,
                licence_file, ""))
        write_lock(folder, lock)
        return EXIT_OK

    raise typer.Exit(guarded(body))


def _store(folder: Path, lock: Lock, schema: ConvertedSchema, template: LockedSchema) -> Lock:
    rel = layout_path(schema.group, schema.kind, schema.version)
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, schema.text)
    entry = LockedSchema(rel, template.group, template.version, template.kind, template.release,
                         template.source, template.license, template.license_file,
                         sha256_of(path))
    typer.echo(f"added {SCHEMA_DIR}/{rel} ({schema.group}/{schema.version} {schema.kind})")
    return lock.with_entry(entry)


def _from_catalog(spec: str, template: str) -> tuple[list[ConvertedSchema], str]:
    parts = spec.split("/")
    if len(parts) != 3 or not all(parts):
        raise ToolError(f"--catalog {spec!r}: expected GROUP/VERSION/Kind, "
                        "e.g. karpenter.sh/v1/NodePool")
    group, version, kind = parts
    url = (template.replace("{{.Group}}", group).replace("{{.ResourceKind}}", kind.lower())
           .replace("{{.ResourceAPIVersion}}", version))
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ToolError(f"cannot fetch {url}: {reason}") from None
    try:
        schema = json.loads(body)
    except ValueError:
        raise ToolError(f"{url} is not JSON") from None
    if len(body) > MAX_DOWNLOAD_BYTES or not isinstance(schema, dict):
        raise ToolError(f"{url} is not a JSON schema object")
    # Kept byte for byte, so the lock's sha256 is the catalog file's.
    return [ConvertedSchema(group, version, kind, body.decode("utf-8"))], url


def today() -> str:
    return datetime.now(UTC).date().isoformat()


if __name__ == "__main__":
    app()

"""The schema lock: the custom resource schemas kept in the repository, and where each came from.

`schemas/<group>/<kind>_<version>.json` (the CRDs catalog layout, so the folder is a schema
location for both engines) and `schemas/lock.yaml`: per schema its kind, source, release,
licence and sha256. `check` proves the folder and the lock agree: every file locked, every
locked file present and unchanged, nothing extra.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic
from vllm_gitops.yamlsafe import YamlProblem, load_file

SCHEMA_DIR = "schemas"
LOCK_FILE = "lock.yaml"
LOCK_HEADER = """\
# The schema lock: every custom resource schema in this folder, its source and licence.
# Written by `tools/schemas add`; verified by `tools/schemas check` (CI runs it).
"""
_SCHEMA_FIELDS = ("file", "group", "version", "kind", "release", "source", "license",
                  "license_file", "sha256")


@dataclass(frozen=True)
class LockedSchema:
    file: str  # relative to the schema folder: <group>/<kind lowercase>_<version>.json
    group: str
    version: str
    kind: str
    release: str  # the CRD release the schema was generated from, e.g. "Karpenter v1.14.1"
    source: str  # URL (or repository path) the schema or its CRD was taken from
    license: str  # SPDX identifier
    license_file: str  # relative to the schema folder
    sha256: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass
class Lock:
    schemas: list[LockedSchema] = field(default_factory=list)

    def by_file(self) -> dict[str, LockedSchema]:
        return {entry.file: entry for entry in self.schemas}

    def with_entry(self, entry: LockedSchema) -> Lock:
        """A lock with `entry` added, replacing any entry for the same file."""
        kept = [e for e in self.schemas if e.file != entry.file]
        return Lock(sorted([*kept, entry], key=lambda e: e.file))


def layout_path(group: str, kind: str, version: str) -> str:
    """The catalog's file name for a kind (kubeconform's {{.Group}}/{{.ResourceKind}}_...)."""
    return f"{group}/{kind.lower()}_{version}.json"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_lock(folder: Path) -> Lock:
    """The lock of a schema folder; ToolError (file and line) when it is malformed."""
    path = folder / LOCK_FILE
    name = _display(path)
    if not path.is_file():
        raise ToolError(f"no schema lock at {name}")
    try:
        docs = load_file(path, name)
    except YamlProblem as exc:
        raise ToolError(str(exc), file=name, line=exc.line) from None
    data = docs[0].data if docs else None
    if not isinstance(data, dict) or not isinstance(data.get("schemas"), list):
        raise ToolError("expected a mapping with a `schemas` list", file=name, line=1)
    lines = docs[0].field_lines
    entries = []
    for index, item in enumerate(data["schemas"]):
        line = lines.get(("schemas", index))
        if not isinstance(item, dict):
            raise ToolError("each schema entry must be a mapping", file=name, line=line)
        missing = [key for key in _SCHEMA_FIELDS if not isinstance(item.get(key), str)]
        if missing:
            raise ToolError(f"schema entry lacks {', '.join(missing)} (or not a string)",
                            file=name, line=line)
        unknown = sorted(set(item) - set(_SCHEMA_FIELDS))
        if unknown:
            raise ToolError(f"unknown key(s) {', '.join(unknown)} in schema entry",
                            file=name, line=line)
        entries.append(LockedSchema(**{key: str(item[key]) for key in _SCHEMA_FIELDS}))
    return Lock(entries)


def write_lock(folder: Path, lock: Lock) -> None:
    data: dict[str, Any] = {"schemas": [asdict(entry) for entry in lock.schemas]}
    text = LOCK_HEADER + yaml.safe_dump(data, sort_keys=False, width=200, allow_unicode=True)
    write_atomic(folder / LOCK_FILE, text)


def check_lock(folder: Path, lock: Lock) -> list[str]:
    """Every disagreement between the folder and its lock, one sentence each (empty: ok)."""
    problems: list[str] = []
    seen: set[str] = set()
    for entry in lock.schemas:
        if entry.file in seen:
            problems.append(f"{entry.file}: locked twice")
        seen.add(entry.file)
        expected = layout_path(entry.group, entry.kind, entry.version)
        if entry.file != expected:
            problems.append(f"{entry.file}: {entry.api_version} {entry.kind} belongs at "
                            f"{expected}")
        path = folder / entry.file
        if not path.is_file():
            problems.append(f"{entry.file}: locked but missing")
        elif sha256_of(path) != entry.sha256:
            problems.append(f"{entry.file}: sha256 differs from the lock (edited by hand? "
                            "re-add it with `tools/schemas add`)")
        if not (folder / entry.license_file).is_file():
            problems.append(f"{entry.file}: licence file {entry.license_file} is missing")
    for path in sorted(folder.glob("*/*.json")):
        rel = path.relative_to(folder).as_posix()
        if rel not in seen:
            problems.append(f"{rel}: not in the lock (add it with `tools/schemas add`)")
    return problems


def _display(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"

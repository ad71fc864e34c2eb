"""Pre-flight over a kustomization tree, before kustomize runs.

Walks every kustomization a target reaches and every local file it names, so that problems
kustomize reports badly (or not at all) get a finding with file and line: remote bases,
paths or symlinks that leave the repository, missing files, unreadable or unsafe YAML.
The same walk collects the patch and generator files, which locate findings in them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_gitops.findings import Finding, Severity, SourceLocation
from vllm_gitops.resources import as_list
from vllm_gitops.yamlsafe import FieldPath, YamlDocument, YamlProblem, load_file_cached

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
YAML_SUFFIXES = (".yaml", ".yml")
_REMOTE_PREFIXES = ("github.com/", "gitlab.com/", "bitbucket.org/", "git@", "git::", "ssh://")

# Fields whose entries name other kustomizations or resource files.
_TREE_FIELDS = ("resources", "bases", "components", "crds")
# Fields whose entries are files read as data (or inline YAML).
_FILE_LIST_FIELDS = ("patchesStrategicMerge", "configurations", "generators", "transformers",
                     "validators")
_UNSUPPORTED = {
    "helmCharts": "Helm charts need `kustomize --enable-helm`, which Flux and Argo CD do not "
    "run by default; render the chart into YAML or use a HelmRelease",
    "helmChartInflationGenerator": "Helm inflation is not supported; use a HelmRelease",
}


def kustomization_file(folder: Path) -> Path | None:
    for name in KUSTOMIZATION_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def is_remote(entry: str) -> bool:
    return "://" in entry or entry.startswith(_REMOTE_PREFIXES) or "?ref=" in entry


@dataclass
class PatchDocument:
    """A strategic-merge patch and the kustomization that applies it."""

    kustomization: Path
    file: str  # repo-relative
    document: YamlDocument


@dataclass
class GeneratedData:
    """A data file a configMapGenerator/secretGenerator reads, under its key."""

    kind: str  # ConfigMap | Secret
    name: str
    key: str
    file: Path


@dataclass
class Preflight:
    repo_root: Path
    target: str
    allow_remote: bool
    findings: list[Finding] = field(default_factory=list)
    patches: list[PatchDocument] = field(default_factory=list)
    generated: list[GeneratedData] = field(default_factory=list)
    is_component: bool = False
    _seen: set[Path] = field(default_factory=set)

    @property
    def blocked(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.repo_root).as_posix()
        except ValueError:
            return path.as_posix()

    def problem(self, rule: str, message: str, file: Path, line: int | None) -> None:
        self.findings.append(
            Finding(rule, Severity.ERROR, message, self.target,
                    location=SourceLocation(self.rel(file), line))
        )

    def inside_repo(self, path: Path) -> bool:
        real = Path(os.path.realpath(path))
        return real == self.repo_root or self.repo_root in real.parents


def preflight(folder: Path, repo_root: Path, target: str, allow_remote: bool) -> Preflight:
    """Check the kustomization tree rooted at `folder` (which must hold a kustomization)."""
    state = Preflight(repo_root.resolve(), target, allow_remote)
    root_file = kustomization_file(folder)
    if root_file is not None:
        data = _walk_kustomization(state, root_file)
        state.is_component = isinstance(data, dict) and data.get("kind") == "Component"
    return state


def check_yaml_file(state: Preflight, path: Path) -> list[YamlDocument]:
    """Read a YAML file the render depends on; a problem becomes a located finding."""
    try:
        return list(load_file_cached(path, state.rel(path)))
    except YamlProblem as exc:
        state.problem("yaml/invalid", str(exc), path, exc.line)
        return []


def _walk_kustomization(state: Preflight, path: Path) -> Any:
    real = Path(os.path.realpath(path))
    if real in state._seen:
        return None
    state._seen.add(real)
    if not state.inside_repo(path):
        state.problem("kustomize/path-outside-repo",
                      f"{path.name} is a symlink to a file outside the repository; Flux and "
                      "Argo CD only see this repository", path, None)
        return None
    docs = check_yaml_file(state, path)
    if not docs:
        return None
    doc = docs[0]
    if not isinstance(doc.data, dict):
        state.problem("kustomize/invalid", "a kustomization must be a mapping", path, doc.line)
        return None
    for key, reason in _UNSUPPORTED.items():
        if key in doc.data:
            state.problem("kustomize/unsupported", reason, path, doc.field_lines.get((key,)))
    for entry, line, kind in _references(doc):
        _check_reference(state, path, entry, line, kind)
    state.generated += _generated_data(doc.data, path.parent)  # after its bases: wins
    return doc.data


def _generated_data(data: dict[str, Any], folder: Path) -> list[GeneratedData]:
    found = []
    for field_name, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for gen in as_list(data.get(field_name)):
            if not isinstance(gen, dict) or not isinstance(gen.get("name"), str):
                continue
            for entry in as_list(gen.get("files")):
                if isinstance(entry, str):
                    key, _, file = entry.rpartition("=")
                    key = key or Path(file).name
                    found.append(GeneratedData(kind, gen["name"], key,
                                               Path(os.path.normpath(folder / file))))
    return found


def _references(doc: YamlDocument) -> Iterator[tuple[str, int | None, str]]:
    """(entry, line, kind) for every path a kustomization names; kind is tree|file|patch."""
    data: dict[str, Any] = doc.data

    def line(*path: str | int) -> int | None:
        key: FieldPath = tuple(path)
        return doc.field_lines.get(key, doc.line)

    for name in _TREE_FIELDS:
        for i, entry in enumerate(as_list(data.get(name))):
            if isinstance(entry, str):
                yield entry, line(name, i), "tree"
    for name in _FILE_LIST_FIELDS:
        for i, entry in enumerate(as_list(data.get(name))):
            if isinstance(entry, str) and "\n" not in entry:  # inline patches contain newlines
                yield entry, line(name, i), "patch" if name == "patchesStrategicMerge" else "file"
    for name in ("patches", "patchesJson6902", "replacements"):
        for i, entry in enumerate(as_list(data.get(name))):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                kind = "patch" if name == "patches" else "file"
                yield entry["path"], line(name, i, "path"), kind
    for name in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(as_list(data.get(name))):
            if not isinstance(gen, dict):
                continue
            for j, entry in enumerate(as_list(gen.get("files"))):
                if isinstance(entry, str):
                    yield entry.split("=", 1)[-1], line(name, i, "files", j), "data"
            for j, entry in enumerate(as_list(gen.get("envs"))):
                if isinstance(entry, str):
                    yield entry, line(name, i, "envs", j), "data"
            if isinstance(gen.get("env"), str):
                yield gen["env"], line(name, i, "env"), "data"
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield openapi["path"], line("openapi", "path"), "file"


def _check_reference(state: Preflight, kfile: Path, entry: str, line: int | None,
                     kind: str) -> None:
    if is_remote(entry):
        if not state.allow_remote:
            state.problem(
                "kustomize/remote-base",
                f"remote reference {entry!r} refused: renders would depend on the network and "
                "on someone else's repository (set allowRemoteBases: true in vllm-gitops.yaml "
                "to permit)",
                kfile, line,
            )
        return
    if os.path.isabs(entry):
        state.problem("kustomize/path-outside-repo",
                      f"absolute path {entry!r}: use a path relative to the kustomization",
                      kfile, line)
        return
    resolved = Path(os.path.normpath(kfile.parent / entry))
    if not state.inside_repo(resolved):
        state.problem("kustomize/path-outside-repo",
                      f"{entry!r} resolves outside the repository (a '../' too many, or a "
                      "symlink pointing out); Flux and Argo CD only see this repository",
                      kfile, line)
        return
    if not resolved.exists():
        state.problem("kustomize/missing-path", f"{entry!r} does not exist", kfile, line)
        return
    if resolved.is_dir():
        _check_folder_reference(state, kfile, entry, line, resolved, kind)
        return
    if resolved.suffix in YAML_SUFFIXES and kind != "data":
        docs = check_yaml_file(state, resolved)
        if kind == "patch":
            state.patches += [PatchDocument(kfile, state.rel(resolved), d) for d in docs]


def _check_folder_reference(state: Preflight, kfile: Path, entry: str, line: int | None,
                            folder: Path, kind: str) -> None:
    nested = kustomization_file(folder) if kind == "tree" else None
    if nested is None:
        state.problem("kustomize/missing-path",
                      f"{entry!r} is a folder without a kustomization.yaml", kfile, line)
        return
    _walk_kustomization(state, nested)

"""What a change can affect: the kustomize dependency graph and `validate --changed-since`.

A target's *closure* is every file its render reads: its kustomization, the kustomizations it
includes (resources, components, bases), their patches, generator files, configurations,
transformers, replacements, openapi files, transitively; for a cluster entry point also what its
Flux Kustomizations and Argo CD Applications sync. A file that does not exist yet but is named
(or a second kustomization file name) is part of the closure too: creating it changes the render.

The graph is read from the source files, without kustomize, so it is cheap. It errs on the big
side: every YAML document of a cluster's closure (patches included) is searched for sync paths.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from vllm_gitops.errors import ToolError
from vllm_gitops.kustomization import (
    KUSTOMIZATION_NAMES,
    YAML_SUFFIXES,
    _references,
    is_remote,
    kustomization_file,
)
from vllm_gitops.resources import Resource
from vllm_gitops.settings import CONFIG_FILE, Settings
from vllm_gitops.yamlsafe import YamlDocument, YamlProblem, load_file_cached, parse_documents

# A change under one of these re-checks every target: settings, the tool itself, its catalogs.
GLOBAL_PREFIXES = (CONFIG_FILE, "pyproject.toml", "tools/", "catalog/")
GIT_TIMEOUT_SECONDS = 60


@dataclass
class Closure:
    """Files (absolute, normalised; missing ones included) a render reads."""

    files: set[Path] = field(default_factory=set)
    folders: set[Path] = field(default_factory=set)  # kustomization folders walked
    trees: set[Path] = field(default_factory=set)  # plain folders read whole (any file counts)
    remote: bool = False  # names a remote base: its content is not ours to hash
    synced: tuple[str, ...] | None = field(default=None, compare=False)  # scope_units' memo

    def update(self, other: Closure) -> None:
        self.files |= other.files
        self.folders |= other.folders
        self.trees |= other.trees
        self.remote = self.remote or other.remote

    def touches(self, changed: Iterable[Path]) -> bool:
        for path in changed:
            if path in self.files or any(tree in path.parents for tree in self.trees):
                return True
        return False


def kustomization_closure(folder: Path, memo: dict[Path, Closure] | None = None) -> Closure:
    """Every file `kustomize build folder` reads (a superset, never less). `memo` keeps the
    closures of the folders walked, for the next call of the same run."""
    memo = {} if memo is None else memo
    closure = Closure()
    closure.update(_closure_of(Path(os.path.normpath(folder)), memo, set())[0])
    return closure  # a copy: the memoised one stays as it is


def _closure_of(folder: Path, memo: dict[Path, Closure], walking: set[Path]) -> tuple[
        Closure, bool]:
    """The closure of one kustomization folder, and whether it is whole: a folder met again
    while it is being walked (a cycle, which kustomize refuses) leaves the closures of the
    folders in between partial, so only whole ones are memoised."""
    if folder in memo:
        return memo[folder], True
    if folder in walking:
        return Closure(), False
    walking.add(folder)
    closure = Closure(folders={folder})
    closure.files.update(folder / name for name in KUSTOMIZATION_NAMES)
    whole = _add_references(folder, closure, memo, walking)
    walking.discard(folder)
    if whole:
        memo[folder] = closure
    return closure, whole


def _add_references(folder: Path, closure: Closure, memo: dict[Path, Closure],
                    walking: set[Path]) -> bool:
    kfile = kustomization_file(folder)
    if kfile is None:
        return True
    _add_file(closure, kfile)
    try:
        docs = load_file_cached(kfile, str(kfile))
    except YamlProblem:
        return True
    if not docs or not isinstance(docs[0].data, dict):
        return True
    whole = True
    for entry, _line, _kind in _references(docs[0]):
        if is_remote(entry):
            closure.remote = True
        elif not os.path.isabs(entry):
            path = Path(os.path.normpath(folder / entry))
            if path.is_dir() and kustomization_file(path) is not None:
                included, complete = _closure_of(path, memo, walking)
                closure.update(included)
                whole = whole and complete
            elif path.is_dir() or not path.exists():
                # A plain folder (kustomize refuses it) or nothing yet: any file created
                # there (a kustomization.yaml...) changes the render.
                closure.trees.add(path)
                _add_file(closure, path)
            else:
                _add_file(closure, path)
    return whole


def _add_file(closure: Closure, path: Path) -> None:
    closure.files.add(path)
    real = Path(os.path.realpath(path))
    if real != path:
        closure.files.add(real)  # a symlink: its target's edits change the render too


def plain_folder_closure(folder: Path) -> Closure:
    """A folder of plain YAML (no kustomization): every file under it, present or future."""
    closure = Closure(trees={Path(os.path.normpath(folder))})
    closure.files.update(p for p in folder.rglob("*") if p.suffix in YAML_SUFFIXES)
    return closure


def scope_closure(folder: Path, repo_root: Path,
                  memo: dict[Path, Closure] | None = None) -> Closure:
    """What a target's scope reads: its render plus, transitively, what GitOps objects sync.
    `memo` shares the closures of folders between the targets of one run."""
    memo = {} if memo is None else memo
    closure = Closure()
    for unit in scope_units(folder, repo_root, memo):
        closure.update(memo[unit])
    return closure


def scope_units(folder: Path, repo_root: Path, memo: dict[Path, Closure]) -> list[Path]:
    """The folders a target's scope renders whole, in the order met: the target's own, then
    (transitively) those its Flux Kustomizations and Argo CD Applications may sync. Their
    closures are left in `memo`."""
    units: list[Path] = []
    todo = [Path(os.path.normpath(folder))]
    while todo:
        current = todo.pop(0)
        if current in units:
            continue
        units.append(current)
        if current not in memo:
            memo[current] = (_closure_of(current, memo, set())[0]
                             if kustomization_file(current) is not None
                             else plain_folder_closure(current))
        part = memo[current]
        if part.synced is None:
            part.synced = tuple(synced_paths(part))
        todo += [Path(os.path.normpath(repo_root / path)) for path in part.synced]
    return units


def synced_paths(closure: Closure) -> Iterator[str]:
    """Paths named by Flux Kustomizations / Argo CD Applications in a closure's documents,
    inline patches included (a patch may change a sync path)."""
    for path in sorted(closure.files):
        if path.suffix in YAML_SUFFIXES or path.name == "Kustomization":
            yield from _synced_in_file(path)


_SYNCED_IN_FILE: dict[tuple[Path, int, int], tuple[str, ...]] = {}


def _synced_in_file(path: Path) -> tuple[str, ...]:
    """synced_paths of one file, read once while it is unchanged (many closures share it)."""
    try:
        stat = path.stat()
    except OSError:
        return ()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _SYNCED_IN_FILE:
        _SYNCED_IN_FILE[key] = tuple(found for data in _documents(path) for found in (
            *_document_sync_paths(data), *_inline_patch_paths(data))) if _may_sync(path) else ()
    return _SYNCED_IN_FILE[key]


# Text every document that can name a sync path contains: a Flux Kustomization's or an Argo CD
# Application's apiVersion, or a kustomization's inline patch (which may change such a path).
SYNC_MARKERS = (b"fluxcd.io", b"argoproj.io", b"patch:")


def _may_sync(path: Path) -> bool:
    """Whether the file is worth parsing for sync paths (most files of a closure are not)."""
    try:
        text = path.read_bytes()
    except OSError:
        return False
    return any(marker in text for marker in SYNC_MARKERS)


def gitops_paths(resource: Resource) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(field path, repo path) of what a Flux Kustomization or Argo CD Application syncs."""
    if resource.kind == "Kustomization" and resource.api_version.startswith(
            "kustomize.toolkit.fluxcd.io/"):
        path = resource.get("spec", "path")
        if resource.get("spec", "sourceRef", "kind") == "GitRepository":
            yield ("spec", "path"), str(path or ".")
    elif resource.kind == "Application" and resource.api_version.startswith("argoproj.io/"):
        source = resource.get("spec", "source")
        if isinstance(source, dict) and "path" in source and "chart" not in source:
            yield ("spec", "source", "path"), str(source["path"])
        for i, src in enumerate(resource.get("spec", "sources", default=[]) or []):
            if isinstance(src, dict) and "path" in src and "chart" not in src:
                yield ("spec", "sources", i, "path"), str(src["path"])


def _document_sync_paths(data: dict[str, Any]) -> Iterator[str]:
    yield from (path for _, path in gitops_paths(Resource(data, "")))


def _documents(path: Path) -> Iterator[dict[str, Any]]:
    try:
        docs: Iterable[YamlDocument] = load_file_cached(path, str(path))
    except YamlProblem:
        return
    yield from (d.data for d in docs if isinstance(d.data, dict))


def _inline_patch_paths(data: dict[str, Any]) -> Iterator[str]:
    if data.get("kind") not in ("Kustomization", "Component"):
        return
    for patch in data.get("patches") or []:
        text = patch.get("patch") if isinstance(patch, dict) else None
        if not isinstance(text, str):
            continue
        try:
            docs = list(parse_documents(text))
        except YamlProblem:
            continue
        for doc in docs:
            if isinstance(doc.data, dict):
                yield from _document_sync_paths(doc.data)
            elif isinstance(doc.data, list):  # JSON 6902: any string value may be a path
                yield from (str(op["value"]) for op in doc.data if isinstance(op, dict)
                            and isinstance(op.get("value"), str) and "/" in op["value"])


# ---------------------------------------------------------------- git


def git(repo_root: Path, *args: str) -> str:
    """Run git in the repository; a ToolError (exit 2) with git's message when it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=repo_root, capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise ToolError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"git {args[0]} did not finish in {GIT_TIMEOUT_SECONDS} s") from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        raise ToolError(f"git {' '.join(args[:2])}: {message[-1] if message else 'failed'}")
    return done.stdout


def resolve_ref(repo_root: Path, ref: str) -> str:
    """The commit a user-given REF names; ToolError when it names none."""
    if ref.startswith("-"):
        raise ToolError(f"not a git revision: {ref!r}")
    try:
        return git(repo_root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except ToolError:
        raise ToolError(f"unknown git revision {ref!r} (fetch it first, e.g. "
                        f"`git fetch origin {ref}`)") from None


def changed_files(repo_root: Path, ref: str) -> set[Path]:
    """Files that differ between REF and the working tree: committed, staged, unstaged,
    deleted and untracked (both names of a rename)."""
    commit = resolve_ref(repo_root, ref)
    listed = git(repo_root, "diff", "--name-only", "--no-renames", "-z", "--relative", commit,
                 "--")
    untracked = git(repo_root, "ls-files", "--others", "--exclude-standard", "-z")
    names = [n for n in (listed + untracked).split("\0") if n]
    return {Path(os.path.normpath(repo_root / name)) for name in names}


# ---------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """The targets a change can affect, and why."""

    names: frozenset[str]
    everything: bool
    reason: str


def select_targets(target_folders: dict[str, Path], settings: Settings,
                   changed: set[Path], memo: dict[Path, Closure] | None = None) -> Selection:
    """Names of the targets whose scope reads a changed file (all of them on a global change)."""
    root = settings.repo_root
    rel = sorted(path.relative_to(root).as_posix() for path in changed
                 if path == root or root in path.parents)
    for name in rel:
        if name.startswith(GLOBAL_PREFIXES) or _in_local_schema_location(root / name, settings):
            return Selection(frozenset(target_folders), True,
                             f"{name} changed: every target is re-checked")
    memo = {} if memo is None else memo
    chosen = frozenset(name for name, folder in target_folders.items()
                       if scope_closure(folder, root, memo).touches(changed))
    return Selection(chosen, False, f"{len(rel)} changed file(s) affect {len(chosen)} of "
                                    f"{len(target_folders)} target(s)")


def _in_local_schema_location(path: Path, settings: Settings) -> bool:
    return any(folder == path or folder in path.parents
               for folder in settings.local_schema_folders())


class TargetLike(Protocol):
    """What selection and coverage read of a target (pipeline.Target)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def kind(self) -> str: ...


T = TypeVar("T", bound=TargetLike)


def targets_changed_since(targets: list[T], settings: Settings, ref: str,
                          memo: dict[Path, Closure] | None = None) -> tuple[list[T], Selection]:
    """The targets (of those given) that the difference between REF and the working tree
    can affect, and why. `memo` keeps the kustomization closures for the rest of the run."""
    changed = changed_files(settings.repo_root, ref)
    selection = select_targets({t.name: t.path for t in targets}, settings, changed, memo)
    return [t for t in targets if t.name in selection.names], selection

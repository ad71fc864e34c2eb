"""On-disk cache: a run where nothing changed renders nothing and checks nothing again.

Two kinds of entries. A *render* holds one kustomization's render (resources with their source
map, the findings of pre-flight and render), under its folder (repo-relative: worktrees of
other revisions share entries). A *check* holds one target's findings (render, schema,
policies), under the target. Each is keyed by a fingerprint of everything else the result
depends on (this package's code, rules included, the kustomize binary, the settings, the model
catalog and local schema folders) and by the digest of every input file, taken before the work
ran (the whole closure, see `changes.py`: missing files included): an edit, a new or a deleted
file is never served a stale result, and the last KEPT_VERSIONS versions of each stay (going
back to a branch, or `tools/diff`'s base revision, renders nothing again). A check whose verdict
depended on a schema that could not be found offline is used only while that schema still
cannot be found. A third kind holds the schema verdict of each document by its content, so an
unchanged object is not checked against its schema again.

Entries are written atomically (temporary file, then rename): a reader sees a whole entry or
none, two runs at once at worst both render, and a corrupt or foreign entry is ignored and
rewritten. Set VLLM_GITOPS_NO_CACHE=1 to bypass the cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from vllm_gitops.changes import Closure, kustomization_closure, scope_closure
from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic
from vllm_gitops.settings import Settings

ENV_NO_CACHE = "VLLM_GITOPS_NO_CACHE"
ENV_MODEL_CATALOG = "VLLM_GITOPS_MODEL_CATALOG"
FORMAT = 1
_PACKAGE_DIR = Path(__file__).resolve().parent
MISSING = "missing"
KEPT_VERSIONS = 8  # per folder or target: a branch switch or a diff's base revision hits
# The schema verdicts of documents by content (schema/engine.py), valid for one fingerprint.
SCHEMA_VERDICTS = "schema-verdicts"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@functools.cache  # the package does not change while it runs
def code_fingerprint() -> str:
    """This package's version and source: a new rule or a parser fix invalidates renders."""
    digest = hashlib.sha256()
    try:
        digest.update(version("vllm-gitops").encode())
    except PackageNotFoundError:
        digest.update(b"unknown")
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(_PACKAGE_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def binary_fingerprint(command: tuple[str, ...]) -> str:
    """The renderer's identity without running it: path, size and mtime of the binary."""
    try:
        stat = Path(command[0]).stat()
    except OSError:
        return f"{command}:absent"
    return f"{command}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass
class Inputs:
    """Digests of the files (repo-relative) a render read, taken before it ran."""

    files: dict[str, str] = field(default_factory=dict)
    trees: dict[str, str] = field(default_factory=dict)  # plain folders: digest of listing


class RenderCache:
    """Entries under `directory/renders/`, valid for one fingerprint."""

    def __init__(self, directory: Path, repo_root: Path, fingerprint: str) -> None:
        self.directory = directory / "renders"
        self.repo_root = repo_root.resolve()
        self.fingerprint = fingerprint
        self._digests: dict[Path, str] = {}  # per run: a file is hashed once

    # -------------------------------------------------------------- digests

    def _file_digest(self, path: Path) -> str:
        if path not in self._digests:
            try:
                prefix = f"link:{path.readlink()}:" if path.is_symlink() else ""
                self._digests[path] = prefix + _sha256(path.read_bytes())
            except (FileNotFoundError, NotADirectoryError):
                self._digests[path] = MISSING
            except OSError as exc:  # unreadable, a folder...: the render reports it
                self._digests[path] = f"error:{exc.errno}"
        return self._digests[path]

    def _tree_digest(self, folder: Path) -> str:
        if not folder.is_dir():
            return MISSING
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
        return _sha256("\n".join(names).encode())

    def _rel(self, path: Path) -> str:
        return os.path.relpath(path, self.repo_root)

    def inputs(self, folder: Path, closures: dict[Path, Closure] | None = None
               ) -> Inputs | None:
        """What to record for a render of `folder`; None when it cannot be cached.
        `closures`: the run's memo of kustomization closures."""
        return self.inputs_of(kustomization_closure(folder, closures))

    def inputs_of(self, closure: Closure) -> Inputs | None:
        if closure.remote:
            return None  # a remote base is not ours to hash
        return Inputs(files={self._rel(p): self._file_digest(p) for p in closure.files},
                      trees={self._rel(p): self._tree_digest(p) for p in closure.trees})

    # -------------------------------------------------------------- entries

    def _entry_path(self, name: str, inputs: Inputs) -> tuple[str, Path]:
        """One folder per name, one file per version of its inputs."""
        named = _sha256(f"{FORMAT}\0{self.fingerprint}\0{name}".encode())
        version = _sha256(repr((sorted(inputs.files.items()), sorted(inputs.trees.items())))
                          .encode())
        return _sha256(f"{named}\0{version}".encode()), self.directory / named / f"{version}.pickle"

    def get(self, folder: Path, inputs: Inputs | None) -> Any | None:
        """The cached render of `folder` made from exactly these inputs, else None."""
        return self.get_named(f"render:{self._rel(folder)}", inputs)

    def put(self, folder: Path, inputs: Inputs | None, value: Any) -> None:
        """Store a render (best effort: a cache that cannot be written is no error)."""
        self.put_named(f"render:{self._rel(folder)}", inputs, value)

    def get_named(self, name: str, inputs: Inputs | None) -> Any | None:
        """The value stored under `name` for these inputs; None when there is none, or the
        entry is corrupt or foreign."""
        if inputs is None:
            return None
        key, path = self._entry_path(name, inputs)
        try:
            entry = pickle.loads(path.read_bytes())
            valid = (isinstance(entry, dict) and entry.get("key") == key
                     and entry.get("inputs") == inputs)
        except Exception:
            valid = False
        return entry["value"] if valid else None

    def put_named(self, name: str, inputs: Inputs | None, value: Any) -> None:
        if inputs is None:
            return
        key, path = self._entry_path(name, inputs)
        try:
            data = pickle.dumps({"key": key, "inputs": inputs, "value": value},
                                protocol=pickle.HIGHEST_PROTOCOL)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, data)
            _keep_newest(path.parent, KEPT_VERSIONS)
        except (OSError, ToolError, pickle.PicklingError, RecursionError):
            return


def _keep_newest(folder: Path, count: int) -> None:
    """Delete all but the `count` most recently written versions (another run may delete
    the same files at once: a reader then misses, which is always safe)."""
    versions = []
    for path in folder.glob("*.pickle"):
        try:
            versions.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for _, path in sorted(versions, reverse=True)[count:]:
        path.unlink(missing_ok=True)


def folder_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes under a folder (a catalog, a local schema folder)."""
    if not folder.is_dir():
        return MISSING
    parts = []
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.stat()
        except OSError:
            continue
        parts.append(f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}")
    return _sha256("\n".join(parts).encode())


def content_fingerprint(folder: Path) -> str:
    """Names and contents under a folder: the same in every checkout of a revision."""
    if not folder.is_dir():
        return MISSING
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(_sha256(path.read_bytes()).encode())
    return digest.hexdigest()


def settings_fingerprint(settings: Settings) -> str:
    """Every setting (the cache folder aside), the model catalogs and local schema folders.
    Folders of the repository count by content and paths in it relative to it, so that a git
    worktree of another revision (`tools/diff`) shares the entries of identical files."""
    root = settings.repo_root.resolve()
    fields = {k: v for k, v in vars(settings).items() if k not in ("cache_dir", "repo_root")}
    local = settings.local_schema_folders()
    catalogs = [settings.repo_root / "catalog",
                *(Path(p) for p in os.environ.get(ENV_MODEL_CATALOG, "").split(os.pathsep) if p)]

    def folder(path: Path) -> str:
        inside = path.resolve() == root or root in path.resolve().parents
        return content_fingerprint(path) if inside else folder_fingerprint(path)

    described = repr(sorted(fields.items(), key=lambda kv: kv[0])).replace(str(root), "<repo>")
    return _sha256("\0".join([described, os.environ.get(ENV_MODEL_CATALOG, ""),
                              *(folder(p) for p in (*local, *catalogs))]).encode())


def render_cache(settings: Settings, renderer_command: tuple[str, ...]) -> RenderCache | None:
    """The cache for one run, or None when VLLM_GITOPS_NO_CACHE=1."""
    if os.environ.get(ENV_NO_CACHE) == "1":
        return None
    fingerprint = _sha256("\0".join((code_fingerprint(), binary_fingerprint(renderer_command),
                                     settings_fingerprint(settings))).encode())
    return RenderCache(settings.cache_dir, settings.repo_root, fingerprint)


# ---------------------------------------------------------------- checked targets


@dataclass
class CheckedTarget:
    """A target's findings and resource count, as a run found them."""

    findings: list[Any]
    resources: int
    missing_schemas: list[tuple[str, str]]  # (apiVersion, kind) no location had
    rendered: list[str] = field(default_factory=list)  # repo-relative folders (Scope.rendered)


class CheckCache:
    """Whole-target results on top of a RenderCache (same folder, same fingerprint)."""

    def __init__(self, renders: RenderCache, schema_found: Callable[[str, str], bool],
                 closures: dict[Path, Closure] | None = None) -> None:
        self.renders = renders
        self.schema_found = schema_found  # does a location have this schema now?
        self._probed: dict[tuple[str, str], bool] = {}
        self._closures = {} if closures is None else closures  # walked once per run

    def inputs(self, target_path: Path) -> Inputs | None:
        return self.renders.inputs_of(scope_closure(target_path, self.renders.repo_root,
                                                    self._closures))

    def get(self, name: str, inputs: Inputs | None) -> CheckedTarget | None:
        entry = self.renders.get_named(f"check:{name}", inputs)
        if not isinstance(entry, CheckedTarget):
            return None
        for key in entry.missing_schemas:  # offline then, maybe online now
            if key not in self._probed:
                self._probed[key] = self.schema_found(*key)
            if self._probed[key]:
                return None
        return entry

    def put(self, name: str, inputs: Inputs | None, entry: CheckedTarget) -> None:
        self.renders.put_named(f"check:{name}", inputs, entry)

"""All-or-nothing changes to the repository.

A change is first made in a staging copy of the repository (a temporary folder): routes are
regenerated and the environment validated there, so the real tree is untouched until the
change is known to be good. `apply` then writes it: a model folder appears or disappears by
one rename, each file is replaced atomically (fileio.write_atomic) in its folder (created when
missing), and any error or Ctrl-C part-way restores every file and folder it had touched.

Tests inject an interruption with VLLM_GITOPS_NEW_MODEL_INTERRUPT_AFTER=N (raise
KeyboardInterrupt after N steps of `apply`).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic

INTERRUPT_HOOK = "VLLM_GITOPS_NEW_MODEL_INTERRUPT_AFTER"
_NOT_COPIED = (".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache",
               ".ruff_cache")


@dataclass
class ChangeSet:
    """Files to write (text) or delete (None), and model folders replaced as a whole."""

    files: dict[str, str | None] = field(default_factory=dict)
    folders: dict[str, dict[str, str] | None] = field(default_factory=dict)  # None: remove

    def paths(self) -> list[str]:
        out = list(self.files)
        for folder, files in self.folders.items():
            out += [f"{folder}/{name}" for name in files] if files else [f"{folder}/"]
        return sorted(out)


def read_text(root: Path, rel: str) -> str | None:
    path = root / rel
    return path.read_text(encoding="utf-8") if path.is_file() else None


def folder_files(root: Path, rel: str) -> dict[str, str] | None:
    """The files of a folder (name -> text), None when it does not exist."""
    folder = root / rel
    if not folder.is_dir():
        return None
    return {p.name: p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(folder.iterdir()) if p.is_file()}


def effective(changes: ChangeSet, root: Path) -> ChangeSet:
    """Only what differs from the repository as it is."""
    out = ChangeSet()
    for rel, text in changes.files.items():
        if read_text(root, rel) != text:
            out.files[rel] = text
    for rel, files in changes.folders.items():
        if folder_files(root, rel) != files:
            out.folders[rel] = files
    return out


def unified_diff(changes: ChangeSet, root: Path) -> str:
    chunks = []
    for rel in sorted(changes.files):
        chunks.append(_diff(rel, read_text(root, rel), changes.files[rel]))
    for rel in sorted(changes.folders):
        before = folder_files(root, rel) or {}
        after = changes.folders[rel] or {}
        for name in sorted(set(before) | set(after)):
            chunks.append(_diff(f"{rel}/{name}", before.get(name), after.get(name)))
    return "".join(chunks)


def _diff(rel: str, before: str | None, after: str | None) -> str:
    return "".join(difflib.unified_diff(
        (before or "").splitlines(keepends=True), (after or "").splitlines(keepends=True),
        fromfile=f"a/{rel}" if before is not None else "/dev/null",
        tofile=f"b/{rel}" if after is not None else "/dev/null"))


# ---------------------------------------------------------------- staging


@contextmanager
def staging_copy(root: Path) -> Iterator[Path]:
    """A private copy of the repository (without .git, .venv and caches), removed after."""
    # Resolved: tools compare paths of the copy with its (resolved) repository root.
    parent = Path(tempfile.mkdtemp(prefix="vllm-gitops-new-model-")).resolve()
    try:
        copy = parent / "repo"
        shutil.copytree(root, copy, symlinks=True,
                        ignore=shutil.ignore_patterns(*_NOT_COPIED))
        yield copy
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def write_plain(root: Path, changes: ChangeSet) -> None:
    """Apply a change set to a staging copy (no journal needed: the copy is thrown away)."""
    for rel, files in changes.folders.items():
        shutil.rmtree(root / rel, ignore_errors=True)
        for name, text in (files or {}).items():
            (root / rel).mkdir(parents=True, exist_ok=True)
            (root / rel / name).write_text(text, encoding="utf-8")
    for rel, content in changes.files.items():
        if content is None:
            (root / rel).unlink(missing_ok=True)
        else:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(content, encoding="utf-8")


# ---------------------------------------------------------------- apply with rollback


class _Journal:
    """What `apply` did so far, to undo it in reverse order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.undo: list[tuple[str, Path, Path | str | None]] = []
        self.trash: list[Path] = []
        self.steps = 0
        hook = os.environ.get(INTERRUPT_HOOK, "")
        self.interrupt_after = int(hook) if hook.isdigit() else None

    def step(self) -> None:
        self.steps += 1
        if self.interrupt_after is not None and self.steps >= self.interrupt_after:
            raise KeyboardInterrupt(f"{INTERRUPT_HOOK}={self.interrupt_after}")

    def rollback(self) -> None:
        for action, path, saved in reversed(self.undo):
            if action == "restore-file":
                if saved is None:
                    path.unlink(missing_ok=True)
                else:
                    write_atomic(path, str(saved))
            elif action == "remove-folder":
                shutil.rmtree(path, ignore_errors=True)
            elif action == "remove-empty-folder":
                with contextlib.suppress(OSError):
                    path.rmdir()
            elif action == "rename-back" and isinstance(saved, Path):
                os.replace(saved, path)
        for temp in self.trash:
            shutil.rmtree(temp, ignore_errors=True)


def apply(root: Path, changes: ChangeSet) -> None:
    """Write a change set into the repository, all or nothing (see the module docstring)."""
    journal = _Journal(root)
    try:
        for rel, files in sorted(changes.folders.items()):
            _swap_folder(journal, root / rel, files)
        for rel, content in sorted(changes.files.items()):
            path = root / rel
            before = path.read_text(encoding="utf-8") if path.is_file() else None
            if content is not None:
                _make_folders(journal, path.parent)
            journal.undo.append(("restore-file", path, before))
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, content)
            journal.step()
    except BaseException as exc:
        journal.rollback()
        if isinstance(exc, KeyboardInterrupt):
            raise ToolError("interrupted: every file was restored, nothing changed") from None
        if isinstance(exc, ToolError):
            raise ToolError(f"{exc}; every file was restored, nothing changed") from None
        raise
    for old in journal.trash:
        shutil.rmtree(old, ignore_errors=True)


def _make_folders(journal: _Journal, folder: Path) -> None:
    """Create `folder` and its missing parents; rollback removes them (when empty)."""
    for missing in reversed([p for p in (folder, *folder.parents) if not p.exists()]):
        try:
            missing.mkdir()
        except OSError as exc:
            raise ToolError(f"cannot create folder {missing}: {exc.strerror}") from None
        journal.undo.append(("remove-empty-folder", missing, None))


def _swap_folder(journal: _Journal, final: Path, files: dict[str, str] | None) -> None:
    """Replace (or remove) a folder by renames: readers see the old or the new one."""
    tag = f"{os.getpid()}"
    new: Path | None = None
    if files is not None:
        final.parent.mkdir(parents=True, exist_ok=True)
        new = final.parent / f".{final.name}.new-{tag}"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        journal.trash.append(new)
        for name, text in files.items():
            (new / name).write_text(text, encoding="utf-8")
        journal.step()
    if final.exists():
        old = final.parent / f".{final.name}.old-{tag}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        journal.undo.append(("rename-back", final, old))
        journal.trash.append(old)
        journal.step()
    if new is not None:
        os.replace(new, final)
        journal.undo.append(("remove-folder", final, None))
        journal.step()

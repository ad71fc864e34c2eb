"""`--changed-since`: the files git reports, and a selection of targets that is never too small.

The selection is proved against real renders: every file under base/, overlays/ and clusters/
is changed in turn (in a way that changes what kustomize renders from it), and every target
the selection leaves out must render exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from pr_support import commit_all, git, make_repo

from vllm_gitops.changes import (
    changed_files,
    kustomization_closure,
    scope_closure,
    select_targets,
)
from vllm_gitops.errors import ToolError
from vllm_gitops.kustomization import KUSTOMIZATION_NAMES
from vllm_gitops.pipeline import ScopeLoader, Target, discover_targets
from vllm_gitops.settings import Settings, load_settings

MARK = "pr-test.example.org/changed"


def settings_of(repo: Path, cache: Path) -> Settings:
    return load_settings(repo).with_overrides(cache_dir=cache)


def rendered(settings: Settings, targets: list[Target]) -> dict[str, list[str]]:
    """Each target's scope as comparable text: every document and every render finding."""
    loader = ScopeLoader(settings, use_cache=False)  # the cache trusts the closure under test
    loader.prefetch([t.path for t in targets])
    out = {}
    for target in targets:
        scope = loader.load(target)
        out[target.name] = sorted(
            [yaml.dump(r.doc, Dumper=yaml.CSafeDumper, sort_keys=True) for r in scope.resources]
            + [f"{f.rule}: {f.message}" for f in scope.findings])
    return out


def mutate(path: Path) -> None:
    """Change a file so that whatever reads it renders differently."""
    text = path.read_text(errors="replace")
    try:
        docs = list(yaml.load_all(text, Loader=yaml.CSafeLoader))
    except yaml.YAMLError:
        docs = []
    first = docs[0] if docs and isinstance(docs[0], dict) else None
    is_kustomization = first is not None and (
        path.name in KUSTOMIZATION_NAMES
        or str(first.get("apiVersion", "")).startswith("kustomize.config"))
    if first is not None and is_kustomization:
        first.setdefault("commonAnnotations", {})[MARK] = "1"
    elif first is not None and isinstance(first.get("metadata"), dict):
        first["metadata"].setdefault("annotations", {})[MARK] = "1"
    else:  # data read by a generator (or not YAML): any byte counts
        path.write_text(text + "\n# changed\n")
        return
    path.write_text(yaml.dump_all(docs, Dumper=yaml.CSafeDumper, sort_keys=False))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Settings, list[Target],
                                                             dict[str, list[str]]]:
    repo = make_repo(tmp_path_factory.mktemp("changes") / "repo")
    settings = settings_of(repo, repo.parent / "cache")
    targets = discover_targets(settings)
    return repo, settings, targets, rendered(settings, targets)


def manifest_files(repo: Path) -> list[str]:
    listed = git(repo, "ls-files", "--", "base", "overlays", "clusters")
    return [name for name in listed.splitlines() if name]


def test_selection_is_never_too_small(world: tuple[Path, Settings, list[Target],
                                                   dict[str, list[str]]]) -> None:
    """For each target: change EVERY manifest file outside its computed closure at once; the
    target must render exactly as before (so a change to any of those files cannot affect it,
    and leaving it out of the selection is right). Then change the files inside it: it must
    render differently (the proof is not vacuous)."""
    repo, settings, targets, baseline = world
    files = [repo / name for name in manifest_files(repo)]
    assert len(files) > 50
    for target in targets:
        closure = scope_closure(target.path, repo)
        inside = {f for f in files if closure.touches([f])}
        outside = [f for f in files if f not in inside]
        assert inside and outside, target.name
        with mutated(outside):
            now = rendered(settings, [target])
        assert now == {target.name: baseline[target.name]}, (
            f"{target.name} changed although none of its inputs did: the closure misses a file")
        if baseline[target.name]:  # (an empty placeholder, e.g. flux-system, stays empty)
            with mutated(sorted(inside)):
                now = rendered(settings, [target])
            assert now != {target.name: baseline[target.name]}, target.name


@contextmanager
def mutated(paths: list[Path]) -> Iterator[None]:
    originals = {path: path.read_bytes() for path in paths}
    try:
        for path in paths:
            mutate(path)
        yield
    finally:
        for path, data in originals.items():
            path.write_bytes(data)


def test_a_model_edit_selects_its_environment_only(world: tuple[Path, Settings, list[Target],
                                                                 dict[str, list[str]]]) -> None:
    repo, settings, targets, _ = world
    folders = {t.name: t.path for t in targets}
    model = repo / "overlays/prod/models/qwen3/model.yaml"
    chosen = select_targets(folders, settings, {model}).names
    assert chosen == {"overlays/prod/models/qwen3", "overlays/prod/models", "overlays/prod",
                      "clusters/prod/flux", "clusters/prod/argocd", "clusters/prod/flux/models",
                      "clusters/prod/argocd/models"}
    base = select_targets(folders, settings, {repo / "base/vllm/statefulset.yaml"})
    assert {"base/vllm", "clusters/dev/flux", "overlays/staging"} <= base.names
    assert "base/litellm" not in base.names


@pytest.mark.parametrize("name", ["vllm-gitops.yaml", "tools/vllm_gitops/new.py",
                                  "catalog/models/x/config.json", "pyproject.toml"])
def test_settings_and_tool_changes_recheck_everything(
        world: tuple[Path, Settings, list[Target], dict[str, list[str]]], name: str) -> None:
    repo, settings, targets, _ = world
    selection = select_targets({t.name: t.path for t in targets}, settings, {repo / name})
    assert selection.everything and selection.names == {t.name for t in targets}
    assert name in selection.reason


def test_changed_files_from_git(tmp_path: Path) -> None:
    """Committed, staged, unstaged, deleted, renamed and untracked changes all count."""
    repo = make_repo(tmp_path / "repo")
    (repo / "overlays/dev/apps/committed.yaml").write_text("a: 1\n")
    commit_all(repo, "one more")
    (repo / "overlays/dev/apps/staged.yaml").write_text("a: 1\n")
    git(repo, "add", "overlays/dev/apps/staged.yaml")
    (repo / "base/vllm/service.yaml").write_text("# edited\n")
    (repo / "base/vllm/poddisruptionbudget.yaml").unlink()
    git(repo, "mv", "base/litellm/models.yaml", "base/litellm/renamed.yaml")
    (repo / "clusters/new.yaml").write_text("a: 1\n")
    (repo / ".gitignore").write_text("ignored.yaml\n")
    (repo / "ignored.yaml").write_text("a: 1\n")
    found = {p.relative_to(repo).as_posix() for p in changed_files(repo, "HEAD~1")}
    assert found == {"overlays/dev/apps/committed.yaml", "overlays/dev/apps/staged.yaml",
                     "base/vllm/service.yaml", "base/vllm/poddisruptionbudget.yaml",
                     "base/litellm/models.yaml", "base/litellm/renamed.yaml",
                     "clusters/new.yaml", ".gitignore"}
    with pytest.raises(ToolError, match="unknown git revision 'nope'"):
        changed_files(repo, "nope")


def test_a_new_file_named_by_a_kustomization_is_in_its_closure(tmp_path: Path) -> None:
    """Missing files a kustomization names, and a second kustomization name, count."""
    folder = tmp_path / "k"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text("resources: [a.yaml, sub]\n")
    closure = kustomization_closure(folder)
    assert folder / "a.yaml" in closure.files and folder / "kustomization.yml" in closure.files
    assert closure.touches([folder / "sub" / "anything.yaml"])  # a plain folder: any file
    assert not closure.touches([tmp_path / "elsewhere.yaml"])
    (folder / "real.yaml").write_text("a: 1\n")
    (folder / "a.yaml").symlink_to(folder / "real.yaml")
    assert folder / "real.yaml" in kustomization_closure(folder).files  # a link's target too

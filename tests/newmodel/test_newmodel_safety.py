"""tools/new-model never leaves a half-written change and refuses bad input with exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from newmodel_support import copy_repo, new_model, snapshot

from support import REPO_ROOT, run_tool
from vllm_gitops.errors import ToolError
from vllm_gitops.newmodel.edit import (
    add_resource,
    dump,
    load_mapping,
    remove_resource,
    set_comment_before,
)
from vllm_gitops.newmodel.transaction import INTERRUPT_HOOK, ChangeSet, apply


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy for the tests that must not write anything (they check it)."""
    return copy_repo(tmp_path_factory.mktemp("newmodel") / "repo")


@pytest.mark.parametrize(("args", "expected"), [
    (("llama", "--env", "dev"), "not of the form org/name"),
    (("../../etc/passwd", "--env", "dev"), "not of the form org/name"),
    (("Qwen/Qwen3-8B", "--env", "qa"), "unknown environment 'qa'"),
    (("Qwen/Qwen3-8B", "--env", "../prod"), "unknown environment"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--name", "Qwen_8B"), "DNS-1123"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--name", "../../evil"), "DNS-1123"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--name", "q" * 50), "Kubernetes allows 63"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--name", "q" * 48), "controller-revision-hash"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--route", "my route"), "--route"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--replicas", "2", "--min-replicas", "1"), "not both"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--min-replicas", "3", "--max-replicas", "2"),
     "--max-replicas"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--tensor-parallel-size", "3"), "not possible"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--instance-type", "m5.large"), "unknown instance"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--gpu-family", "tpu"), "unknown GPU family"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--model-config", "missing.json"), "no such file"),
    (("Qwen/Qwen3-8B", "--env", "dev", "--remove"), "there is no model"),
    (("acme/unknown-model", "--env", "dev"),
     "catalog/models/acme/unknown-model/config.json"),
])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
        repo: Path, args: tuple[str, ...], expected: str) -> None:
    before = snapshot(repo)
    run = new_model(repo, *args)
    assert run.code == 2, run.output
    assert expected in run.stderr and run.stderr.startswith("error: "), run.stderr
    assert "Traceback" not in run.output
    assert snapshot(repo) == before


def test_unknown_model_says_how_to_add_it(repo: Path) -> None:
    run = new_model(repo, "acme/unknown-model", "--env", "dev")
    assert "--model-config" in run.stderr and "config.json" in run.stderr


def test_help_shows_an_example_for_each_option() -> None:
    run = run_tool("vllm_gitops.cli.new_model", "--help", env={"COLUMNS": "200"})
    assert run.code == 0, run.output
    options = ["--env", "--gpu-family", "--instance-type", "--tensor-parallel-size",
               "--max-model-len", "--replicas", "--min-replicas", "--max-replicas",
               "--served-model-name", "--route", "--name", "--model-config", "--dry-run",
               "--force", "--remove", "--keep-on-error"]
    text = re.sub(r"-\s+", "-", " ".join(run.stdout.split()))  # undo wrapping at hyphens
    for option in options:
        assert f"e.g. {option}" in text or f"with {option}" in text, option
    assert "tools/new-model Qwen/Qwen3-8B --env dev" in text


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 3, 6])
def test_interrupted_write_restores_everything(tmp_path: Path, steps: int) -> None:
    """Ctrl-C part-way through the writes (injected after N steps): no folder, no sync file,
    no list entry, no route, no NodePool is left behind, and no hidden temporary folder
    either."""
    repo = copy_repo(tmp_path / "repo")
    before = snapshot(repo)
    run = new_model(repo, "meta-llama/Llama-3.1-70B-Instruct", "--env", "prod",
                    env={INTERRUPT_HOOK: str(steps)})
    assert run.code == 2, run.output
    assert "interrupted" in run.stderr and "nothing changed" in run.stderr
    assert snapshot(repo) == before


# ---------------------------------------------------------------- in-process units


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_apply_rolls_back_at_every_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    (root / "models/old").mkdir(parents=True)
    (root / "models/old/model.yaml").write_text("old\n")
    (root / "list.yaml").write_text("resources: [a]\n")
    changes = ChangeSet(files={"list.yaml": "resources: [a, b]\n", "new.yaml": "x: 1\n",
                               "fresh/models/b.yaml": "b\n"},  # in a folder it creates
                        folders={"models/old": {"model.yaml": "new\n", "extra.yaml": "e\n"},
                                 "models/b": {"kustomization.yaml": "k\n"}})
    before = _tree(root)
    for step in range(1, 9):
        monkeypatch.setenv(INTERRUPT_HOOK, str(step))
        try:
            apply(root, changes)
        except ToolError as exc:
            assert "interrupted" in str(exc)
            assert _tree(root) == before and not (root / "fresh").exists(), step
            continue
        break  # more steps than the change has: it completed
    monkeypatch.delenv(INTERRUPT_HOOK)
    apply(root, ChangeSet(files={"list.yaml": "resources: [a, b]\n"},
                          folders={"models/old": None}))
    assert _tree(root) == {"list.yaml": "resources: [a, b]\n"}


@pytest.mark.parametrize(("path", "entries"), [
    ("overlays/prod/models/kustomization.yaml", ("zz", "aa", "qwen3")),
    ("clusters/prod/flux/models/kustomization.yaml", ("zz.yaml", "aa.yaml", "qwen3.yaml")),
])
def test_list_edits_keep_comments_and_order(path: str, entries: tuple[str, str, str]) -> None:
    last, first, present = entries
    text = (REPO_ROOT / path).read_text()
    added = add_resource(add_resource(text, last, path, ""), first, path, "")
    lines = added.splitlines()
    listed = [line for line in lines if line.startswith("  - ")]
    assert listed == sorted(listed) and f"  - {first}" in listed and f"  - {last}" in listed
    assert [c for c in lines if c.startswith("#")] == [
        c for c in text.splitlines() if c.startswith("#")]
    restored = remove_resource(remove_resource(added, first, path), last, path)
    assert restored == text
    assert add_resource(text, present, path, "") == text


@pytest.mark.parametrize(("before", "after"), [
    # after a scalar: the block above the key goes, an end-of-line comment stays
    ("a: 1  # eol\n  # old\n  # old too\nb: 2\n", "a: 1  # eol\n# new\nb: 2\n"),
    # a comment above a blank line is not the key's
    ("a: 1\n# about a\n\n# old\nb: 2\n", "a: 1\n# about a\n\n# new\nb: 2\n"),
    # after a nested list: ruamel keeps the block on its last item
    ("a:\n  - x\n# old\nb: 2\n", "a:\n  - x\n# new\nb: 2\n"),
    ("a:\n  c: d\nb: 2\n", "a:\n  c: d\n# new\nb: 2\n"),
    # above the first key: added below what is there
    ("# head\nb: 2\na: 1\n", "# head\n# new\nb: 2\na: 1\n"),
])
def test_comment_before_a_key(before: str, after: str) -> None:
    data = load_mapping(before, "x.yaml")
    set_comment_before(data, "b", ["new"], column=0)
    assert dump(data) == after


@pytest.mark.slow
def test_model_outside_the_catalog_with_model_config(repo: Path, tmp_path: Path) -> None:
    """--model-config sizes a model the catalog does not know (dry run: nothing written)."""
    config = tmp_path / "config.json"
    config.write_text((REPO_ROOT / "catalog/models/Qwen/Qwen3-0.6B/config.json").read_text())
    before = snapshot(repo)
    run = new_model(repo, "acme/tiny-chat", "--env", "dev", "--model-config", str(config),
                    "--dry-run")
    assert run.code == 0, run.output
    assert "+            - acme/tiny-chat" in run.stdout
    assert "--model-config <config.json>" in run.stdout  # the command that recreates it
    # ... and the config joins the catalog, so tools/plan and the policies know the model.
    assert "+++ b/catalog/models/acme/tiny-chat/config.json" in run.stdout
    assert snapshot(repo) == before

"""Bad input ends in a clear finding with file and line (or exit 2 with a message): never a
traceback, never a hang, never a read outside the repository, never the network.

Every case is built on disk in a scratch repository; files given directly (a folder of
YAML) and the same files reached through a kustomization go through different code paths,
so both are checked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from validate_support import (
    CliRun,
    assert_no_crash,
    by_file,
    keys,
    make_scratch_repo,
    run_validate,
    write,
)

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
"""
BROKEN = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a: b\n"  # line 4
DUPLICATE = (CONFIG_MAP.format(name="first") + "---\n" + CONFIG_MAP.format(name="second")
             + 'data:\n  replicas: "1"\n  replicas: "2"\n')  # the second key: line 12
NOT_UTF8 = (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latin\ndata:\n"
            b'  city: "Z\xfcrich"\n')  # Latin-1, line 6
BINARY = b"apiVersion: v1\nkind: ConfigMap\x00\x01\x02\n"
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True))
HUGE_BYTES = 8 * 1024 * 1024 + 1024


def huge_yaml() -> str:
    """A valid ConfigMap, just over 8 MiB: refused by size, not by content."""
    return CONFIG_MAP.format(name="huge") + 'data:\n  blob: "' + "x" * HUGE_BYTES + '"\n'


# file name -> content; (rule, line or None for a whole-file problem, message fragment)
BAD_FILES: dict[str, tuple[str | bytes, str, int | None, str]] = {
    "broken.yaml": (BROKEN, "yaml/invalid", 4, "invalid YAML"),
    "duplicate.yaml": (DUPLICATE, "yaml/invalid", 12, "duplicate key 'replicas'"),
    "not-utf8.yaml": (NOT_UTF8, "yaml/invalid", 6, "UTF-8"),
    "binary.yaml": (BINARY, "yaml/invalid", None, "binary"),
    "huge.yaml": ("", "yaml/invalid", None, "limit"),  # written separately (size)
}
BOMB_FILE = "bomb.yaml"


def write_bad_files(folder: Path) -> None:
    for name, (content, *_) in BAD_FILES.items():
        write(folder / name, content)
    write(folder / "huge.yaml", huge_yaml())
    write(folder / BOMB_FILE, BOMB)
    write(folder / "ok.yaml", CONFIG_MAP.format(name="ok"))


def check_bad_file_findings(run: CliRun, folder: str) -> None:
    assert_no_crash(run)
    findings = run.json()["findings"]
    for name, (_, rule, line, fragment) in BAD_FILES.items():
        [finding] = by_file(findings, f"{folder}/{name}")
        assert finding["rule"] == rule, finding
        assert finding["severity"] == "error"
        assert fragment in finding["message"], finding
        if line is None:  # a whole-file problem: no line, or the first
            assert finding["line"] in (None, 1), finding
        else:
            assert finding["line"] == line, finding
    [bomb] = by_file(findings, f"{folder}/{BOMB_FILE}")
    assert bomb["rule"] == "yaml/invalid"
    assert "alias" in bomb["message"]
    assert bomb["line"] in range(1, 10)  # somewhere in the bomb's 9 lines
    assert len(findings) == len(BAD_FILES) + 1
    assert run.code == 1


@pytest.fixture(scope="module")
def bad_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_scratch_repo(tmp_path_factory.mktemp("bad-inputs") / "repo")
    write_bad_files(repo / "plain")
    write_bad_files(repo / "kust")
    resources = "".join(f"  - {name}\n" for name in [*BAD_FILES, BOMB_FILE, "ok.yaml"])
    write(repo / "kust" / "kustomization.yaml", "resources:\n" + resources)
    return repo


@pytest.fixture(scope="module")
def plain_run(bad_repo: Path, crd_schemas: Path,
              tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    return run_validate("plain", "-f", "json", cwd=bad_repo, crd_schemas=crd_schemas,
                        cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def kustomize_run(bad_repo: Path, crd_schemas: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    return run_validate("kust", "-f", "json", cwd=bad_repo, crd_schemas=crd_schemas,
                        cache_dir=tmp_path_factory.mktemp("cache"))


def test_bad_files_in_a_folder_of_yaml(plain_run: CliRun) -> None:
    check_bad_file_findings(plain_run, "plain")
    assert plain_run.json()["summary"]["resources"] == 1  # ok.yaml


def test_bad_files_named_by_a_kustomization(kustomize_run: CliRun) -> None:
    """Caught before kustomize runs (kustomize would report them badly or blow up)."""
    check_bad_file_findings(kustomize_run, "kust")
    rules = {f["rule"] for f in kustomize_run.json()["findings"]}
    assert "kustomize/render-failed" not in rules
    assert kustomize_run.json()["summary"]["resources"] == 0


def test_huge_file_is_really_over_the_limit(bad_repo: Path) -> None:
    size = (bad_repo / "plain" / "huge.yaml").stat().st_size
    assert 8 * 1024 * 1024 < size < 9 * 1024 * 1024


@pytest.mark.parametrize(
    ("content", "line"),
    [("- a\n- b\n", 1), ("just a scalar\n", 1), ("# a comment\n---\n42\n", 3)],
    ids=["list", "scalar", "number-after-comment"],
)
def test_document_that_is_not_an_object(validate: Callable[..., Any], scratch_repo: Path,
                                        content: str, line: int) -> None:
    write(scratch_repo / "doc.yaml", content)
    run = validate("doc.yaml", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert keys(run.json()["findings"]) == {("yaml/not-a-resource", "doc.yaml", line)}
    assert run.code == 1


def test_document_list_inside_a_kustomization_is_a_render_failure(
        validate: Callable[..., Any], scratch_repo: Path) -> None:
    write(scratch_repo / "app" / "kustomization.yaml", "resources:\n  - list.yaml\n")
    write(scratch_repo / "app" / "list.yaml", "- a\n- b\n")
    run = validate("app", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    [finding] = run.json()["findings"]
    assert (finding["rule"], finding["file"]) == ("kustomize/render-failed",
                                                  "app/kustomization.yaml")
    assert "list.yaml" in finding["message"]
    assert run.code == 1


def test_empty_files_are_no_resources_and_exit_0(validate: Callable[..., Any],
                                                 scratch_repo: Path) -> None:
    write(scratch_repo / "empty" / "empty.yaml", "")
    write(scratch_repo / "empty" / "comments.yml", "# nothing here\n---\n---\n")
    run = validate("empty", "empty/empty.yaml", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.json() == {"summary": {"errors": 0, "warnings": 0, "targets": 1, "scopes": 1,
                                      "resources": 0}, "findings": []}
    assert run.code == 0


def test_broken_kustomization_file(validate: Callable[..., Any], scratch_repo: Path) -> None:
    write(scratch_repo / "dup" / "kustomization.yaml",
          "resources:\n  - cm.yaml\nresources:\n  - cm.yaml\n")
    write(scratch_repo / "dup" / "cm.yaml", CONFIG_MAP.format(name="x"))
    write(scratch_repo / "seq" / "kustomization.yaml", "- cm.yaml\n")
    run = validate("dup", "seq", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert keys(run.json()["findings"]) == {
        ("yaml/invalid", "dup/kustomization.yaml", 3),
        ("kustomize/invalid", "seq/kustomization.yaml", 1),
    }
    assert run.code == 1


# --- kustomizations that reach outside the repository or onto the network -------------

OUTSIDE_NAME = "outside-config"
ESCAPES = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../outside
  - ../../outside/cm.yaml
  - link-file.yaml
  - link-dir
  - missing.yaml
  - missing-dir
  - /etc/hostname
  - ok.yaml
patches:
  - path: ../../outside/patch.yaml
configMapGenerator:
  - name: leak
    files:
      - ../../outside/secret.txt
"""
ESCAPE_FINDINGS = {
    ("kustomize/path-outside-repo", 4),
    ("kustomize/path-outside-repo", 5),
    ("kustomize/path-outside-repo", 6),
    ("kustomize/path-outside-repo", 7),
    ("kustomize/missing-path", 8),
    ("kustomize/missing-path", 9),
    ("kustomize/path-outside-repo", 10),
    ("kustomize/path-outside-repo", 13),
    ("kustomize/path-outside-repo", 17),
}


def make_outside(tmp: Path) -> Path:
    """A valid kustomization next to (outside) the repository: kustomize would render it."""
    outside = tmp / "outside"
    write(outside / "kustomization.yaml", "resources:\n  - cm.yaml\n")
    write(outside / "cm.yaml", CONFIG_MAP.format(name=OUTSIDE_NAME))
    write(outside / "patch.yaml", CONFIG_MAP.format(name="ok") + "data:\n  leaked: yes\n")
    write(outside / "secret.txt", "s3cr3t\n")
    return outside


def test_paths_leaving_the_repository(validate: Callable[..., Any], scratch_repo: Path) -> None:
    outside = make_outside(scratch_repo.parent)
    app = scratch_repo / "app"
    write(app / "kustomization.yaml", ESCAPES)
    write(app / "ok.yaml", CONFIG_MAP.format(name="ok"))
    (app / "link-file.yaml").symlink_to(os.path.relpath(outside / "cm.yaml", app))
    (app / "link-dir").symlink_to(os.path.relpath(outside, app))
    run = validate("app", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    findings = run.json()["findings"]
    assert {(f["rule"], f["line"]) for f in findings} == ESCAPE_FINDINGS
    assert {f["file"] for f in findings} == {"app/kustomization.yaml"}
    by_line = {f["line"]: f["message"] for f in findings}
    assert "'../../outside' resolves outside the repository" in by_line[4]
    assert "'link-dir'" in by_line[7]
    assert "'missing.yaml' does not exist" in by_line[8]
    assert "absolute path '/etc/hostname'" in by_line[10]
    # nothing from outside was rendered or read into the report
    assert run.json()["summary"]["resources"] == 0
    assert OUTSIDE_NAME not in run.stdout
    assert "s3cr3t" not in run.stdout
    assert run.code == 1


def test_escape_in_a_nested_base_is_reported_where_it_is_written(
        validate: Callable[..., Any], scratch_repo: Path) -> None:
    make_outside(scratch_repo.parent)
    write(scratch_repo / "overlay" / "kustomization.yaml", "resources:\n  - ../base\n")
    write(scratch_repo / "base" / "kustomization.yaml",
          "resources:\n  - cm.yaml\n  - ../../outside\n  - github.com/org/repo//path?ref=v1\n")
    write(scratch_repo / "base" / "cm.yaml", CONFIG_MAP.format(name="base"))
    run = validate("overlay", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    findings = run.json()["findings"]
    assert keys(findings) == {("kustomize/path-outside-repo", "base/kustomization.yaml", 3),
                              ("kustomize/remote-base", "base/kustomization.yaml", 4)}
    assert {f["target"] for f in findings} == {"overlay"}
    assert run.code == 1


# Any network use would go to a closed local port and fail: the test shows none is tried.
NO_NETWORK = dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
                           "https_proxy", "all_proxy"), "http://127.0.0.1:9")


@pytest.mark.parametrize("url", ["github.com/org/repo//path?ref=v1",
                                 "https://example.com/x.yaml",
                                 "git@github.com:org/repo.git//deploy?ref=main"])
def test_remote_resources_are_refused_without_network(validate: Callable[..., Any],
                                                      scratch_repo: Path, url: str) -> None:
    write(scratch_repo / "app" / "kustomization.yaml",
          f"resources:\n  - cm.yaml\n  - {url}\n")
    write(scratch_repo / "app" / "cm.yaml", CONFIG_MAP.format(name="local"))
    run = validate("app", "-f", "json", cwd=scratch_repo, env=NO_NETWORK)
    assert_no_crash(run)
    [finding] = run.json()["findings"]
    assert (finding["rule"], finding["file"], finding["line"]) == (
        "kustomize/remote-base", "app/kustomization.yaml", 3)
    assert url in finding["message"]
    assert "allowRemoteBases" in finding["message"]  # says how to permit it
    assert run.code == 1


# --- symlinks outside kustomize ------------------------------------------------------

def test_symlinked_folder_in_a_folder_of_yaml_is_not_followed(
        validate: Callable[..., Any], scratch_repo: Path) -> None:
    outside = make_outside(scratch_repo.parent)
    write(scratch_repo / "docs" / "ok.yaml", CONFIG_MAP.format(name="ok"))
    (scratch_repo / "docs" / "outside-dir").symlink_to(outside, target_is_directory=True)
    run = validate("docs", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert OUTSIDE_NAME not in run.stdout
    assert run.json()["summary"]["resources"] == 1


def test_symlinked_file_in_a_folder_of_yaml_is_not_read(validate: Callable[..., Any],
                                                        scratch_repo: Path) -> None:
    outside = make_outside(scratch_repo.parent)
    write(outside / "bad.yaml", CONFIG_MAP.format(name=OUTSIDE_NAME) + "  bogus: 1\n")
    write(scratch_repo / "docs" / "ok.yaml", CONFIG_MAP.format(name="ok"))
    (scratch_repo / "docs" / "link.yaml").symlink_to(outside / "bad.yaml")
    run = validate("docs", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    [finding] = run.json()["findings"]  # not the outside file's schema error
    assert finding["rule"].endswith("/path-outside-repo")
    assert finding["severity"] == "error"
    assert finding["file"] == "docs/link.yaml"
    assert "outside the repository" in finding["message"]
    assert run.json()["summary"]["resources"] == 1
    assert str(outside) not in run.stdout


def test_kustomization_file_symlinked_outside(validate: Callable[..., Any],
                                              scratch_repo: Path) -> None:
    outside = make_outside(scratch_repo.parent)
    (scratch_repo / "app").mkdir()
    (scratch_repo / "app" / "kustomization.yaml").symlink_to(outside / "kustomization.yaml")
    write(scratch_repo / "app" / "cm.yaml", CONFIG_MAP.format(name="inside"))
    run = validate("app", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert [(f["rule"], f["file"]) for f in run.json()["findings"]] == [
        ("kustomize/path-outside-repo", "app/kustomization.yaml")]


def test_broken_symlinks_in_a_folder_of_yaml(validate: Callable[..., Any],
                                             scratch_repo: Path) -> None:
    write(scratch_repo / "docs" / "ok.yaml", CONFIG_MAP.format(name="ok"))
    (scratch_repo / "docs" / "loop.yaml").symlink_to("loop.yaml")
    (scratch_repo / "docs" / "dangling.yaml").symlink_to("nothere.yaml")
    run = validate("docs", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.code == 1
    assert keys(run.json()["findings"]) == {("yaml/invalid", "docs/loop.yaml", None),
                                            ("yaml/invalid", "docs/dangling.yaml", None)}

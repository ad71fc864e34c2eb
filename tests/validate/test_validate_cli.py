"""The CLI contract of tools/validate: formats, --output, exit codes, paths and scopes.

tests/fixtures/cli/findings holds documents with known findings (copied into a scratch
repository so the missing CRD schema is never looked up on the network):
  broken.yaml:4      yaml/invalid                   error   (no resource)
  deployment.yaml:18 schema/invalid                 error
  service.yaml:8     wiring/service-selects-nothing error   (a policy: carries why/fix)
  widget.yaml:1      schema/missing                 warning (VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR=0)
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from validate_support import (
    CliRun,
    assert_no_crash,
    copy_fixture,
    keys,
    make_scratch_repo,
    run_validate,
    write,
)

FORMATS = ("text", "json", "sarif", "junit", "github")
EXPECTED = {
    ("yaml/invalid", "findings/broken.yaml", 4, "error"),
    ("schema/invalid", "findings/deployment.yaml", 18, "error"),
    ("wiring/service-selects-nothing", "findings/service.yaml", 8, "error"),
    ("schema/missing", "findings/widget.yaml", 1, "warning"),
}
ERRORS = sum(1 for *_, severity in EXPECTED if severity == "error")
WARNINGS = len(EXPECTED) - ERRORS
FINDING_KEYS = {"rule", "severity", "message", "target", "targets", "resource", "file", "line"}
RESOURCE_KEYS = {"apiVersion", "kind", "name", "namespace"}
WARN_ENV = {"VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR": "0"}

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}
data:
  key: value
"""


@pytest.fixture(scope="module")
def findings_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_scratch_repo(tmp_path_factory.mktemp("cli") / "repo")
    copy_fixture("cli/findings", repo)
    return repo


@pytest.fixture(scope="module")
def runs(findings_repo: Path, crd_schemas: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, CliRun]:
    cache = tmp_path_factory.mktemp("cache")
    return {fmt: run_validate("findings", "--format", fmt, cwd=findings_repo,
                              crd_schemas=crd_schemas, cache_dir=cache, env=WARN_ENV)
            for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_exits_1_on_errors_without_noise(runs: dict[str, CliRun], fmt: str) -> None:
    run = runs[fmt]
    assert_no_crash(run)
    assert run.code == 1
    assert run.stderr == ""  # not a terminal: no progress bar, no messages


def test_json_contract(runs: dict[str, CliRun]) -> None:
    report = runs["json"].json()
    assert set(report) == {"summary", "findings"}
    assert report["summary"] == {"errors": ERRORS, "warnings": WARNINGS, "targets": 1, "scopes": 1,
                                 "resources": 3}
    got = {(f["rule"], f["file"], f["line"], f["severity"]) for f in report["findings"]}
    assert got == EXPECTED
    for finding in report["findings"]:
        assert FINDING_KEYS <= set(finding) <= FINDING_KEYS | {"why", "fix"}
        assert finding["targets"] == [finding["target"]]
        assert finding["severity"] in {"error", "warning", "info"}
        assert isinstance(finding["message"], str)
        assert finding["message"]
        assert finding["target"] == "findings"
        assert isinstance(finding["line"], int)
        if finding["rule"] == "yaml/invalid":
            assert finding["resource"] is None
        else:
            assert set(finding["resource"]) == RESOURCE_KEYS
            assert finding["resource"]["namespace"] == "demo"
    [policy] = [f for f in report["findings"] if f["rule"].startswith("wiring/")]
    assert policy["why"]
    assert policy["fix"]
    assert policy["resource"] == {"apiVersion": "v1", "kind": "Service", "name": "web",
                                  "namespace": "demo"}


def test_json_findings_are_sorted_errors_first(runs: dict[str, CliRun]) -> None:
    severities = [f["severity"] for f in runs["json"].json()["findings"]]
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_sarif(runs: dict[str, CliRun]) -> None:
    log = json.loads(runs["sarif"].stdout)
    assert log["version"] == "2.1.0"
    assert "sarif" in log["$schema"]
    [run] = log["runs"]
    assert run["tool"]["driver"]["name"] == "vllm-gitops"
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    level = {"error": "error", "warning": "warning"}
    got = set()
    for result in run["results"]:
        assert rules[result["ruleIndex"]] == result["ruleId"]
        assert result["message"]["text"]
        [location] = result["locations"]
        physical = location["physicalLocation"]
        got.add((result["ruleId"], physical["artifactLocation"]["uri"],
                 physical["region"]["startLine"], result["level"]))
    assert got == {(rule, file, line, level[sev]) for rule, file, line, sev in EXPECTED}
    assert set(rules) == {rule for rule, *_ in EXPECTED}


def test_junit(runs: dict[str, CliRun]) -> None:
    root = ET.fromstring(runs["junit"].stdout)
    assert root.tag == "testsuites"
    failures = root.findall(".//failure")
    assert len(failures) == ERRORS
    assert int(root.get("failures", "-1")) == ERRORS
    assert sum(int(s.get("failures", "0")) for s in root.iter("testsuite")) == ERRORS
    assert {f.get("type") for f in failures} == {r for r, *_, s in EXPECTED if s == "error"}
    cases = root.findall(".//testcase")
    assert {(c.get("file"), c.get("line")) for c in cases} == {
        (file, str(line)) for _, file, line, _ in EXPECTED}


def test_github_annotations(runs: dict[str, CliRun]) -> None:
    lines = runs["github"].stdout.splitlines()
    annotations = [line for line in lines if line.startswith("::")]
    assert len(annotations) == len(EXPECTED)  # a multi-line fix stays on one line (%0A)
    for rule, file, line, severity in EXPECTED:
        prefix = f"::{severity} file={file},line={line},title={rule}::"
        assert sum(a.startswith(prefix) for a in annotations) == 1, (prefix, annotations)
    assert lines[-1] == "vllm-gitops: 3 errors, 1 warnings in 1 targets (3 resources)"


def test_text_is_the_default(runs: dict[str, CliRun], findings_repo: Path,
                             validate: Callable[..., Any]) -> None:
    text = runs["text"].stdout
    assert "findings/deployment.yaml:18 Deployment demo/web" in text
    assert "[schema/invalid]" in text
    assert "findings/broken.yaml:4" in text
    assert text.rstrip().endswith("FAILED: 3 errors, 1 warnings in 1 targets (3 resources)")
    assert "\033[" not in text  # no colour when stdout is not a terminal
    default = validate("findings", cwd=findings_repo, env=WARN_ENV)
    assert default.stdout == text


# --- --output -----------------------------------------------------------------------

def test_output_writes_the_file_and_nothing_on_stdout(validate: Callable[..., Any],
                                                      findings_repo: Path, tmp_path: Path,
                                                      runs: dict[str, CliRun]) -> None:
    out_dir = tmp_path / "reports"
    out_dir.mkdir()
    target = out_dir / "report.json"
    target.write_text("stale content, much longer than nothing " * 1000)
    run = validate("findings", "-f", "json", "--output", str(target), cwd=findings_repo,
                   env=WARN_ENV)
    assert_no_crash(run)
    assert run.code == 1
    assert run.stdout == ""
    assert json.loads(target.read_text()) == runs["json"].json()
    assert [p.name for p in out_dir.iterdir()] == ["report.json"]  # no temp file left


def test_output_into_missing_folder_is_exit_2(validate: Callable[..., Any],
                                              findings_repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "nope" / "report.sarif"
    run = validate("findings", "-f", "sarif", "-o", str(target), cwd=findings_repo)
    assert_no_crash(run)
    assert run.code == 2
    assert run.stdout == ""
    assert "does not exist" in run.stderr
    assert str(target.parent) in run.stderr
    assert not target.parent.exists()


# --- exit codes ---------------------------------------------------------------------

def test_clean_input_is_exit_0(validate: Callable[..., Any], scratch_repo: Path) -> None:
    write(scratch_repo / "cm.yaml", CONFIG_MAP.format(name="ok"))
    run = validate("cm.yaml", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.code == 0
    context, summary = run.stdout.splitlines()
    # The kustomize in use is whichever is found (kustomize-batch first), hence the pattern.
    assert re.fullmatch(r"checked with kustomize v5\.\d+\.\d+ "
                        r"\((kubectl )?kustomize(-batch| build)?\), "
                        r"Kubernetes 1\.34\.0 schemas, jsonschema engine", context), context
    assert summary == "OK: 0 errors, 0 warnings in 1 targets (1 resources)"


def test_warnings_alone_are_exit_0(validate: Callable[..., Any], findings_repo: Path) -> None:
    run = validate("findings/widget.yaml", "-f", "json", cwd=findings_repo, env=WARN_ENV)
    assert_no_crash(run)
    assert run.json()["summary"]["warnings"] == 1
    assert run.json()["summary"]["errors"] == 0
    assert run.code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cm.yaml", "--no-such-flag"), "No such option"),
        (("cm.yaml", "--format", "nope"), "nope"),
        (("cm.yaml", "-f", "xml"), "xml"),
        (("does-not-exist.yaml",), "no such file or folder: does-not-exist.yaml"),
        (("cm.yaml", "missing-dir"), "no such file or folder: missing-dir"),
        (("cm.yaml", "--kubernetes-version", "1.99.0"), "no built-in schemas"),
    ],
    ids=["unknown-flag", "format-nope", "format-xml", "missing-path", "one-missing-path",
         "unknown-k8s-version"],
)
def test_tool_could_not_run_is_exit_2(validate: Callable[..., Any], scratch_repo: Path,
                                      args: tuple[str, ...], message: str) -> None:
    write(scratch_repo / "cm.yaml", CONFIG_MAP.format(name="ok"))
    run = validate(*args, cwd=scratch_repo)
    assert_no_crash(run)
    assert run.code == 2
    assert message in run.stderr
    assert run.stdout == ""


def test_no_kustomize_is_exit_2(validate: Callable[..., Any], scratch_repo: Path) -> None:
    (scratch_repo / "vllm-gitops.yaml").write_text(
        'kubernetesVersion: "1.34.0"\nschemaLocations: [default]\n'
        "kustomize: no-such-kustomize-binary\n")
    write(scratch_repo / "app" / "kustomization.yaml", "resources:\n  - cm.yaml\n")
    write(scratch_repo / "app" / "cm.yaml", CONFIG_MAP.format(name="ok"))
    run = validate("app", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.code == 2
    assert "no-such-kustomize-binary" in run.stderr
    assert "not found" in run.stderr


def test_bad_settings_file_is_exit_2_with_file_and_line(validate: Callable[..., Any],
                                                        scratch_repo: Path) -> None:
    (scratch_repo / "vllm-gitops.yaml").write_text(
        'kubernetesVersion: "1.34.0"\nschemaLocations: [default]\nschemaLocaton: []\n')
    write(scratch_repo / "cm.yaml", CONFIG_MAP.format(name="ok"))
    run = validate("cm.yaml", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.code == 2
    assert "vllm-gitops.yaml:3" in run.stderr
    assert "schemaLocaton" in run.stderr


# --- paths and scope ----------------------------------------------------------------

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - port: 80
"""
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: main
          image: nginx:1.27
          resources: {{requests: {{cpu: 100m, memory: 64Mi}}, limits: {{memory: 64Mi}}}}
"""


def _scope_repo(repo: Path) -> None:
    # front/: a Service for `web` and an unrelated Deployment; web/: the `web` Deployment.
    write(repo / "front" / "service.yaml", SERVICE)
    write(repo / "front" / "other.yaml", DEPLOYMENT.format(name="other"))
    write(repo / "web.yaml", DEPLOYMENT.format(name="web") + "---\n"
          + CONFIG_MAP.format(name="web-config"))
    write(repo / "app" / "kustomization.yaml", "resources:\n  - cm.yaml\n")
    write(repo / "app" / "cm.yaml", CONFIG_MAP.format(name="app-config"))


def test_several_paths_form_one_scope(validate: Callable[..., Any], scratch_repo: Path) -> None:
    _scope_repo(scratch_repo)
    run = validate("front", "web.yaml", "app", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    report = run.json()
    # The Service in front/ selects the Deployment in web.yaml: same scope, no finding.
    assert report["findings"] == []
    assert report["summary"] == {"errors": 0, "warnings": 0, "targets": 1, "scopes": 1,
                                 "resources": 5}
    assert run.code == 0

    alone = validate("front", "-f", "json", cwd=scratch_repo)
    assert_no_crash(alone)
    assert keys(alone.json()["findings"]) == {
        ("wiring/service-selects-nothing", "front/service.yaml", 6)}
    assert alone.json()["findings"][0]["target"] == "front"
    assert alone.code == 1


def test_overlapping_paths_count_each_document_once(validate: Callable[..., Any],
                                                    scratch_repo: Path) -> None:
    _scope_repo(scratch_repo)
    run = validate("front", "front/service.yaml", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert run.json()["summary"]["resources"] == 2


def test_paths_are_relative_to_the_repository_root(validate: Callable[..., Any],
                                                   scratch_repo: Path) -> None:
    """Run from a subfolder: files are still named from the repository root."""
    write(scratch_repo / "deep" / "er" / "bad.yaml",
          CONFIG_MAP.format(name="x").replace("data:", "dataa:"))
    run = validate("er", "-f", "json", cwd=scratch_repo / "deep")
    assert_no_crash(run)
    assert keys(run.json()["findings"]) == {("schema/invalid", "deep/er/bad.yaml", 5)}
    assert run.json()["findings"][0]["target"] == "deep/er"


def test_no_path_validates_every_target_of_the_repository(validate: Callable[..., Any],
                                                          scratch_repo: Path) -> None:
    kustomization = "resources:\n  - cm.yaml\n"
    for folder in ("base/a", "base/b", "overlays/dev", "clusters/one"):
        write(scratch_repo / folder / "kustomization.yaml", kustomization)
        write(scratch_repo / folder / "cm.yaml", CONFIG_MAP.format(name=folder.replace("/", "-")))
    # not targets: a component, a hidden folder, folders outside clusters/overlays/base
    write(scratch_repo / "base" / "comp" / "kustomization.yaml",
          "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n")
    write(scratch_repo / "base" / ".hidden" / "kustomization.yaml", "resources: [nope.yaml]\n")
    write(scratch_repo / "elsewhere" / "kustomization.yaml", "resources: [nope.yaml]\n")
    write(scratch_repo / "base" / "b" / "extra.yaml", "not: [valid")  # not listed: not read
    run = validate("-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    report = run.json()
    assert report["findings"] == []
    assert report["summary"] == {"errors": 0, "warnings": 0, "targets": 4, "scopes": 4,
                                 "resources": 4}
    assert run.code == 0


def test_sarif_uri_is_percent_encoded(validate: Callable[..., Any], scratch_repo: Path) -> None:
    write(scratch_repo / "my model.yaml", CONFIG_MAP.format(name="x").replace("data:", "dataa:"))
    run = validate("my model.yaml", "-f", "sarif", cwd=scratch_repo)
    assert_no_crash(run)
    [result] = json.loads(run.stdout)["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "my%20model.yaml"

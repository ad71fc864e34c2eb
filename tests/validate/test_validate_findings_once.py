"""One defect, one finding (at its source line, naming every target it breaks); paths
outside the repository; severity overrides; the rule catalogue."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import REPO_ROOT
from vllm_gitops.policies.registry import RULES, _load_builtin_rules
from vllm_gitops.report.catalogue import render_markdown

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
    - {name: http, port: 80, targetPort: htp}
"""
DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27.3
          ports: [{name: http, containerPort: 8080}]
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 64Mi}}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shared_base_repo(root: Path) -> Path:
    """One base with a wrong targetPort, two overlays that include it (one renames it)."""
    write(root / "base/web/service.yaml", SERVICE)
    write(root / "base/web/deployment.yaml", DEPLOYMENT)
    write(root / "base/web/kustomization.yaml", "resources: [service.yaml, deployment.yaml]\n")
    write(root / "overlays/a/kustomization.yaml", "resources: [../../base/web]\n")
    write(root / "overlays/b/kustomization.yaml",
          "resources: [../../base/web]\nnameSuffix: -b\nnamespace: team-b\n")
    return root


def port_findings(run: Any) -> list[dict[str, Any]]:
    return [f for f in run.json()["findings"] if f["rule"] == "wiring/service-target-port"]


def test_a_defect_in_a_shared_base_is_one_finding(validate: Callable[..., Any],
                                                  scratch_repo: Path) -> None:
    run = validate("-f", "json", cwd=shared_base_repo(scratch_repo))
    found = port_findings(run)
    assert len(found) == 1, found
    assert (found[0]["file"], found[0]["line"]) == ("base/web/service.yaml", 7)
    # base/web is checked inside both overlays (each renders it), not a third time alone
    assert found[0]["targets"] == ["overlays/a", "overlays/b"]
    assert found[0]["target"] == "overlays/a"
    assert run.json()["summary"]["errors"] == 1


def test_text_groups_by_file_and_names_the_targets(validate: Callable[..., Any],
                                                   scratch_repo: Path) -> None:
    text = validate(cwd=shared_base_repo(scratch_repo)).stdout
    assert text.count("[wiring/service-target-port]") == 1
    assert "base/web/service.yaml\n  ERROR base/web/service.yaml:7 Service" in text
    assert "in: overlays/a, overlays/b\n" in text


def test_cluster_entry_point_comes_first(validate: Callable[..., Any],
                                         scratch_repo: Path) -> None:
    repo = shared_base_repo(scratch_repo)
    write(repo / "clusters/x/kustomization.yaml", "resources: [../../overlays/a]\n")
    found = port_findings(validate("-f", "json", cwd=repo))
    assert len(found) == 1
    assert found[0]["target"] == "clusters/x"
    assert found[0]["targets"][0] == "clusters/x"


def test_manifests_outside_the_repository(validate: Callable[..., Any], scratch_repo: Path,
                                          tmp_path: Path) -> None:
    elsewhere = tmp_path / "download"
    write(elsewhere / "service.yaml", SERVICE)
    write(elsewhere / "deployment.yaml", DEPLOYMENT)
    run = validate(str(elsewhere), "-f", "json", cwd=scratch_repo)
    found = port_findings(run)
    assert run.code == 1
    assert [(f["file"], f["line"]) for f in found] == [(str(elsewhere / "service.yaml"), 7)]
    # Named from the current folder when it lies below it.
    run = validate("download", "-f", "json", cwd=tmp_path)
    assert [f["file"] for f in port_findings(run)] == ["download/service.yaml"]


def test_references_inside_an_outside_tree_stay_confined(validate: Callable[..., Any],
                                                         scratch_repo: Path,
                                                         tmp_path: Path) -> None:
    other = tmp_path / "other-repo"
    (other / ".git").mkdir(parents=True)
    write(tmp_path / "secret.yaml", SERVICE)
    write(other / "app/kustomization.yaml", "resources: [../../secret.yaml]\n")
    write(other / "manifests/ok.yaml", DEPLOYMENT)
    (other / "manifests/link.yaml").symlink_to(tmp_path / "secret.yaml")
    run = validate(str(other / "app"), str(other / "manifests"), "-f", "json",
                   cwd=scratch_repo)
    rules = sorted(f["rule"] for f in run.json()["findings"])
    assert rules == ["kustomize/path-outside-repo", "yaml/path-outside-repo"], rules
    assert run.code == 1


def test_severity_overrides(validate: Callable[..., Any], scratch_repo: Path) -> None:
    repo = shared_base_repo(scratch_repo)
    config = repo / "vllm-gitops.yaml"
    config.write_text(config.read_text()
                      + "severityOverrides:\n  wiring/service-target-port: warning\n")
    found = port_findings(validate("-f", "json", cwd=repo))
    assert [f["severity"] for f in found] == ["warning"]
    config.write_text(config.read_text().replace(": warning", ": off"))
    run = validate("-f", "json", cwd=repo)
    assert port_findings(run) == [] and run.code == 0
    listed = json.loads(validate("--list-rules", "-f", "json", cwd=repo).stdout)
    assert {"id": "wiring/service-target-port", "severity": "off"}.items() <= next(
        r for r in listed if r["id"] == "wiring/service-target-port").items()


def test_bad_severity_override_is_a_located_error(validate: Callable[..., Any],
                                                  scratch_repo: Path) -> None:
    config = scratch_repo / "vllm-gitops.yaml"
    config.write_text(config.read_text() + "severityOverrides:\n  wiring/nope: warning\n")
    run = validate("--list-rules", cwd=scratch_repo)
    assert run.code == 2
    assert "vllm-gitops.yaml:4" in run.stderr and "unknown rule 'wiring/nope'" in run.stderr
    config.write_text(config.read_text().replace("wiring/nope: warning",
                                                 "wiring/probe-port: loud"))
    run = validate("--list-rules", cwd=scratch_repo)
    assert run.code == 2 and "must be one of error, warning, info, off" in run.stderr


def test_list_rules_prints_the_catalogue(validate: Callable[..., Any]) -> None:
    _load_builtin_rules()
    run = validate("--list-rules")
    assert run.code == 0
    lines = run.stdout.splitlines()
    assert lines[-1] == f"{len(RULES)} rules"
    ids = [line.split()[0] for line in lines[:-1]]
    assert ids == sorted(RULES)


def test_rules_doc_is_current() -> None:
    """docs/rules.md (linked from the README) is the generated catalogue."""
    doc = (REPO_ROOT / "docs" / "rules.md").read_text()
    assert doc == render_markdown(), "run `make rules-doc` and commit docs/rules.md"

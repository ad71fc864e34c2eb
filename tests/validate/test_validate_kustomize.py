"""Kustomize targets: findings point at the file that wrote the field (base or patch)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from validate_support import (
    CliRun,
    assert_no_crash,
    keys,
    make_scratch_repo,
    run_validate,
    write,
)

BASE_KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
"""

BASE_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: "thirty"
      containers:
        - name: web
          image: nginx:1.27
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 64Mi}}
"""
BASE_TGPS_LINE = 15  # terminationGracePeriodSeconds: not patched by the overlay
BASE_REPLICAS_LINE = 6

OVERLAY_KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: dev-
resources:
  - ../base
patches:
  - path: patch.yaml
"""

OVERLAY_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: "two"
  template:
    spec:
      containers:
        - name: web
          resources:
            limits:
              cpu: "1"
          unknownKnob: true
"""
PATCH_REPLICAS_LINE = 6  # overrides the base's valid replicas with a string
PATCH_KNOB_LINE = 14  # a field only the patch adds


@pytest.fixture(scope="module")
def kustomize_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_scratch_repo(tmp_path_factory.mktemp("kustomize") / "repo")
    write(repo / "base" / "kustomization.yaml", BASE_KUSTOMIZATION)
    write(repo / "base" / "deployment.yaml", BASE_DEPLOYMENT)
    write(repo / "overlay" / "kustomization.yaml", OVERLAY_KUSTOMIZATION)
    write(repo / "overlay" / "patch.yaml", OVERLAY_PATCH)
    return repo


@pytest.fixture(scope="module")
def overlay_run(kustomize_repo: Path, crd_schemas: Path,
                tmp_path_factory: pytest.TempPathFactory) -> CliRun:
    return run_validate("overlay", "-f", "json", cwd=kustomize_repo, crd_schemas=crd_schemas,
                        cache_dir=tmp_path_factory.mktemp("cache"))


def test_overlay_findings_point_at_base_or_patch(overlay_run: CliRun) -> None:
    assert_no_crash(overlay_run)
    report = overlay_run.json()
    assert keys(report["findings"]) == {
        ("schema/invalid", "base/deployment.yaml", BASE_TGPS_LINE),
        ("schema/invalid", "overlay/patch.yaml", PATCH_REPLICAS_LINE),
        ("schema/invalid", "overlay/patch.yaml", PATCH_KNOB_LINE),
    }
    assert report["summary"] == {"errors": 3, "warnings": 0, "targets": 1, "scopes": 1,
                                 "resources": 1}
    assert overlay_run.code == 1


def test_overlay_findings_name_the_rendered_object(overlay_run: CliRun) -> None:
    findings = overlay_run.json()["findings"]
    messages = {f["line"]: f["message"] for f in findings}
    assert "spec.template.spec.terminationGracePeriodSeconds" in messages[BASE_TGPS_LINE]
    assert "spec.replicas: 'two'" in messages[PATCH_REPLICAS_LINE]
    assert "unknown field 'unknownKnob'" in messages[PATCH_KNOB_LINE]
    for finding in findings:
        assert finding["target"] == "overlay"
        assert finding["resource"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": "dev-web", "namespace": None}


def test_base_alone_has_only_its_own_problem(validate: Callable[..., Any],
                                             kustomize_repo: Path) -> None:
    run = validate("base", "-f", "json", cwd=kustomize_repo)
    assert_no_crash(run)
    [finding] = run.json()["findings"]
    assert (finding["rule"], finding["file"], finding["line"]) == (
        "schema/invalid", "base/deployment.yaml", BASE_TGPS_LINE)
    assert finding["resource"]["name"] == "web"
    assert finding["target"] == "base"
    assert run.code == 1


def test_patch_for_a_missing_resource_is_a_render_failure(validate: Callable[..., Any],
                                                          scratch_repo: Path) -> None:
    write(scratch_repo / "base" / "kustomization.yaml", BASE_KUSTOMIZATION)
    write(scratch_repo / "base" / "deployment.yaml", BASE_DEPLOYMENT)
    write(scratch_repo / "overlay" / "kustomization.yaml", OVERLAY_KUSTOMIZATION)
    write(scratch_repo / "overlay" / "patch.yaml",
          OVERLAY_PATCH.replace("  name: web\n", "  name: nosuch\n", 1))
    run = validate("overlay", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    report = run.json()
    [finding] = report["findings"]
    assert finding["rule"] == "kustomize/render-failed"
    assert finding["severity"] == "error"
    assert finding["file"] == "overlay/kustomization.yaml"
    assert "nosuch" in finding["message"]
    assert "no resource matches" in finding["message"] or "no matches" in finding["message"]
    # the message is made readable: no absolute paths of the machine
    assert str(scratch_repo) not in finding["message"]
    assert report["summary"]["resources"] == 0
    assert run.code == 1


def test_text_output_of_an_overlay_names_file_line_and_rule(validate: Callable[..., Any],
                                                            kustomize_repo: Path) -> None:
    run = validate("overlay", cwd=kustomize_repo)
    assert_no_crash(run)
    assert f"overlay/patch.yaml:{PATCH_KNOB_LINE} Deployment dev-web" in run.stdout
    assert f"base/deployment.yaml:{BASE_TGPS_LINE} Deployment dev-web" in run.stdout
    assert "[schema/invalid]" in run.stdout
    assert "FAILED: 3 errors, 0 warnings in 1 targets (1 resources)" in run.stdout
    assert run.code == 1


SIDECAR_BASE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: nginx:1.27
          webTypo: 1
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 64Mi}}
        - name: sidecar
          image: busybox:1.36
          resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 64Mi}}
"""
SIDECAR_PATCH = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      containers:
        - name: sidecar
          sidecarTypo: true
"""


def test_error_in_unpatched_list_item_keeps_its_line(validate: Callable[..., Any],
                                                     scratch_repo: Path) -> None:
    write(scratch_repo / "base" / "kustomization.yaml", BASE_KUSTOMIZATION)
    write(scratch_repo / "base" / "deployment.yaml", SIDECAR_BASE)
    write(scratch_repo / "overlay" / "kustomization.yaml", OVERLAY_KUSTOMIZATION)
    write(scratch_repo / "overlay" / "patch.yaml", SIDECAR_PATCH)
    run = validate("overlay", "-f", "json", cwd=scratch_repo)
    assert_no_crash(run)
    assert keys(run.json()["findings"]) == {
        ("schema/invalid", "base/deployment.yaml", 17),  # webTypo
        ("schema/invalid", "overlay/patch.yaml", 10),  # sidecarTypo
    }

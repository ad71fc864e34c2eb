"""The kubeconform engine: the command line we give it and how its JSON maps to findings.

kubeconform is not installable in this environment (users' CI installs it), so a stand-in on
PATH records its arguments and answers in kubeconform's documented JSON format
(https://github.com/yannh/kubeconform/blob/master/pkg/output/json.go). With the real binary on
PATH the end-to-end test at the bottom runs instead of being skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO_ROOT

BAD_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: two
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx:1.27}]
"""
STAND_IN = """#!/usr/bin/env python3
import json, sys
open(sys.argv[0] + ".args", "w").write(json.dumps(sys.argv[1:]))
sys.stdin.read()
print(json.dumps({"resources": [{
    "filename": "stdin", "kind": "Deployment", "name": "web", "version": "apps/v1",
    "status": "statusInvalid", "msg": "problem validating schema",
    "validationErrors": [{"path": "/spec/replicas",
                          "msg": "expected integer, but got string"}]}],
    "summary": {"valid": 0, "invalid": 1, "errors": 0, "skipped": 0}}))
sys.exit(1)
"""


def run_validate(repo: Path, path_dirs: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("VLLM_GITOPS_")}  # CI's schema settings are not this test's
    env.update(PYTHONPATH=str(REPO_ROOT / "tools"),
               PATH=os.pathsep.join([*(str(d) for d in path_dirs), os.environ["PATH"]]))
    return subprocess.run([sys.executable, "-m", "vllm_gitops.cli.validate", *args],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "vllm-gitops.yaml").write_text("schemaLocations: [default, ./schemas]\n")
    (root / "deploy.yaml").write_text(BAD_DEPLOYMENT)
    return root


def test_findings_from_kubeconform_keep_their_source_line(repo: Path, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubeconform"
    fake.write_text(STAND_IN)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    done = run_validate(repo, [bin_dir], "deploy.yaml", "--engine", "kubeconform", "-f", "json")
    assert done.returncode == 1, done.stderr
    findings = json.loads(done.stdout)["findings"]
    assert [(f["rule"], f["file"], f["line"]) for f in findings] == [
        ("schema/invalid", "deploy.yaml", 6)]
    assert "expected integer" in findings[0]["message"]
    args = json.loads(Path(str(fake) + ".args").read_text())
    assert args[:4] == ["-strict", "-output", "json", "-summary"]
    assert args[args.index("-kubernetes-version") + 1] == "1.34.0"
    locations = [args[i + 1] for i, a in enumerate(args) if a == "-schema-location"]
    assert locations == ["default", str(repo / "schemas") + "/{{.Group}}/"
                         "{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"]
    assert args[-1] == "-"


def test_choosing_kubeconform_without_it_is_exit_2(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env_path = [empty]
    if shutil.which("kubeconform"):
        pytest.skip("kubeconform is installed here")
    done = run_validate(repo, env_path, "deploy.yaml", "--engine", "kubeconform")
    assert done.returncode == 2
    assert "kubeconform is not on PATH" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(shutil.which("kubeconform") is None, reason="kubeconform not on PATH")
def test_real_kubeconform_finds_the_same_error(repo: Path) -> None:
    done = run_validate(repo, [], "deploy.yaml", "--engine", "kubeconform", "-f", "json")
    findings = json.loads(done.stdout)["findings"]
    assert [(f["rule"], f["line"]) for f in findings] == [("schema/invalid", 6)]

"""The CI workflow and pre-commit configuration, checked by real linters (not by eye)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import REPO_ROOT, TIMEOUT_SECONDS

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
PRE_COMMIT = REPO_ROOT / ".pre-commit-config.yaml"
BIN = Path(sys.executable).parent
FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, check=False)


def test_there_is_a_workflow() -> None:
    assert WORKFLOWS, "no .github/workflows/*.yml"


def test_zizmor_finds_nothing() -> None:
    done = run(str(BIN / "zizmor"), "--offline", "--persona=pedantic", *map(str, WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_match_the_github_schema() -> None:
    done = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
               *map(str, WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_finds_nothing() -> None:
    """actionlint is a Go program: `make actionlint` builds the pinned version into .bin/."""
    binary = REPO_ROOT / ".bin" / "actionlint"
    found = str(binary) if binary.is_file() else shutil.which("actionlint")
    if found is None:
        pytest.skip("actionlint not built (needs Go: `make actionlint`)")
    done = run(found, "-no-color", *map(str, WORKFLOWS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_config_is_valid() -> None:
    done = run(str(BIN / "pre-commit"), "validate-config", str(PRE_COMMIT))
    assert done.returncode == 0, done.stdout + done.stderr


def test_pre_commit_hooks_run_our_tools() -> None:
    hooks = {h["id"]: h for repo in yaml.safe_load(PRE_COMMIT.read_text())["repos"]
             for h in repo["hooks"]}
    assert hooks["vllm-gitops-validate-changed"]["entry"] == "tools/validate --changed-since HEAD"
    assert hooks["vllm-gitops-routes"]["entry"] == "tools/routes --check"
    for hook in hooks.values():
        assert (REPO_ROOT / hook["entry"].split()[0]).is_file()
        assert hook["pass_filenames"] is False  # the tools find their own scope


def test_actions_are_pinned_and_permissions_least() -> None:
    for path in WORKFLOWS:
        workflow = yaml.safe_load(path.read_text())
        assert workflow["permissions"] == {}, f"{path.name}: top-level permissions must be {{}}"
        for name, job in workflow["jobs"].items():
            granted = job.get("permissions")
            assert isinstance(granted, dict), f"{path.name}:{name} sets no permissions"
            assert set(granted.values()) <= {"read", "write"}
            assert "write-all" not in str(granted)
            for step in job["steps"]:
                if "uses" in step:
                    assert FULL_SHA.match(step["uses"]), step["uses"]
                    if "checkout" in step["uses"]:
                        assert step["with"]["persist-credentials"] is False


def test_workflow_runs_the_documented_commands() -> None:
    text = "\n".join(p.read_text() for p in WORKFLOWS)
    for command in ("make validate", "make test", "./tools/validate --format sarif",
                    "./tools/diff --base", "--format markdown", "upload-sarif"):
        assert command in text, command

"""Helpers every test folder imports (`tests` is on pytest's pythonpath, see pyproject)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
# A guard against hangs only: no test asserts on time.
TIMEOUT_SECONDS = 300


def crd_schema_dir() -> Path:
    """The CRD schemas locked in the repository (schemas/, see schemas/lock.yaml)."""
    return REPO_ROOT / "schemas"


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_tool(module: str, *args: str, cwd: Path = REPO_ROOT,
             env: dict[str, str] | None = None) -> Run:
    """Run a CLI module as a user would (fresh interpreter, real subprocesses)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = str(REPO_ROOT / "tools")
    full_env.pop("VLLM_GITOPS_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    return Run(done.returncode, done.stdout, done.stderr)


COVERAGE = REPO_ROOT / "docs" / "policy-coverage.md"


def coverage_rows() -> dict[int, tuple[str, set[str], set[str]]]:
    """defect number -> (verdict, rule ids, files) from the table of docs/policy-coverage.md."""
    rows = {}
    for line in COVERAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows[int(cells[0])] = (cells[2], set(re.findall(r"`([^`]+)`", cells[3])),
                                   set(re.findall(r"`([^`]+)`", cells[4])))
    return rows

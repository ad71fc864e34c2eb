"""kubeconform as the schema engine, when it is on PATH and chosen (users' CI installs it).

The rendered documents go to `kubeconform -strict -output json` on stdin; its JSON results
are mapped back to our Resources (by kind and name) so findings keep their source lines.
https://github.com/yannh/kubeconform
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import yaml

from vllm_gitops.errors import ToolError
from vllm_gitops.findings import Finding, Severity
from vllm_gitops.resources import Resource
from vllm_gitops.schema.engine import located, missing_identity
from vllm_gitops.schema.locations import CATALOG_LAYOUT


class KubeconformEngine:
    name = "kubeconform"

    def __init__(self, locations: tuple[str, ...], kubernetes_version: str,
                 missing_is_error: bool, cache_dir: str, timeout: float = 300) -> None:
        binary = shutil.which("kubeconform")
        if binary is None:
            raise ToolError("engine 'kubeconform' chosen but kubeconform is not on PATH "
                            "(install it, or use the default jsonschema engine)")
        self.command = [binary, "-strict", "-output", "json", "-summary",
                        "-kubernetes-version", kubernetes_version.lstrip("v"),
                        "-cache", cache_dir]
        for location in locations:
            templated = location if "{{" in location or location == "default" else (
                location.rstrip("/") + "/" + CATALOG_LAYOUT)
            self.command += ["-schema-location", templated]
        if not missing_is_error:
            self.command.append("-ignore-missing-schemas")
        self.timeout = timeout

    def validate(self, resources: list[Resource]) -> list[Finding]:
        findings = [f for r in resources if (f := missing_identity(r))]
        valid = [r for r in resources if r.api_version and r.kind]
        stream = yaml.safe_dump_all([r.doc for r in valid], sort_keys=False)
        try:
            done = subprocess.run([*self.command, "-"], input=stream, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(f"kubeconform failed to run: {exc}") from None
        try:
            report = json.loads(done.stdout or "{}")
        except ValueError:
            raise ToolError(f"kubeconform gave no JSON: {done.stderr.strip()[:500]}") from None
        return findings + [f for item in report.get("resources", [])
                           if (f := self._finding(item, valid))]

    def _finding(self, item: dict[str, Any], resources: list[Resource]) -> Finding | None:
        # https://github.com/yannh/kubeconform/blob/master/pkg/output/json.go
        status = item.get("status", "")
        if status in ("statusValid", "statusSkipped", "statusEmpty", ""):
            return None
        resource = next((r for r in resources if r.kind == item.get("kind")
                         and r.name == item.get("name")
                         and r.api_version == item.get("version", r.api_version)), None)
        if resource is None:
            return None
        missing = "could not find schema" in str(item.get("msg", ""))
        severity = Severity.WARNING if missing else Severity.ERROR
        rule = "schema/missing" if missing else "schema/invalid"
        errors = item.get("validationErrors") or [{"path": "", "msg": item.get("msg", status)}]
        first = errors[0]
        path = tuple(p for p in str(first.get("path", "")).split("/") if p)
        steps = tuple(int(p) if p.isdigit() else p for p in path)
        message = "; ".join(f"{e.get('path') or '(document)'}: {e.get('msg')}" for e in errors)
        return located(resource, rule, severity, message, steps)

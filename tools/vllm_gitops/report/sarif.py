"""SARIF 2.1.0 for code-scanning UIs.
https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from vllm_gitops.findings import Finding, Severity
from vllm_gitops.pipeline import Report

if TYPE_CHECKING:
    from vllm_gitops.policies.registry import Rule

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _rule_descriptor(rule_id: str, rules: Mapping[str, Rule]) -> dict[str, Any]:
    descriptor: dict[str, Any] = {"id": rule_id}
    rule = rules.get(rule_id)
    if rule:
        descriptor["shortDescription"] = {"text": rule.summary}
        descriptor["fullDescription"] = {"text": rule.why}
        descriptor["help"] = {"text": rule.fix}
    return descriptor


def _result(finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule,
        "ruleIndex": rule_index[finding.rule],
        "level": _LEVEL[finding.severity],
        "message": {"text": f"{finding.resource}: {finding.message}" if finding.resource
                    else finding.message},
        "properties": {"target": finding.target, "targets": list(finding.affected)},
    }
    if finding.file:
        physical: dict[str, Any] = {"artifactLocation": {"uri": quote(finding.file)}}
        if finding.line:
            physical["region"] = {"startLine": finding.line}
        result["locations"] = [{"physicalLocation": physical}]
    return result


def render(report: Report, tool_version: str = "") -> str:
    from vllm_gitops.policies.registry import RULES, _load_builtin_rules  # see pipeline.py

    _load_builtin_rules()  # a run served from the cache has not loaded them
    rules: Mapping[str, Rule] = RULES
    rule_ids = sorted({f.rule for f in report.findings})
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    log = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "vllm-gitops", "version": tool_version or "0",
                "informationUri": "https://github.com/example-org/vllm-gitops",
                "rules": [_rule_descriptor(r, rules) for r in rule_ids],
            }},
            "results": [_result(f, index) for f in report.findings],
        }],
    }
    return json.dumps(log, indent=2) + "\n"

"""JSON: the contract other tools and CI rely on (summary + findings)."""

from __future__ import annotations

import json

from vllm_gitops.pipeline import Report


def render(report: Report) -> str:
    payload = {"summary": report.summary(), "findings": [f.to_dict() for f in report.findings]}
    return json.dumps(payload, indent=2) + "\n"

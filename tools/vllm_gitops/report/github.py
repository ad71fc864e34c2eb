"""GitHub Actions workflow commands: annotations on the pull request's changed lines.
https://docs.github.com/actions/reference/workflow-commands-for-github-actions"""

from __future__ import annotations

from vllm_gitops.findings import Finding, Severity
from vllm_gitops.pipeline import Report

_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def _escape(text: str, property_value: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def _line(finding: Finding) -> str:
    props = [f"title={_escape(finding.rule, True)}"]
    if finding.file:
        props.insert(0, f"file={_escape(finding.file, True)}")
        if finding.line:
            props.insert(1, f"line={finding.line}")
    subject = f"{finding.resource}: " if finding.resource else ""
    body = f"{subject}{finding.message} (in {', '.join(finding.affected)})"
    if finding.fix:
        body += f"\nFix: {finding.fix}"
    return f"::{_LEVEL[finding.severity]} {','.join(props)}::{_escape(body)}"


def render(report: Report) -> str:
    s = report.summary()
    lines = [_line(f) for f in report.findings]
    lines.append(f"vllm-gitops: {s['errors']} errors, {s['warnings']} warnings in "
                 f"{s['targets']} targets ({report.checked_whole()}{s['resources']} resources)")
    return "\n".join(lines) + "\n"

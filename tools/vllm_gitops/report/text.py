"""Human output: findings grouped by source file, in line order, coloured on a terminal."""

from __future__ import annotations

from itertools import groupby

from vllm_gitops.findings import Finding, Severity
from vllm_gitops.pipeline import Report

_COLORS = {Severity.ERROR: "31", Severity.WARNING: "33", Severity.INFO: "36"}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if color else text


def _affected(finding: Finding, shown: int = 4) -> str:
    targets = finding.affected
    more = f" and {len(targets) - shown} more" if len(targets) > shown else ""
    return ", ".join(targets[:shown]) + more


def _finding(finding: Finding, color: bool) -> list[str]:
    where = str(finding.location) if finding.location else "(no source file)"
    what = f" {finding.resource}" if finding.resource else ""
    label = _paint(finding.severity.value.upper(), _COLORS[finding.severity], color)
    lines = [f"  {label} {where}{what}", f"    {finding.message}  [{finding.rule}]",
             f"    in: {_affected(finding)}"]
    if finding.why:
        lines.append(f"    why: {finding.why}")
    if finding.fix:
        lines.append(f"    fix: {finding.fix}")
    return lines


def render(report: Report, color: bool = False, context: str = "") -> str:
    """Findings grouped by the file to change, each once, naming the targets it breaks."""
    lines: list[str] = []
    by_file = sorted(report.findings, key=lambda f: (f.file or "", f.target))
    for file, group in groupby(by_file, key=lambda f: f.file or ""):
        lines.append(_paint(file or "(not from a file)", "1", color))
        for finding in sorted(group, key=lambda f: (f.line or 0, f.severity.rank, f.rule)):
            lines += _finding(finding, color)
        lines.append("")
    if any(f.rule == "schema/missing" for f in report.findings):
        lines.append("note: some custom resources were not checked against a schema. Run once "
                     "online (schemas are cached), or pass --schema-location DIR.")
    if context:
        lines.append(context)
    summary = report.summary()
    verdict = "FAILED" if summary["errors"] else "OK"
    lines.append(
        f"{_paint(verdict, '31' if summary['errors'] else '32', color)}: "
        f"{summary['errors']} errors, {summary['warnings']} warnings in "
        f"{summary['targets']} targets ({report.checked_whole()}{summary['resources']} resources)"
    )
    return "\n".join(lines) + "\n"

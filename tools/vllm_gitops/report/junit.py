"""JUnit XML: one testsuite per target, one failing testcase per error finding."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from itertools import groupby

from vllm_gitops.findings import Severity
from vllm_gitops.pipeline import Report


def render(report: Report) -> str:
    suites = ET.Element("testsuites", name="vllm-gitops validate")
    findings = sorted(report.findings, key=lambda f: f.target)
    failures_total = 0
    for target, group in groupby(findings, key=lambda f: f.target):
        items = list(group)
        suite = ET.SubElement(suites, "testsuite", name=target, tests=str(len(items)))
        failures = 0
        for finding in items:
            name = f"{finding.rule} {finding.resource or ''}".strip()
            case = ET.SubElement(suite, "testcase", name=name, classname=target,
                                 file=finding.file or "", line=str(finding.line or ""))
            text = f"{finding.location or ''}: {finding.message}"
            if finding.severity is Severity.ERROR:
                failures += 1
                failure = ET.SubElement(case, "failure", message=finding.message,
                                        type=finding.rule)
                failure.text = text
            else:
                ET.SubElement(case, "system-out").text = f"{finding.severity.value}: {text}"
        suite.set("failures", str(failures))
        failures_total += failures
    if not findings:
        suite = ET.SubElement(suites, "testsuite", name="all targets", tests="1", failures="0")
        ET.SubElement(suite, "testcase", name=f"{report.targets} targets valid",
                      classname="vllm-gitops")
    suites.set("failures", str(failures_total))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"

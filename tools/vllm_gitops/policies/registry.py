"""The rule registry: every policy is a Rule with an id, a severity, a one-line summary, and
a plain-language *why it breaks* and *how to fix*, for researchers rather than SREs.

Fixtures live in the repository's top-level `policies/<rule id>/` (fire.yaml must raise the
rule, pass.yaml must not); a guard test fails for a rule without them.

A resource is exempted from a rule by annotation, and the reason is mandatory:
    vllm-gitops.io/exempt: "wiring/service-selects-nothing: selector filled in by operator X"
Several exemptions are separated by ';' or new lines.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from vllm_gitops.findings import Finding, Severity, SourceLocation
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope
from vllm_gitops.yamlsafe import FieldPath

EXEMPT_ANNOTATION = "vllm-gitops.io/exempt"


@dataclass(frozen=True)
class Violation:
    resource: Resource
    message: str
    path: FieldPath = ()
    line_offset: int = 0  # lines below where `path` is written (a line inside a text value)


Check = Callable[[Scope], Iterable[Violation]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str
    why: str
    fix: str
    check: Check


RULES: dict[str, Rule] = {}


def rule(id: str, severity: Severity, summary: str, why: str, fix: str) -> Callable[[Check],
                                                                                    Check]:
    """Register a check function as a Rule."""

    def register(check: Check) -> Check:
        if id in RULES:
            raise ValueError(f"rule {id} registered twice")
        RULES[id] = Rule(id, severity, summary, " ".join(why.split()), " ".join(fix.split()),
                         check)
        return check

    return register


def exemptions(resource: Resource) -> dict[str, str]:
    """rule id -> reason, from the exemption annotation ('' when the reason is missing)."""
    text = resource.annotations.get(EXEMPT_ANNOTATION, "")
    out = {}
    for entry in text.replace("\n", ";").split(";"):
        rule_id, _, reason = entry.partition(":")
        if rule_id.strip():
            out[rule_id.strip()] = reason.strip()
    return out


def effective_severity(rule: Rule, overrides: Mapping[str, str] | None) -> Severity | None:
    """The rule's severity after `severityOverrides` of vllm-gitops.yaml; None when "off"."""
    wanted = (overrides or {}).get(rule.id)
    if wanted is None:
        return rule.severity
    return None if wanted == "off" else Severity(wanted)


def run_policies(scope: Scope, rules: Iterable[Rule] | None = None,
                 overrides: Mapping[str, str] | None = None) -> list[Finding]:
    _load_builtin_rules()
    findings: list[Finding] = []
    for resource in scope.resources:
        findings += _exemption_problems(resource)
    for rule_ in rules if rules is not None else RULES.values():
        severity = effective_severity(rule_, overrides)
        if severity is None:
            continue
        findings += _check(replace(rule_, severity=severity), scope)
    return findings


def _check(rule: Rule, scope: Scope) -> list[Finding]:
    """One rule's findings; a rule that trips over input it did not expect says so once
    (the schema stage reports malformed objects) instead of ending the whole run."""
    try:
        violations = list(rule.check(scope))
    except Exception as exc:
        if os.environ.get("VLLM_GITOPS_DEBUG"):
            raise
        return [Finding("policy/not-evaluated", Severity.WARNING,
                        f"rule {rule.id} could not check these manifests ({type(exc).__name__}: "
                        f"{exc}); fix the schema errors first, or report this", scope.name)]
    return [Finding(rule.id, rule.severity, v.message, scope.name, v.resource.ref,
                    _location(v), why=rule.why, fix=rule.fix)
            for v in violations if not exemptions(v.resource).get(rule.id)]


def _location(violation: Violation) -> SourceLocation | None:
    location = violation.resource.location_of(violation.path)
    if location is None or location.line is None or not violation.line_offset:
        return location
    return replace(location, line=location.line + violation.line_offset)


def _exemption_problems(resource: Resource) -> list[Finding]:
    problems = []
    for rule_id, reason in exemptions(resource).items():
        path: FieldPath = ("metadata", "annotations", EXEMPT_ANNOTATION)
        if not reason:
            problems.append(Finding(
                "exemption/no-reason", Severity.ERROR,
                f"exemption from {rule_id} gives no reason; write '{rule_id}: <why>'",
                resource.target, resource.ref, resource.location_of(path)))
        elif rule_id not in RULES:
            problems.append(Finding(
                "exemption/unknown-rule", Severity.WARNING,
                f"exemption names unknown rule {rule_id!r}", resource.target, resource.ref,
                resource.location_of(path)))
    return problems


@functools.cache  # once per process: the modules stay imported
def _load_builtin_rules() -> None:
    """Import every module of this package: importing a rule module registers its rules."""
    import importlib
    import pkgutil

    import vllm_gitops.policies as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "registry":
            importlib.import_module(f"{package.__name__}.{module.name}")

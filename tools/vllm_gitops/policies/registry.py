"""The rule registry: every policy is a Rule with an id, a severity, a one-line summary, and
a plain-language *why it breaks* and *how to fix*, for researchers rather than SREs.

Fixtures live in the repository's top-level `policies/<rule id>/` (fire.yaml must raise the
rule, pass.yaml must not); a guard test fails for a rule without them.

A resource is exempted from a rule by annotation, and the reason is mandatory:
    vllm-gitops.io/exempt: "wiring/service-selects-nothing: selector filled in by operator X"
Several exemptions are separated by ';' or new lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from vllm_gitops.findings import Finding, Severity
from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope
from vllm_gitops.yamlsafe import FieldPath

EXEMPT_ANNOTATION = "vllm-gitops.io/exempt"


@dataclass(frozen=True)
class Violation:
    resource: Resource
    message: str
    path: FieldPath = ()


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


def run_policies(scope: Scope, rules: Iterable[Rule] | None = None) -> list[Finding]:
    _load_builtin_rules()
    findings: list[Finding] = []
    for resource in scope.resources:
        findings += _exemption_problems(resource)
    for current in rules if rules is not None else RULES.values():
        for violation in current.check(scope):
            if exemptions(violation.resource).get(current.id):
                continue
            findings.append(Finding(
                current.id, current.severity, violation.message, scope.name,
                violation.resource.ref, violation.resource.location_of(violation.path),
                why=current.why, fix=current.fix))
    return findings


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


def _load_builtin_rules() -> None:
    # Importing the rule modules registers their rules (once).
    from vllm_gitops.policies import gateway, wiring  # noqa: F401

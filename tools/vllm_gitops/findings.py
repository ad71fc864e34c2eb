"""The one findings model every stage reports in: render, schema, policies, sizing."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return {"error": 0, "warning": 1, "info": 2}[self.value]


@dataclass(frozen=True)
class ResourceRef:
    """Identifies one Kubernetes object (apiVersion, kind, name, namespace)."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
        }

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {ns}{self.name}".rstrip()  # a kustomization file has no name


@dataclass(frozen=True)
class SourceLocation:
    """Where in the repository something was written: a repo-relative path and 1-based line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    target: str
    resource: ResourceRef | None = None
    location: SourceLocation | None = None
    why: str | None = None
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # Every target the defect affects (one defect, one finding); `target` is the first of them.
    targets: tuple[str, ...] = field(default=(), compare=False, hash=False)

    @property
    def affected(self) -> tuple[str, ...]:
        return self.targets or (self.target,)

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two findings the same defect, whichever target found them: the rule
        and the source line (overlays rename objects, so names and messages may differ)."""
        if self.location and self.location.line:
            return (self.rule, self.severity, self.location)
        return (self.rule, self.severity, self.message, self.resource, self.location)

    @property
    def file(self) -> str | None:
        return self.location.file if self.location else None

    @property
    def line(self) -> int | None:
        return self.location.line if self.location else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract other tools and CI rely on (see README)."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "severity": self.severity.value,
            "message": self.message,
            "target": self.target,
            "resource": self.resource.to_dict() if self.resource else None,
            "file": self.file,
            "line": self.line,
            "targets": list(self.affected),
        }
        if self.why:
            out["why"] = self.why
        if self.fix:
            out["fix"] = self.fix
        return out


def sort_key(finding: Finding) -> tuple[int, str, str, int, str]:
    return (
        finding.severity.rank,
        finding.target,
        finding.file or "",
        finding.line or 0,
        finding.rule,
    )

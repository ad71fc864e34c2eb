"""Stage 5: pluggable outputs. Each format is a function Report -> str, registered by name."""

from __future__ import annotations

from collections.abc import Callable

from vllm_gitops.pipeline import Report
from vllm_gitops.report import github, junit, sarif, text
from vllm_gitops.report import json_format as json

Formatter = Callable[[Report, "RenderOptions"], str]


class RenderOptions:
    def __init__(self, color: bool = False, tool_version: str = "", context: str = "") -> None:
        self.color = color
        self.tool_version = tool_version
        self.context = context  # e.g. the kustomize and Kubernetes versions used


FORMATS: dict[str, Formatter] = {
    "text": lambda r, o: text.render(r, color=o.color, context=o.context),
    "json": lambda r, o: json.render(r),
    "sarif": lambda r, o: sarif.render(r, o.tool_version),
    "junit": lambda r, o: junit.render(r),
    "github": lambda r, o: github.render(r),
}

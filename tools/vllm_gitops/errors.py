"""Errors that stop a tool before it can give a verdict: they map to exit code 2."""

from __future__ import annotations


class ToolError(Exception):
    """The tool could not run: bad usage, a missing path, no kustomize. Exit code 2."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file = file
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        where = self.file or ""
        if where and self.line:
            where = f"{where}:{self.line}"
        message = super().__str__()
        return f"{where}: {message}" if where else message


EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_TOOL_ERROR = 2

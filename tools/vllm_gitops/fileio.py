"""Writing files so that a reader never sees half of one: temp file, then an atomic rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vllm_gitops.errors import ToolError


def write_atomic(path: Path, content: str | bytes) -> None:
    """Replace `path` with `content` in one step; ToolError (exit 2) when it cannot."""
    target = path.resolve()
    if not target.parent.is_dir():
        raise ToolError(f"cannot write {path}: folder {path.parent} does not exist")
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException as exc:  # Ctrl-C included: no temporary file stays behind
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ToolError(f"cannot write {path}: {exc.strerror}") from None
        raise

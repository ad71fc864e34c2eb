"""The repository itself validates clean: every cluster, overlay and base, with CRD schemas."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from validate_support import REPO_ROOT, assert_no_crash

KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def discovered_targets(root: Path) -> list[str]:
    """Kustomizations under clusters/, overlays/ and base/, minus components and hidden ones
    (computed here independently of the tool)."""
    found = []
    for top in ("clusters", "overlays", "base"):
        for kfile in sorted((root / top).rglob("*")) if (root / top).is_dir() else []:
            if kfile.name not in KUSTOMIZATION_NAMES:
                continue
            if any(part.startswith(".") for part in kfile.relative_to(root / top).parts):
                continue
            data = yaml.safe_load(kfile.read_text())
            if isinstance(data, dict) and data.get("kind") == "Component":
                continue
            found.append(kfile.parent.relative_to(root).as_posix())
    return found


def test_repository_validates_clean(validate: Callable[..., Any]) -> None:
    targets = discovered_targets(REPO_ROOT)
    assert targets, "no kustomization found under clusters/, overlays/ or base/"
    run = validate("-f", "json")
    assert_no_crash(run)
    report = run.json()
    problems = [f"{f['severity']} {f['rule']} {f['file']}:{f['line']} {f['message']}"
                for f in report["findings"]]
    assert problems == []
    assert report["summary"]["errors"] == 0
    assert report["summary"]["warnings"] == 0
    assert report["summary"]["targets"] == len(targets)
    assert report["summary"]["resources"] > 0
    assert run.code == 0
    assert run.stderr == ""

"""Fixtures for the sizing engine tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from calibration_rows import load_rows

from vllm_gitops.resources import Resource
from vllm_gitops.scope import Scope


@pytest.fixture(scope="session")
def calibration_rows() -> list[dict[str, Any]]:
    """Real vLLM startup logs kept in the repository, each with its source URL and log quote."""
    return load_rows()


@pytest.fixture
def make_scope() -> Callable[[str], Scope]:
    """A Scope from a multi-document YAML string, as the renderer would produce it."""

    def build(text: str, name: str = "test") -> Scope:
        docs = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if isinstance(d, dict)]
        resources = [Resource(doc=d, target=name) for d in docs]
        return Scope(name=name, kind="paths", resources=resources)

    return build


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    """Write a config.json into a temporary catalog folder <org>/<name>/config.json."""

    def write(cfg: dict[str, Any], model_id: str = "acme/test-model") -> Path:
        path = tmp_path / "catalog" / model_id / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cfg), encoding="utf-8")
        return path

    return write

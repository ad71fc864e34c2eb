"""Settings: `vllm-gitops.yaml` at the repository root, then environment, then CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.yamlsafe import YamlProblem, load_file

CONFIG_FILE = "vllm-gitops.yaml"
ENV_SCHEMA_LOCATIONS = "VLLM_GITOPS_SCHEMA_LOCATIONS"  # os.pathsep-separated, tried first
ENV_MISSING_SCHEMA_IS_ERROR = "VLLM_GITOPS_MISSING_SCHEMA_IS_ERROR"  # "1": CI must not skip
ENV_CACHE_DIR = "VLLM_GITOPS_CACHE_DIR"
ENGINES = ("jsonschema", "kubeconform")


def default_cache_dir() -> Path:
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vllm-gitops"


@dataclass(frozen=True)
class Settings:
    repo_root: Path
    kubernetes_version: str = "1.34.0"
    # kubeconform-style: "default" (built-in Kubernetes schemas), a folder laid out like the
    # CRDs catalog (<group>/<kind>_<version>.json), or a path/URL template with
    # {{.Group}}, {{.ResourceKind}}, {{.ResourceAPIVersion}}, {{.KindSuffix}}.
    schema_locations: tuple[str, ...] = ("default",)
    missing_schema_is_error: bool = False
    engine: str = "jsonschema"
    allow_remote_bases: bool = False
    kustomize: str | None = None  # explicit binary; else .bin/kustomize-batch, PATH, kubectl
    render_timeout_seconds: float = 120.0
    schema_fetch_timeout_seconds: float = 10.0
    cache_dir: Path = field(default_factory=default_cache_dir)
    discover_roots: tuple[str, ...] = ("clusters", "overlays", "base")
    # rule id -> "error" | "warning" | "info" | "off" (vllm-gitops.yaml `severityOverrides`)
    severity_overrides: dict[str, str] = field(default_factory=dict)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def local_schema_folders(self) -> list[Path]:
        """The schema locations that are folders on disk."""
        return [Path(location) for location in self.schema_locations
                if is_local_location(location)]


def is_local_location(location: str) -> bool:
    """A schema location naming a folder (not "default", a URL or a path template)."""
    return location != "default" and "://" not in location and "{{" not in location


def find_repo_root(start: Path) -> Path:
    """The nearest folder above `start` holding vllm-gitops.yaml (or a .git), else `start`."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / ".git").exists():
            return folder
    return start


def load_settings(repo_root: Path) -> Settings:
    settings = Settings(repo_root=repo_root)
    config_path = repo_root / CONFIG_FILE
    if config_path.is_file():
        settings = _apply_config_file(settings, config_path)
    env_locations = os.environ.get(ENV_SCHEMA_LOCATIONS)
    if env_locations:
        extra = tuple(_from_repo(loc, repo_root) for loc in env_locations.split(os.pathsep) if loc)
        settings = replace(settings, schema_locations=(*extra, *settings.schema_locations))
    if os.environ.get(ENV_MISSING_SCHEMA_IS_ERROR) == "1":
        settings = replace(settings, missing_schema_is_error=True)
    return settings


def _from_repo(location: str, repo_root: Path) -> str:
    """Relative folders in settings are relative to the repository root."""
    if "://" in location or location == "default" or Path(location).is_absolute():
        return location
    return str((repo_root / location).resolve())


_KEYS: dict[str, type | tuple[type, ...]] = {
    "kubernetesVersion": str,
    "schemaLocations": list,
    "missingSchemaIsError": bool,
    "engine": str,
    "allowRemoteBases": bool,
    "kustomize": str,
    "renderTimeoutSeconds": (int, float),
    "severityOverrides": dict,
}
SEVERITY_CHOICES = ("error", "warning", "info", "off")


def _apply_config_file(settings: Settings, path: Path) -> Settings:
    try:
        docs = load_file(path, CONFIG_FILE)
    except YamlProblem as exc:
        raise ToolError(str(exc), file=CONFIG_FILE, line=exc.line) from None
    data = docs[0].data if docs else {}
    if not isinstance(data, dict):
        raise ToolError("expected a mapping of settings", file=CONFIG_FILE, line=1)
    lines = docs[0].field_lines if docs else {}
    for key, value in data.items():
        expected = _KEYS.get(key)
        line = lines.get((key,))
        if expected is None:
            known = ", ".join(sorted(_KEYS))
            raise ToolError(f"unknown setting {key!r} (known: {known})",
                            file=CONFIG_FILE, line=line)
        if not isinstance(value, expected):
            raise ToolError(f"setting {key!r} has the wrong type", file=CONFIG_FILE, line=line)
    if data.get("engine", "jsonschema") not in ENGINES:
        raise ToolError(f"engine must be one of {', '.join(ENGINES)}", file=CONFIG_FILE)
    overrides = _severity_overrides(data.get("severityOverrides") or {}, lines)
    return settings.with_overrides(
        kubernetes_version=data.get("kubernetesVersion"),
        schema_locations=tuple(_from_repo(str(x), settings.repo_root)
                               for x in data["schemaLocations"])
        if "schemaLocations" in data
        else None,
        missing_schema_is_error=data.get("missingSchemaIsError"),
        engine=data.get("engine"),
        allow_remote_bases=data.get("allowRemoteBases"),
        kustomize=data.get("kustomize"),
        render_timeout_seconds=data.get("renderTimeoutSeconds"),
        severity_overrides=overrides or None,
    )


def _severity_overrides(raw: dict[Any, Any], lines: dict[Any, int]) -> dict[str, str]:
    """`severityOverrides: {rule id: error|warning|info|off}`, every id a registered rule."""
    if not raw:
        return {}  # the rules are not loaded for nothing (see pipeline.py)
    from vllm_gitops.policies.registry import RULES, _load_builtin_rules

    _load_builtin_rules()
    # YAML 1.1 reads a bare `off` as false.
    raw = {k: "off" if v is False else v for k, v in raw.items()}
    for rule_id, value in raw.items():
        line = lines.get(("severityOverrides", rule_id))
        if rule_id not in RULES:
            raise ToolError(f"severityOverrides: unknown rule {rule_id!r} "
                            "(see `tools/validate --list-rules`)", file=CONFIG_FILE, line=line)
        if value not in SEVERITY_CHOICES:
            raise ToolError(f"severityOverrides: {rule_id} must be one of "
                            f"{', '.join(SEVERITY_CHOICES)}", file=CONFIG_FILE, line=line)
    return {str(k): str(v) for k, v in raw.items()}

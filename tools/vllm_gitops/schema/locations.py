"""Where schemas come from: kubeconform-style locations, with an on-disk cache for URLs.

A location is "default" (the Kubernetes schemas of the pinned `kubernetes-validate` package),
a folder laid out like the CRDs catalog (<group>/<kind>_<version>.json), or a path or URL
template using kubeconform's variables ({{.Group}}, {{.ResourceKind}},
{{.ResourceAPIVersion}}, {{.KindSuffix}}, {{.NormalizedKubernetesVersion}}, {{.StrictSuffix}}).
https://github.com/yannh/kubeconform#overriding-schemas-location
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic

CATALOG_LAYOUT = "{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json"
MAX_SCHEMA_BYTES = 32 * 1024 * 1024
_VARIABLE = re.compile(r"{{\s*\.(\w+)\s*}}")


@dataclass(frozen=True)
class SchemaKey:
    group: str
    version: str
    kind: str

    @classmethod
    def of(cls, api_version: str, kind: str) -> SchemaKey:
        group, _, version = api_version.rpartition("/")
        return cls(group, version, kind)

    @property
    def is_builtin_group(self) -> bool:
        """Groups served by Kubernetes itself: a missing schema there is a wrong API."""
        return self.group == "" or "." not in self.group or self.group.endswith(".k8s.io")

    def kind_suffix(self) -> str:
        first = self.group.split(".")[0]
        return f"-{first}-{self.version}" if self.group else f"-{self.version}"

    def __str__(self) -> str:
        return f"{self.group + '/' if self.group else ''}{self.version} {self.kind}"


@dataclass
class FoundSchema:
    schema: dict[str, Any]
    location: str
    builtin: bool  # from the Kubernetes package (refs into its _definitions.json)


def builtin_schema_dir(kubernetes_version: str) -> Path:
    version = kubernetes_version.lstrip("v")
    root = Path(str(resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    folder = root / f"v{version}-local-strict"
    if not folder.is_dir():
        known = sorted(p.name.split("-")[0] for p in root.glob("v*-local-strict"))
        raise ToolError(
            f"no built-in schemas for Kubernetes {kubernetes_version}; available: "
            + ", ".join(known)
        )
    return folder


@dataclass
class SchemaLocations:
    locations: tuple[str, ...]
    kubernetes_version: str
    repo_root: Path
    cache_dir: Path
    fetch_timeout: float
    unreachable: dict[str, str] = field(default_factory=dict)  # location -> reason
    _found: dict[SchemaKey, FoundSchema | None] = field(default_factory=dict)

    def find(self, key: SchemaKey) -> FoundSchema | None:
        if key not in self._found:
            self._found[key] = self._search(key)
        return self._found[key]

    def tried(self) -> str:
        """The locations searched, short: URLs by host, with why they could not be read."""
        parts = []
        for location in self.locations:
            short = location.split("/")[2] if "://" in location else self._shown(location)
            reason = self.unreachable.get(location)
            parts.append(f"{short} ({reason})" if reason else short)
        return ", ".join(parts)

    def _shown(self, location: str) -> str:
        """A folder inside the repository by its repo-relative name (schemas, not /home/...)."""
        path = Path(location)
        root = self.repo_root.resolve()
        if path.is_absolute() and root in path.parents:
            return path.relative_to(root).as_posix()
        return location

    def _search(self, key: SchemaKey) -> FoundSchema | None:
        for location in self.locations:
            if location in self.unreachable:
                continue
            if location == "default":
                path = builtin_schema_dir(self.kubernetes_version) / (
                    key.kind.lower() + key.kind_suffix() + ".json")
                schema = _read_json(path) if path.is_file() else None
                if schema is not None:
                    return FoundSchema(schema, "default", builtin=True)
                continue
            found = self._from_template(location, key)
            if found is not None:
                return FoundSchema(found, location, builtin=False)
        return None

    def _from_template(self, location: str, key: SchemaKey) -> dict[str, Any] | None:
        template = location if "{{" in location else location.rstrip("/") + "/" + CATALOG_LAYOUT
        values = {
            "Group": key.group, "ResourceKind": key.kind.lower(),
            "ResourceAPIVersion": key.version, "KindSuffix": key.kind_suffix(),
            "NormalizedKubernetesVersion": "v" + self.kubernetes_version.lstrip("v"),
            "StrictSuffix": "-strict", "KubernetesVersion": self.kubernetes_version.lstrip("v"),
        }
        address = _VARIABLE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
        if address.startswith(("http://", "https://")):
            return self._fetch(location, address)
        path = Path(address)
        if not path.is_absolute():
            path = self.repo_root / path
        return _read_json(path) if path.is_file() else None

    def _fetch(self, location: str, url: str) -> dict[str, Any] | None:
        cached = self.cache_dir / "schemas" / (hashlib.sha256(url.encode()).hexdigest() + ".json")
        if cached.is_file():
            return _read_json(cached)
        try:
            with urllib.request.urlopen(url, timeout=self.fetch_timeout) as response:
                body = response.read(MAX_SCHEMA_BYTES + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None  # this location has no schema for that kind
            self.unreachable[location] = f"HTTP {exc.code}"
            return None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            self.unreachable[location] = f"unreachable: {reason}"
            return None
        if len(body) > MAX_SCHEMA_BYTES:
            return None
        try:
            schema = json.loads(body)
        except ValueError:
            return None
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cached, body)
        except (OSError, ToolError):
            pass  # the cache is an optimisation
        return schema if isinstance(schema, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > MAX_SCHEMA_BYTES:
            return None
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

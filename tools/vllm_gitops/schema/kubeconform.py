"""kubeconform as the schema engine (`--engine kubeconform`), with the same schemas.

The binary is the project's `.bin/kubeconform` (`make kubeconform` builds the pinned release
with Go), else kubeconform on PATH. https://github.com/yannh/kubeconform

Same verdicts as the in-process engine: which schema applies (and so a missing schema or a
removed API) is decided by the same SchemaLocations; each document goes to kubeconform as its
own file (findings map back without ambiguity); its error tree is read down to the leaves, so
a finding points at the same field and line. The built-in Kubernetes schemas are those of the
pinned `kubernetes-validate` package, not kubeconform's download: they are copied, with their
`$ref`s made relative, into the cache (kubeconform resolves refs against `$id`, a URL). CEL
rules, which kubeconform does not evaluate, are evaluated on the objects it finds valid.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vllm_gitops.errors import ToolError
from vllm_gitops.fileio import write_atomic
from vllm_gitops.findings import Finding, Severity
from vllm_gitops.resources import Resource
from vllm_gitops.schema.engine import (
    CelRules,
    dotted,
    located,
    missing_identity,
    missing_schema,
    strict_root,
)
from vllm_gitops.schema.locations import (
    CATALOG_LAYOUT,
    SchemaKey,
    SchemaLocations,
    builtin_schema_dir,
)
from vllm_gitops.schema.lock import layout_path
from vllm_gitops.yamlsafe import FieldPath

ENV_BINARY = "VLLM_GITOPS_KUBECONFORM"
PROJECT_BIN = Path(__file__).resolve().parents[3] / ".bin" / "kubeconform"
_ERROR = re.compile(r"- at '([^']*)': (.*?)(?=\s+- at '|$)")
_UNKNOWN_FIELD = re.compile(r"additional properties? ((?:'[^']*'(?:, )?)+) not allowed")
_BUILTIN_REF = '"/api/_definitions.json#'


def find_kubeconform() -> str:
    """$VLLM_GITOPS_KUBECONFORM when set, else the project's build (the pinned version), else
    PATH; ToolError when none is there."""
    chosen = os.environ.get(ENV_BINARY)
    if chosen:
        if not (Path(chosen).is_file() and os.access(chosen, os.X_OK)):
            raise ToolError(f"{ENV_BINARY}={chosen}: no kubeconform executable there")
        return chosen
    if PROJECT_BIN.is_file():
        return str(PROJECT_BIN)
    found = shutil.which("kubeconform")
    if found is None:
        raise ToolError("engine 'kubeconform' chosen but kubeconform was not found: build it "
                        "with `make kubeconform` (needs Go), or install a release from "
                        "https://github.com/yannh/kubeconform/releases onto PATH; or use the "
                        "default jsonschema engine")
    return found


@dataclass
class _Sent:
    resource: Resource
    key: SchemaKey
    index: int  # position in the batch validate() was given


class KubeconformEngine:
    name = "kubeconform"

    def __init__(self, lookup: SchemaLocations, missing_is_error: bool,
                 timeout: float = 300) -> None:
        self.binary = find_kubeconform()
        self.version = lookup.kubernetes_version.lstrip("v")
        self.lookup = lookup  # the run's own: local locations are the repository's folders
        self.missing_is_error = missing_is_error
        self.timeout = timeout
        self.cel = CelRules()
        self._mirrored: set[SchemaKey] = set()
        # This run's own copy (a later run may lock other schemas); removed with the engine.
        self._mirror_dir = Path(tempfile.mkdtemp(prefix="vllm-gitops-schemas-"))
        weakref.finalize(self, shutil.rmtree, self._mirror_dir, True)

    def command(self, mirror: Path) -> list[str]:
        """kubeconform reads only the mirror: the schemas our lookup chose, nothing else."""
        return [self.binary, "-strict", "-output", "json", "-summary", "-verbose",
                "-kubernetes-version", self.version,
                "-schema-location", str(mirror) + "/{{.ResourceKind}}{{.KindSuffix}}.json",
                "-schema-location", str(mirror) + "/" + CATALOG_LAYOUT]

    def validate(self, resources: list[Resource]) -> list[list[Finding]]:
        findings: list[list[Finding]] = [[] for _ in resources]
        sent: list[_Sent] = []
        for index, resource in enumerate(resources):
            problem = missing_identity(resource)
            if problem:
                findings[index].append(problem)
                continue
            key = SchemaKey.of(resource.api_version, resource.kind)
            if self.lookup.find(key) is None:
                findings[index].append(missing_schema(resource, key, self.lookup,
                                                      self.missing_is_error))
            else:
                sent.append(_Sent(resource, key, index))
        for item, found in self._run(sent) if sent else []:
            findings[item.index] += found
        return findings

    def _run(self, sent: list[_Sent]) -> list[tuple[_Sent, list[Finding]]]:
        mirror = self._mirror({item.key for item in sent})
        with tempfile.TemporaryDirectory(prefix="vllm-gitops-kubeconform-") as tmp:
            files = []
            for index, item in enumerate(sent):
                path = Path(tmp) / f"{index:05d}.yaml"
                path.write_text(yaml.safe_dump(item.resource.doc, sort_keys=False))
                files.append(str(path))
            try:
                done = subprocess.run([*self.command(mirror), *files], capture_output=True,
                                      text=True, timeout=self.timeout, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise ToolError(f"kubeconform failed to run: {exc}") from None
        try:
            report = json.loads(done.stdout or "{}")
        except ValueError:
            raise ToolError(f"kubeconform gave no JSON: {done.stderr.strip()[:500]}") from None
        found: list[tuple[_Sent, list[Finding]]] = []
        for item in report.get("resources") or []:
            stem = Path(str(item.get("filename", ""))).stem
            if stem.isdigit() and int(stem) < len(sent):
                found.append((sent[int(stem)], self._findings(item, sent[int(stem)])))
        return found

    def _findings(self, item: dict[str, Any], sent: _Sent) -> list[Finding]:
        # https://github.com/yannh/kubeconform/blob/master/pkg/output/json.go
        status = item.get("status", "")
        resource = sent.resource
        if status == "statusValid":
            found = self.lookup.find(sent.key)
            if found is None or found.builtin:
                return []
            return [located(resource, rule, severity, message, path) for rule, severity, path,
                    message in self.cel.problems(found.schema, resource.doc)]
        if status in ("statusSkipped", "statusEmpty", ""):
            return []
        message = str(item.get("msg", status))
        if "could not find schema" in message:
            return [missing_schema(resource, sent.key, self.lookup, self.missing_is_error)]
        errors = leaf_errors(message)
        if not errors:
            return [located(resource, "schema/invalid", Severity.ERROR, message)]
        return [located(resource, "schema/invalid", Severity.ERROR,
                        f"{dotted(path) or '(document)'}: {text}", path)
                for path, text in errors]

    def _mirror(self, keys: set[SchemaKey]) -> Path:
        """The schemas the lookup chose, where kubeconform finds them offline: built-in ones
        with refs it can resolve, custom ones with a strict root (as the in-process engine)."""
        source = builtin_schema_dir(self.version)
        folder = self._mirror_dir
        definitions = folder / "_definitions.json"
        if not definitions.is_file():
            write_atomic(definitions, (source / "_definitions.json").read_bytes())
        for key in keys - self._mirrored:
            found = self.lookup.find(key)
            if found is None:
                continue
            if found.builtin:
                schema = {k: v for k, v in found.schema.items() if k != "$id"}
                text = json.dumps(schema).replace(_BUILTIN_REF, '"_definitions.json#')
                target = folder / (key.kind.lower() + key.kind_suffix() + ".json")
            else:
                text = json.dumps(strict_root(found.schema))
                target = folder / layout_path(key.group, key.kind, key.version)
                target.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(target, text)
            self._mirrored.add(key)
        return folder


def leaf_errors(message: str) -> list[tuple[FieldPath, str]]:
    """kubeconform's flattened error tree (`- at '/a/b': msg ...`) as (path, message) leaves;
    an unknown field's path ends at the field, like the in-process engine's."""
    out: list[tuple[FieldPath, str]] = []
    for pointer, raw in _ERROR.findall(message):
        text = raw.strip()
        if text == "validation failed":
            continue
        path: FieldPath = tuple(int(p) if p.isdigit() else p.replace("~1", "/").replace(
            "~0", "~") for p in pointer.split("/") if p)
        unknown = _UNKNOWN_FIELD.search(text)
        if unknown:
            first = unknown.group(1).split(", ")[0].strip("'")
            path = (*path, first)
            text = f"unknown field {first!r} (not in the schema; typo?)"
        if (path, text) not in out:
            out.append((path, text))
    return out


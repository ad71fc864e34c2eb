"""Stage 2: rendered YAML documents become Resources that know where they were written."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vllm_gitops.findings import ResourceRef, SourceLocation
from vllm_gitops.yamlsafe import FieldPath, YamlDocument


@dataclass(frozen=True)
class SourceLayer:
    """A document in the repository that contributed to a resource: its origin or a patch."""

    file: str  # repo-relative
    document: YamlDocument | None


@dataclass
class Resource:
    """One Kubernetes object from a rendered target, with its sources in the repository."""

    doc: dict[str, Any]
    target: str
    # The origin document first, then patches in the order kustomize applied them.
    layers: list[SourceLayer] = field(default_factory=list, repr=False)

    @property
    def source(self) -> SourceLocation | None:
        if not self.layers:
            return None
        origin = self.layers[0]
        return SourceLocation(origin.file, origin.document.line if origin.document else None)

    @property
    def api_version(self) -> str:
        return str(self.doc.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.doc.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str | None:
        ns = self.metadata.get("namespace")
        return str(ns) if ns else None

    @property
    def annotations(self) -> dict[str, str]:
        ann = self.metadata.get("annotations")
        return {str(k): str(v) for k, v in ann.items()} if isinstance(ann, dict) else {}

    @property
    def ref(self) -> ResourceRef:
        return ResourceRef(self.api_version, self.kind, self.name, self.namespace)

    def location_of(self, path: FieldPath) -> SourceLocation | None:
        """Where a field was written: the deepest known prefix, the last patch winning."""
        for depth in range(len(path), 0, -1):
            prefix = tuple(path[:depth])
            for layer in reversed(self.layers):
                line = layer.document.field_lines.get(prefix) if layer.document else None
                if line is not None:
                    return SourceLocation(layer.file, line)
        return self.source

    def get(self, *path: str | int, default: Any = None) -> Any:
        """Walk dict keys / list indexes; `default` when any step is missing."""
        node: Any = self.doc
        for step in path:
            in_list = isinstance(step, int) and isinstance(node, list) and 0 <= step < len(node)
            in_dict = isinstance(step, str) and isinstance(node, dict) and step in node
            if not (in_list or in_dict):
                return default
            node = node[step]
        return node


POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


def pod_spec_path(resource: Resource) -> tuple[str, ...] | None:
    """JSON path of the pod spec inside a workload, or None for non-workloads."""
    if resource.kind == "Pod":
        return ("spec",)
    if resource.kind in POD_TEMPLATE_KINDS:
        return ("spec", "template", "spec")
    if resource.kind == "CronJob":
        return ("spec", "jobTemplate", "spec", "template", "spec")
    return None


def iter_containers(resource: Resource) -> Iterator[tuple[tuple[str | int, ...], dict[str, Any]]]:
    """Every (path, container) of a workload, init containers included."""
    spec_path = pod_spec_path(resource)
    if spec_path is None:
        return
    spec = resource.get(*spec_path)
    if not isinstance(spec, dict):
        return
    for key in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(key) or []):
            if isinstance(container, dict):
                yield (*spec_path, key, index), container

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
        """Where a field was written: the deepest known prefix, the last patch winning.

        List items are matched by their `name` (the merge key of containers, ports, env,
        volumes...), since a strategic-merge patch may reorder a list.
        """
        best: tuple[int, int, SourceLocation] | None = None
        for order, layer in enumerate(self.layers):
            if layer.document is None:
                continue
            translated = self._path_in(layer.document.data, path)
            for depth in range(len(translated), 0, -1):
                line = layer.document.field_lines.get(translated[:depth])
                if line is not None:
                    if best is None or (depth, order) >= best[:2]:
                        best = (depth, order, SourceLocation(layer.file, line))
                    break
        return best[2] if best else self.source

    def _path_in(self, source: Any, path: FieldPath) -> FieldPath:
        """The longest prefix of a rendered field path, as indexes into a source document."""
        if source is None:  # a synthetic layer (generated data): keys are as rendered
            return path
        out: list[str | int] = []
        node: Any = self.doc
        for step in path:
            if isinstance(step, int):
                if not (isinstance(node, list) and isinstance(source, list)
                        and 0 <= step < len(node)):
                    break
                index = _same_item(node[step], source, step)
                if index is None:
                    break
                node, source = node[step], source[index]
                out.append(index)
            else:
                if not (isinstance(node, dict) and isinstance(source, dict) and step in source):
                    out.append(step)  # the key itself may still have a line
                    break
                node, source = node.get(step), source[step]
                out.append(step)
        return tuple(out)
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


def _same_item(item: Any, items: list[Any], position: int) -> int | None:
    """Index in `items` of the entry matching `item` by name, else by position."""
    name = item.get("name") if isinstance(item, dict) else None
    if name is not None:
        return next((i for i, other in enumerate(items)
                     if isinstance(other, dict) and other.get("name") == name), None)
    return position if position < len(items) else None


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


def as_map(value: Any) -> dict[str, Any]:
    """`value` when it is a mapping, else {} (a malformed manifest must not crash a rule)."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    """`value` when it is a list, else []."""
    return value if isinstance(value, list) else []

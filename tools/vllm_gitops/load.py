"""Stage 2: turn rendered YAML into Resources that point back at the repository's files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vllm_gitops.findings import Finding, Severity, SourceLocation
from vllm_gitops.kustomization import GeneratedData, PatchDocument
from vllm_gitops.render import ORIGIN_ANNOTATION, TRANSFORMATIONS_ANNOTATION
from vllm_gitops.resources import Resource, SourceLayer
from vllm_gitops.yamlsafe import (
    FieldPath,
    YamlDocument,
    YamlProblem,
    load_file_cached,
    load_stream_fast,
)


def source_documents(path: Path) -> tuple[YamlDocument, ...]:
    """Parsed documents of a repository file (cached); none when it cannot be read."""
    try:
        return load_file_cached(path, str(path))
    except YamlProblem:
        return ()


def resources_from_render(
    output: str, base_dir: Path, repo_root: Path, target: str, patches: list[PatchDocument],
    generated: list[GeneratedData] | None = None,
) -> tuple[list[Resource], list[Finding]]:
    """Resources from kustomize output whose origin paths are relative to `base_dir`."""
    try:
        docs = load_stream_fast(output)
    except YamlProblem as exc:
        return [], [Finding("render/invalid-output", Severity.ERROR, str(exc), target)]
    resources = []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        annotations = _pop_build_annotations(doc)
        origin = _origin_path(annotations.get(ORIGIN_ANNOTATION), base_dir)
        patched_by = _patching_kustomizations(annotations.get(TRANSFORMATIONS_ANNOTATION), base_dir)
        resource = Resource(doc, target)
        resource.layers = _layers(resource, origin, repo_root, patches, patched_by)
        resource.layers += _generated_layers(resource, generated or [], repo_root)
        resources.append(resource)
    return resources, []


def resources_from_file(path: Path, repo_root: Path, target: str) -> tuple[
        list[Resource], list[Finding]]:
    """Resources from a plain YAML file (no kustomize), with exact lines."""
    rel = _rel(path, repo_root)
    try:
        docs = load_file_cached(path, rel)
    except YamlProblem as exc:
        return [], [Finding("yaml/invalid", Severity.ERROR, str(exc), target,
                            location=SourceLocation(rel, exc.line))]
    resources, findings = [], []
    for doc in docs:
        if isinstance(doc.data, dict) and doc.data.get("kind"):
            resources.append(Resource(doc.data, target, [SourceLayer(rel, doc)]))
        else:
            findings.append(Finding(
                "yaml/not-a-resource", Severity.ERROR,
                "document is not a Kubernetes object (no kind)", target,
                location=SourceLocation(rel, doc.line)))
    return resources, findings


def _pop_build_annotations(doc: dict[str, Any]) -> dict[str, str]:
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("annotations"), dict):
        return {}
    annotations = meta["annotations"]
    found = {key: str(annotations.pop(key)) for key in (ORIGIN_ANNOTATION,
                                                         TRANSFORMATIONS_ANNOTATION)
             if key in annotations}
    if not annotations:
        del meta["annotations"]
    return found


def _origin_path(annotation: str | None, base_dir: Path) -> Path | None:
    # A small YAML mapping: "path: ../x/y.yaml" for a file, or "configuredIn:
    # ../x/kustomization.yaml" for an object a generator made (we point at the kustomization).
    fields = {}
    for line in (annotation or "").splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    path = fields.get("path") or fields.get("configuredIn")
    return Path(os.path.normpath(base_dir / path)) if path else None


def _patching_kustomizations(annotation: str | None, base_dir: Path) -> set[Path]:
    paths: set[Path] = set()
    current: str | None = None
    for line in (annotation or "").splitlines():
        text = line.strip().removeprefix("- ")
        if text.startswith("configuredIn:"):
            current = text.split(":", 1)[1].strip()
        elif text.startswith("kind:") and "PatchTransformer" in text and current:
            paths.add(Path(os.path.normpath(base_dir / current)))
    return paths


def _layers(resource: Resource, origin: Path | None, repo_root: Path,
            patches: list[PatchDocument], patched_by: set[Path]) -> list[SourceLayer]:
    if origin is None:
        return []
    layers = [SourceLayer(_rel(origin, repo_root), _match(resource, source_documents(origin)))]
    for patch in patches:
        if patch.kustomization in patched_by and _same_object(resource, patch.document.data):
            layers.append(SourceLayer(patch.file, patch.document))
    return layers


def _generated_layers(resource: Resource, generated: list[GeneratedData],
                      repo_root: Path) -> list[SourceLayer]:
    """A generated ConfigMap/Secret's data keys point at the files they were read from."""
    layers = []
    for item in generated:
        if item.kind == resource.kind and resource.name.startswith(item.name):
            lines: dict[FieldPath, int] = {("data", item.key): 1, ("binaryData", item.key): 1}
            layers.append(SourceLayer(_rel(item.file, repo_root), YamlDocument(None, 1, lines)))
    return layers


def _match(resource: Resource, docs: tuple[YamlDocument, ...]) -> YamlDocument | None:
    same_kind = [d for d in docs
                 if isinstance(d.data, dict) and d.data.get("kind") == resource.kind]
    for doc in same_kind:
        if _name(doc.data) == resource.name:
            return doc
    named = [d for d in same_kind if _same_object(resource, d.data)]
    if named:  # a prefix/suffix was added: the longest original name contained wins
        return max(named, key=lambda d: len(_name(d.data)))
    return same_kind[0] if len(same_kind) == 1 else None


def _same_object(resource: Resource, data: Any) -> bool:
    return (isinstance(data, dict) and data.get("kind") == resource.kind
            and bool(_name(data)) and _name(data) in resource.name)


def _name(data: dict[str, Any]) -> str:
    meta = data.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def _rel(path: Path, repo_root: Path) -> str:
    # abspath, not resolve(): name a symlink as it stands in the repository (and never loop)
    try:
        return Path(os.path.abspath(path)).relative_to(repo_root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()

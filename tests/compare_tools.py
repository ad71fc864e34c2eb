"""This tool, checkov and kubernetes-validate side by side on our fixture corpus.

Not part of pytest; run by hand (checkov lives in its own virtualenv, outside the repo):

    python3 -m venv /some/where/checkov-venv
    /some/where/checkov-venv/bin/pip install checkov==3.3.30
    .venv/bin/python tests/compare_tools.py --checkov /some/where/checkov-venv/bin/checkov

The corpus is every `policies/<rule>/fire.yaml` and `pass.yaml` plus the guide's manifests
(`tests/fixtures/guide`). Per tool it counts:

- fire fixtures caught: this tool raises the fixture's rule; checkov fails a check on
  fire.yaml that it does not fail on the twin pass.yaml; kubernetes-validate rejects
  fire.yaml but not pass.yaml (a tool that flags both has not told them apart);
- false alarms on good manifests: pass.yaml with an error (this tool: error severity; its
  warnings are shown apart), a failed check (checkov has no severities offline) or a
  schema error (kubernetes-validate);
- errors on the repository's own overlays (`overlays/<env>`, rendered once with the pinned
  kustomize for the two other tools): manifests this repository ships as correct, so any
  error there is a false alarm (this tool must stay at zero; its warnings are shown apart);
- guide defects named: rows of docs/policy-coverage.md (items 1-36 of the review) that the
  tool names on the file the row names. For checkov, CHECKOV_NAMES below says which of its
  checks name which defect (read from its output on the guide, generously);
- wall time of all runs. This tool runs once per fixture (each fixture is its own scope),
  checkov and kubernetes-validate once over all files (they check files independently);
  and, for a like-for-like figure, the wall time of one run on the guide's files alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from support import coverage_rows

REPO_ROOT = Path(__file__).resolve().parent.parent
POLICIES = REPO_ROOT / "policies"
GUIDE = REPO_ROOT / "tests" / "fixtures" / "guide"
TIMEOUT_SECONDS = 900

# checkov check id (or prefix) -> review defects it names when it fails on the defect's file.
CHECKOV_NAMES: dict[str, set[int]] = {
    "CKV_K8S_14": {2, 29},  # image tag latest or blank
    "CKV_K8S_43": {2, 29},  # image without digest (fails on every pinned tag too)
    "CKV_K8S_10": {34}, "CKV_K8S_12": {34}, "CKV_K8S_13": {34},  # requests / memory limit
    "CKV_SECRET_": {27},  # secrets scanner: credentials in plain text
    "CKV_K8S_8": {4},  # liveness probe missing (never on the vLLM pod, which has one)
}


@dataclass
class Fixture:
    path: Path
    kind: str  # fire | pass | guide
    rule: str | None = None

    @property
    def flat_name(self) -> str:
        """A unique file name for tools that take one folder."""
        rel = self.path.relative_to(REPO_ROOT).as_posix()
        return rel.replace("/", "__")


@dataclass
class Outcome:
    tool: str
    seconds: float = 0.0
    runs: int = 0
    flags: dict[str, set[str]] = field(default_factory=dict)  # flat name -> what fired
    errors: dict[str, set[str]] = field(default_factory=dict)  # flat name -> error-level
    counts: dict[str, int] = field(default_factory=dict)  # flat name -> failed checks
    guide_defects: set[int] = field(default_factory=set)
    guide_findings: int = 0
    repo_errors: int = 0
    repo_warnings: int = 0
    guide_seconds: float = 0.0  # one run on the guide's files alone


def corpus() -> list[Fixture]:
    fixtures = []
    for fire in sorted(POLICIES.rglob("fire.yaml")):
        rule = fire.parent.relative_to(POLICIES).as_posix()
        fixtures += [Fixture(fire, "fire", rule), Fixture(fire.parent / "pass.yaml", "pass", rule)]
    return fixtures + [Fixture(p, "guide") for p in sorted(GUIDE.glob("*.yaml"))]


def overlays() -> list[Path]:
    return sorted(k.parent for k in (REPO_ROOT / "overlays").glob("*/kustomization.yaml"))


def render_overlays(folder: Path) -> list[Path]:
    """The repository's overlays rendered to plain YAML, for tools that cannot run kustomize."""
    kubectl = Path(sys.executable).parent / "kubectl"
    rendered = []
    for overlay in overlays():
        out = folder / f"overlay-{overlay.name}.yaml"
        out.write_text(subprocess.run([str(kubectl), "kustomize", str(overlay)], check=True,
                                      capture_output=True, text=True,
                                      timeout=TIMEOUT_SECONDS).stdout)
        rendered.append(out)
    return rendered


def timed(outcome: Outcome | None, command: list[str], **kwargs: object) -> tuple[str, float]:
    """stdout and wall time of a command; counted in the outcome's totals when given."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS,
                          check=False, **kwargs)  # type: ignore[call-overload]
    seconds = time.perf_counter() - start
    if outcome is not None:
        outcome.seconds += seconds
        outcome.runs += 1
    return str(done.stdout), seconds


# ---------------------------------------------------------------- the three tools


def run_ours(fixtures: list[Fixture]) -> Outcome:
    outcome = Outcome("vllm-gitops validate")
    env = {**os.environ, "VLLM_GITOPS_SCHEMA_LOCATIONS": "default"}
    validate = str(REPO_ROOT / "tools" / "validate")
    for fixture in (f for f in fixtures if f.kind != "guide"):
        found = json.loads(timed(outcome, [validate, str(fixture.path), "-f", "json"],
                                 cwd=REPO_ROOT, env=env)[0])["findings"]
        policy = [f for f in found if f["rule"] != "schema/missing"]
        outcome.flags[fixture.flat_name] = {f["rule"] for f in policy}
        outcome.errors[fixture.flat_name] = {f["rule"] for f in policy
                                             if f["severity"] == "error"}
    raw, outcome.guide_seconds = timed(outcome, [validate, str(GUIDE), "-f", "json"],
                                       cwd=REPO_ROOT, env=env)
    found = json.loads(raw)["findings"]
    pairs = {(f["rule"], Path(f["file"]).name) for f in found if f["rule"] != "schema/missing"}
    outcome.guide_findings = len([f for f in found if f["rule"] != "schema/missing"])
    for overlay in overlays():
        found = json.loads(timed(outcome, [validate, str(overlay), "-f", "json"], cwd=REPO_ROOT,
                                 env=env)[0])["findings"]
        outcome.repo_errors += sum(f["severity"] == "error" for f in found)
        outcome.repo_warnings += sum(f["severity"] == "warning" and f["rule"] != "schema/missing"
                                     for f in found)
    for number, (_, rules, files) in coverage_rows().items():
        if rules and all((rule, file) in pairs for rule in rules for file in files):
            outcome.guide_defects.add(number)
    return outcome


def run_checkov(checkov: str, fixtures: list[Fixture], rendered: list[Path]) -> Outcome:
    outcome = Outcome("checkov")
    with tempfile.TemporaryDirectory() as tmp:
        for fixture in fixtures:
            shutil.copy(fixture.path, Path(tmp) / fixture.flat_name)
        for overlay in rendered:
            shutil.copy(overlay, Path(tmp) / overlay.name)
        options = ["-o", "json", "--quiet", "--compact", "--framework", "kubernetes", "secrets",
                   "--skip-download"]
        raw = timed(outcome, [checkov, "-d", tmp, *options])[0]
    outcome.guide_seconds = timed(None, [checkov, "-d", str(GUIDE), *options])[1]
    reports = json.loads(raw) if raw.strip() else []
    for report in reports if isinstance(reports, list) else [reports]:
        for check in report.get("results", {}).get("failed_checks", []):
            name = Path(check["file_path"]).name
            outcome.flags.setdefault(name, set()).add(check["check_id"])
            outcome.counts[name] = outcome.counts.get(name, 0) + 1
    outcome.errors = outcome.flags
    outcome.repo_errors = sum(outcome.counts.get(o.name, 0) for o in rendered)
    rows = coverage_rows()
    for fixture in (f for f in fixtures if f.kind == "guide"):
        failed = outcome.flags.get(fixture.flat_name, set())
        outcome.guide_findings += outcome.counts.get(fixture.flat_name, 0)
        for check in failed:
            for prefix, defects in CHECKOV_NAMES.items():
                if check.startswith(prefix):
                    outcome.guide_defects |= {n for n in defects
                                              if fixture.path.name in rows[n][2]}
    return outcome


def run_kubernetes_validate(binary: str, version: str, fixtures: list[Fixture],
                            rendered: list[Path]) -> Outcome:
    outcome = Outcome("kubernetes-validate")
    names = {str(f.path.relative_to(REPO_ROOT)): f.flat_name for f in fixtures}
    names |= {str(o): o.name for o in rendered}
    options = ["--strict", "--quiet", "--no-warn", "-k", version]
    out = timed(outcome, [binary, *options, *names], cwd=REPO_ROOT)[0]
    guide = [str(f.path) for f in fixtures if f.kind == "guide"]
    outcome.guide_seconds = timed(None, [binary, *options, *guide])[1]
    for line in out.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) > 1 and parts[0] == "ERROR" and parts[1] in names:
            outcome.flags.setdefault(names[parts[1]], set()).add(parts[2] if len(parts) > 2
                                                                 else "error")
    outcome.errors = outcome.flags
    outcome.repo_errors = sum(len(outcome.flags.get(o.name, set())) for o in rendered)
    outcome.guide_findings = sum(len(outcome.flags.get(f.flat_name, set()))
                                 for f in fixtures if f.kind == "guide")
    return outcome  # a schema error names none of the review's defects


# ---------------------------------------------------------------- scoring


def caught(outcome: Outcome, fire: Fixture, twin: Fixture) -> bool:
    fired = outcome.flags.get(fire.flat_name, set())
    if outcome.tool.startswith("vllm-gitops"):
        return fire.rule in fired
    return bool(fired - outcome.flags.get(twin.flat_name, set()))


def table(outcomes: list[Outcome], fixtures: list[Fixture]) -> Table:
    fires = [f for f in fixtures if f.kind == "fire"]
    passes = {f.rule: f for f in fixtures if f.kind == "pass"}
    visible = [n for n, (verdict, _, _) in coverage_rows().items()
               if verdict.startswith(("caught", "gap"))]
    out = Table(title=f"{len(fires)} fire / {len(passes)} pass fixtures, "
                f"{len([f for f in fixtures if f.kind == 'guide'])} guide files")
    for column in ("tool", "fire fixtures caught", "pass fixtures with an error",
                   "errors on our overlays", "guide defects named", "findings on the guide",
                   "wall time, all", "wall time, guide only"):
        out.add_column(column)
    for outcome in outcomes:
        hits = sum(caught(outcome, f, passes[f.rule]) for f in fires)
        flagged = sum(bool(outcome.flags.get(f.flat_name)) for f in fires)
        any_flag = "" if outcome.tool.startswith("vllm") else f" ({flagged} flagged at all)"
        false = [p for p in passes.values() if outcome.errors.get(p.flat_name)]
        warned = [p for p in passes.values() if outcome.flags.get(p.flat_name)]
        extra = (f" ({len(warned)} with any finding)" if outcome.tool.startswith("vllm")
                 else "")
        named = len(outcome.guide_defects & set(visible))
        repo = str(outcome.repo_errors) + (f" ({outcome.repo_warnings} warnings)"
                                           if outcome.tool.startswith("vllm") else "")
        out.add_row(outcome.tool, f"{hits}/{len(fires)}{any_flag}",
                    f"{len(false)}/{len(passes)}{extra}", repo, f"{named}/{len(visible)}",
                    str(outcome.guide_findings), f"{outcome.seconds:.1f} s ({outcome.runs} runs)",
                    f"{outcome.guide_seconds:.1f} s")
    return out


def main(
    checkov: str = typer.Option(..., help="checkov executable (installed outside the repo)"),
    kubernetes_validate: str = typer.Option(
        str(Path(sys.executable).parent / "kubernetes-validate"),
        help="kubernetes-validate executable"),
    kubernetes_version: str = typer.Option("1.34.0", help="API version to validate against"),
) -> None:
    """Count defects caught and false alarms of three tools on the fixture corpus."""
    console = Console(width=140)
    fixtures = corpus()
    with tempfile.TemporaryDirectory() as tmp:
        rendered = render_overlays(Path(tmp))
        runners: list[Callable[[], Outcome]] = [
            lambda: run_ours(fixtures),
            lambda: run_checkov(checkov, fixtures, rendered),
            lambda: run_kubernetes_validate(kubernetes_validate, kubernetes_version, fixtures,
                                            rendered),
        ]
        outcomes = []
        for runner in runners:
            with console.status("running…"):
                outcomes.append(runner())
    console.print(table(outcomes, fixtures))
    ours = outcomes[0]
    for fixture in (f for f in fixtures if f.kind == "pass"):
        if ours.errors.get(fixture.flat_name):
            console.print(f"{outcomes[0].tool}: errors on {fixture.path.relative_to(REPO_ROOT)}: "
                          f"{', '.join(sorted(ours.errors[fixture.flat_name]))}")
    for outcome in outcomes:
        console.print(f"{outcome.tool}: guide defects named "
                      f"{sorted(outcome.guide_defects) or 'none'}")


if __name__ == "__main__":
    typer.run(main)

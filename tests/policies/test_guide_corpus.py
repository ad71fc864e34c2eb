"""The guide's manifests (tests/fixtures/guide) through the real `tools/validate`: every
defect docs/policy-coverage.md says is caught is found, on the file it names, and nothing
else is found but the findings listed here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support import COVERAGE, REPO_ROOT, TIMEOUT_SECONDS, coverage_rows
from vllm_gitops.policies.registry import RULES, _load_builtin_rules

GUIDE = "tests/fixtures/guide"

VLLM = "standalone-vllm-reasoning.yaml"
LITELLM = "litellm-deployment.yaml"
INGRESS = "litellm-ingress.yaml"
POOLS = ("gpu-nodepool.yaml", "graviton-nodepool.yaml", "x86-nodepool.yaml",
         "inf2-nodepool.yaml")

# (rule, file) of every finding expected on the corpus, by defect number of the review.
EXPECTED: set[tuple[str, str]] = {
    ("karpenter/gpu-pool-untainted", "gpu-nodepool.yaml"),  # 1
    ("images/mutable-tag", VLLM),  # 2
    ("storage/rwo-rolling-update", VLLM),  # 3
    ("probes/startup-budget", VLLM),  # 4
    ("resources/shm-over-limit", VLLM),  # 5
    ("secrets/secret-not-produced", VLLM),  # 6
    ("vllm/reasoning-parser-missing", VLLM),  # 7
    ("vllm/debug-logging", VLLM),  # 8
    ("vllm/cuda-visible-devices", VLLM),  # 9
    ("storage/cache-oversized", VLLM),  # 10
    ("manifests/ineffective-annotation", VLLM),  # 11
    ("disruption/unprotected-serving-pod", VLLM),  # 12
    ("karpenter/short-expire-after", "gpu-nodepool.yaml"),  # 16
    ("karpenter/consolidation-underutilized", "gpu-nodepool.yaml"),  # 17
    ("storage/binding-immediate", "gp3.yaml"),  # 18
    # 19: every pool of the guide has maxPods 20 (the review names the GPU one).
    *{("karpenter/max-pods-low", pool) for pool in POOLS},
    *{("karpenter/root-volume-unencrypted", pool) for pool in POOLS},  # 20
    *{("karpenter/ami-pinned-by-name", pool) for pool in POOLS},  # 21, 22 (x86: 1.29)
    *{("manifests/unsubstituted-variable", pool) for pool in POOLS},  # 23
    ("secrets/plaintext-credential", LITELLM),  # 27
    ("exposure/public-load-balancer", INGRESS),  # 28
    ("images/mutable-tag", LITELLM),  # 29
    ("litellm/unknown-config-key", LITELLM),  # 30
    ("litellm/route-target-missing", LITELLM),  # 31 (and the llama.cpp route, not deployed)
    ("resources/missing-requests", LITELLM),  # 34
    ("ingress/deprecated-class-annotation", INGRESS),  # 36
    # Not among the review's items 1-36, but true of the guide:
    # --max-num-seqs 8 caps concurrency far below what the KV cache holds on the smallest
    # GPU the pool can launch;
    ("capacity/max-num-seqs-cap", VLLM),
    # the monitors select nothing (review item 44);
    ("objects/target-missing", "prometheus-monitoring.yaml"),
    # the guide's scripts apply gp3.yaml only when no `gp3` class exists yet (review §3.5);
    ("storage/shared-class-name", "gp3.yaml"),
    # Argo CD server-side apply sees drift on a volumeClaimTemplate without apiVersion/kind.
    ("argocd/server-side-apply-drift", LITELLM),
}

# Defects visible in the manifests that no registered rule names yet: the closing note
# lists them as gaps. When a rule starts catching one, move it to EXPECTED and the table.
NOT_YET_CAUGHT: dict[int, str] = {}


def guide_findings() -> set[tuple[str, str]]:
    """(rule, file) of `tools/validate tests/fixtures/guide -f json`, schema notes aside."""
    env = {**os.environ, "VLLM_GITOPS_SCHEMA_LOCATIONS": "default"}
    done = subprocess.run([str(REPO_ROOT / "tools" / "validate"), GUIDE, "-f", "json"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS, check=False)
    assert done.returncode in (0, 1), done.stderr
    found = json.loads(done.stdout)["findings"]
    return {(f["rule"], Path(f["file"]).name) for f in found if f["rule"] != "schema/missing"}


@pytest.fixture(scope="module")
def found() -> set[tuple[str, str]]:
    return guide_findings()


def test_guide_findings_are_the_expected_ones(found: set[tuple[str, str]]) -> None:
    print("\nGuide defects visible in manifests but not caught yet:",
          ", ".join(f"#{n} {what}" for n, what in sorted(NOT_YET_CAUGHT.items())) or "none")
    assert sorted(found - EXPECTED) == [], "unexpected findings"
    assert sorted(EXPECTED - found) == [], "expected findings missing"


def test_coverage_table_matches_the_findings(found: set[tuple[str, str]]) -> None:
    rows = coverage_rows()
    assert sorted(rows) == list(range(1, 37))
    claimed = {(rule, file) for _, rules, files in rows.values() for rule in rules
               for file in files}
    assert sorted(claimed - found) == [], "the table claims findings the tool does not make"
    gaps = {n for n, (verdict, _, _) in rows.items() if verdict.startswith("gap")}
    assert gaps == set(NOT_YET_CAUGHT)
    caught = {n for n, (verdict, _, _) in rows.items() if verdict.startswith("caught")}
    assert all(rows[n][1] and rows[n][2] for n in caught)
    summary = f"Caught today: {len(caught)} of the {len(caught) + len(gaps)} visible ones."
    assert summary in COVERAGE.read_text()


def test_coverage_table_names_only_registered_rules() -> None:
    _load_builtin_rules()
    named = {rule for _, rules, _ in coverage_rows().values() for rule in rules}
    assert named, "the table names no rule"
    assert sorted(named - set(RULES)) == []

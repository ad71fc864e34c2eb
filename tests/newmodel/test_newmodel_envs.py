"""tools/new-model end to end, on private copies of the repository: the model lands in the
environment, the rendered overlay runs it on TP x PP GPUs, the gateway routes to it, and
tools/validate still passes. Real kustomize, real schemas, the real CLI as a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from newmodel_support import copy_repo, new_model, render, snapshot, validate

from vllm_gitops.routes import routes_of
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.workload import VllmWorkload, find_vllm_workloads

pytestmark = pytest.mark.slow


def _workload(scope: Scope, statefulset: str) -> VllmWorkload:
    found = [w for w in find_vllm_workloads(scope) if w.resource.name == statefulset]
    assert len(found) == 1, [w.resource.name for w in find_vllm_workloads(scope)]
    return found[0]


def _assert_served(repo: Path, env: str, name: str, model: str) -> VllmWorkload:
    """The rendered environment runs the model on TP x PP GPUs and the gateway routes to it."""
    scope = render(repo, f"overlays/{env}")
    assert not [f for f in scope.findings if f.severity.value == "error"], scope.findings
    workload = _workload(scope, f"vllm-{name}")
    args = workload.engine_args
    assert workload.model == model
    assert workload.gpus == args.tensor_parallel_size * args.pipeline_parallel_size
    pool = workload.scheduling.node_selector["karpenter.sh/nodepool"]
    assert scope.find("NodePool", pool) is not None, f"NodePool {pool} is not rendered"
    routes = {route.model_name: route for res, route in routes_of(scope)
              if route is not None and res.name == f"vllm-{name}"}
    route = routes[f"vllm-server-{name}"]  # the Service selects the pods, on its http port
    assert route.api_base == f"http://vllm-{name}.inference.svc.cluster.local:8000/v1"
    gateway = [cm for cm in scope.of_kind("ConfigMap") if cm.name.startswith("litellm-config")]
    assert len(gateway) == 1
    served = yaml.safe_load(gateway[0].get("data", "models.yaml"))["model_list"]
    assert {"model_name": route.model_name, "litellm_params": {
        "model": f"hosted_vllm/{model}", "api_base": route.api_base}} in served
    return workload


def test_small_model_in_dev_then_rerun_refuse_remove(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    pristine = snapshot(repo)
    infra_before = (repo / "overlays/dev/infrastructure/kustomization.yaml").read_text()

    added = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev")
    assert added.code == 0, added.output
    assert "OK: 0 errors" in added.stdout and "git add overlays/dev" in added.stdout
    workload = _assert_served(repo, "dev", "qwen3-0-6b", "Qwen/Qwen3-0.6B")
    assert workload.gpus == 1
    assert (repo / "overlays/dev/infrastructure/kustomization.yaml").read_text() == infra_before

    # Same arguments again: nothing to change, not a byte touched.
    before = snapshot(repo)
    again = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev")
    assert again.code == 0 and "nothing to change" in again.stdout, again.output
    assert snapshot(repo) == before

    # Other arguments for the same model: refused with the diff, unless --force.
    other = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--max-model-len", "8192")
    assert other.code == 2, other.output
    assert "-            - --max-model-len=32768" in other.stdout
    assert "+            - --max-model-len=8192" in other.stdout
    assert "--force" in other.stderr and "Traceback" not in other.output
    assert snapshot(repo) == before

    forced = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--max-model-len", "8192",
                       "--force")
    assert forced.code == 0, forced.output
    model_yaml = (repo / "overlays/dev/apps/models/qwen3-0-6b/model.yaml").read_text()
    assert "- --max-model-len=8192" in model_yaml and "32768" not in model_yaml

    removed = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--remove")
    assert removed.code == 0, removed.output
    assert not (repo / "overlays/dev/apps/models/qwen3-0-6b").exists()
    apps = (repo / "overlays/dev/apps/kustomization.yaml").read_text()
    assert "models/qwen3-0-6b" not in apps and "models/qwen3\n" in apps
    assert "qwen3-0-6b" not in (repo / "overlays/dev/apps/models.yaml").read_text()
    assert "NodePools in infrastructure/ are left" in removed.stdout
    assert snapshot(repo) == pristine  # removal undoes the addition exactly


def test_70b_in_prod_adds_a_bigger_gpu_family_and_validates(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    infra = repo / "overlays/prod/infrastructure/kustomization.yaml"
    listed_before = yaml.safe_load(infra.read_text())["resources"]

    run = new_model(repo, "meta-llama/Llama-3.1-70B-Instruct", "--env", "prod")
    assert run.code == 0, run.output
    assert "adds NodePool" in run.stdout and "$" in run.stdout
    listed = yaml.safe_load(infra.read_text())["resources"]
    added = [entry for entry in listed if entry not in listed_before]
    assert len(added) == 1 and "karpenter/nodepools/" in added[0], listed
    workload = _assert_served(repo, "prod", "llama-3-1-70b-instruct",
                              "meta-llama/Llama-3.1-70B-Instruct")
    assert (workload.gpus or 0) >= 4  # 131 GiB of weights need several GPUs
    # It runs on the pool that was added, not on prod's 24 GB GPUs that cannot hold it.
    assert workload.scheduling.node_selector["karpenter.sh/nodepool"] == Path(added[0]).name

    whole = validate(repo)
    assert whole.code == 0, whole.output


def test_moe_in_staging_autoscaled_after_a_dry_run(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    args = ("Qwen/Qwen3-30B-A3B", "--env", "staging", "--min-replicas", "1",
            "--max-replicas", "2")
    before = snapshot(repo)
    dry = new_model(repo, *args, "--dry-run")
    assert dry.code == 0, dry.output
    assert "+++ b/overlays/staging/apps/models/qwen3-30b-a3b/model.yaml" in dry.stdout
    assert "Dry run: nothing written" in dry.stdout
    assert snapshot(repo) == before

    run = new_model(repo, *args)
    assert run.code == 0, run.output
    workload = _assert_served(repo, "staging", "qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B")
    assert (workload.replicas, workload.max_replicas) == (1, 2)
    assert workload.flags.get("--reasoning-parser") == "qwen3"
    seqs = int(workload.flags["--max-num-seqs"] or 0)
    assert 1 <= seqs < 256  # sized for ~2k-token requests, not vLLM's default

"""tools/new-model end to end, on private copies of the repository: the model lands in the
environment as its own sync unit (a folder, its Flux Kustomization and Argo CD Application),
the rendered overlay runs it on TP x PP GPUs, the gateway routes to it, and tools/validate and
tools/routes --check still pass. Real kustomize, real schemas, the real CLI as a subprocess."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from newmodel_support import (
    copy_repo,
    load_yaml,
    new_model,
    render,
    routes_check,
    snapshot,
    validate,
)

from vllm_gitops.durations import duration_hours
from vllm_gitops.newmodel.sync import NODE_AND_PULL_S
from vllm_gitops.newmodel.transaction import INTERRUPT_HOOK
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
    # The model folder sets the gateway's namespace and the environment label itself.
    assert workload.resource.namespace == "inference"
    labels = workload.resource.get("metadata", "labels")
    assert labels["vllm-gitops.io/environment"] == env
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


def _sync_files(env: str, name: str) -> dict[str, tuple[tuple[str, ...], str, str]]:
    """Sync file -> (path field, object name, path) of the model's Flux and Argo CD objects."""
    folder = f"overlays/{env}/models/{name}"
    return {f"clusters/{env}/flux/models/{name}.yaml": (("spec", "path"), f"model-{name}",
                                                         f"./{folder}"),
            f"clusters/{env}/argocd/models/{name}.yaml": (("spec", "source", "path"),
                                                           f"{env}-model-{name}", folder)}


def _listed(repo: Path, kustomization: str) -> list[str]:
    return [str(entry) for entry in load_yaml(repo, kustomization)["resources"]]


def _assert_synced(repo: Path, env: str, name: str) -> None:
    """Both entry points sync the model folder on its own (each file listed), and each
    cluster's render deploys the model."""
    assert name in _listed(repo, f"overlays/{env}/models/kustomization.yaml")
    for rel, (field, object_name, path) in _sync_files(env, name).items():
        data = load_yaml(repo, rel)
        assert data["metadata"]["name"] == object_name, rel
        value = data
        for key in field:
            value = value[key]
        assert value == path, rel
        assert Path(rel).name in _listed(repo, f"{Path(rel).parent}/kustomization.yaml")
        cluster = render(repo, str(Path(rel).parent.parent))
        _workload(cluster, f"vllm-{name}")


def _flux_timeout_s(repo: Path, env: str, name: str) -> float:
    timeout = load_yaml(repo, f"clusters/{env}/flux/models/{name}.yaml")["spec"]["timeout"]
    return (duration_hours(timeout) or 0.0) * 3600


def _startup_s(workload: VllmWorkload) -> int:
    """How long the rendered startup probe lets the model start."""
    containers = workload.resource.get("spec", "template", "spec", "containers")
    probe = next(c["startupProbe"] for c in containers if "startupProbe" in c)
    return int(probe.get("initialDelaySeconds", 0)
               + probe.get("periodSeconds", 10) * probe["failureThreshold"])


def _assert_gone(repo: Path, env: str, name: str) -> None:
    assert not (repo / f"overlays/{env}/models/{name}").exists()
    assert name not in _listed(repo, f"overlays/{env}/models/kustomization.yaml")
    for rel in _sync_files(env, name):
        assert not (repo / rel).exists(), rel
        assert Path(rel).name not in _listed(repo, f"{Path(rel).parent}/kustomization.yaml")


def _assert_clean(repo: Path) -> None:
    """The whole repository validates and its routes are up to date."""
    whole = validate(repo)
    assert whole.code == 0 and "OK: 0 errors" in whole.stdout, whole.output
    routes = routes_check(repo)
    assert routes.code == 0 and "stale" not in routes.stdout, routes.output


def test_small_model_in_dev_then_rerun_refuse_remove(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    pristine = snapshot(repo)
    infra_before = (repo / "overlays/dev/infrastructure/kustomization.yaml").read_text()

    added = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev")
    assert added.code == 0, added.output
    assert "OK: 0 errors" in added.stdout and "git add clusters/dev overlays/dev" in added.stdout
    assert "Flux Kustomization model-qwen3-0-6b" in added.stdout
    assert "Argo CD Application dev-model-qwen3-0-6b" in added.stdout
    workload = _assert_served(repo, "dev", "qwen3-0-6b", "Qwen/Qwen3-0.6B")
    assert workload.gpus == 1
    _assert_synced(repo, "dev", "qwen3-0-6b")
    assert _flux_timeout_s(repo, "dev", "qwen3-0-6b") == 45 * 60  # qwen3's: long enough
    _assert_clean(repo)
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
    model_yaml = (repo / "overlays/dev/models/qwen3-0-6b/model.yaml").read_text()
    assert "- --max-model-len=8192" in model_yaml and "32768" not in model_yaml

    removed = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--remove")
    assert removed.code == 0, removed.output
    _assert_gone(repo, "dev", "qwen3-0-6b")
    assert "qwen3" in _listed(repo, "overlays/dev/models/kustomization.yaml")
    assert "qwen3-0-6b" not in (repo / "overlays/dev/apps/models.yaml").read_text()
    assert "NodePools in infrastructure/ are left" in removed.stdout
    assert "clusters/dev/flux/models/qwen3-0-6b.yaml" in removed.stdout
    assert snapshot(repo) == pristine  # removal undoes the addition exactly

    gone = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--remove")
    assert gone.code == 2 and "there is no model 'qwen3-0-6b' in dev" in gone.stderr


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

    _assert_synced(repo, "prod", "llama-3-1-70b-instruct")
    # Flux waits for its first rollout: node launch, image pull and the whole probe budget.
    timeout = _flux_timeout_s(repo, "prod", "llama-3-1-70b-instruct")
    assert timeout >= _startup_s(workload) + NODE_AND_PULL_S and timeout > 45 * 60
    flux = (repo / "clusters/prod/flux/models/llama-3-1-70b-instruct.yaml").read_text()
    assert "# First rollout: GPU node launch and image pull (~15 min)" in flux
    assert "startupProbe allows up to 30 min" not in flux
    _assert_clean(repo)


def test_moe_in_staging_autoscaled_after_a_dry_run(tmp_path: Path) -> None:
    """... and the new sync files keep what was customised in their sibling (qwen3's)."""
    repo = copy_repo(tmp_path / "repo")
    flux = repo / "clusters/staging/flux/models/qwen3.yaml"
    flux.write_text(flux.read_text().replace(
        "interval: 10m", "interval: 20m  # qwen3 polls less often"))
    args = ("Qwen/Qwen3-30B-A3B", "--env", "staging", "--min-replicas", "1",
            "--max-replicas", "2")
    before = snapshot(repo)
    dry = new_model(repo, *args, "--dry-run")
    assert dry.code == 0, dry.output
    assert "+++ b/overlays/staging/models/qwen3-30b-a3b/model.yaml" in dry.stdout
    assert "+++ b/clusters/staging/flux/models/qwen3-30b-a3b.yaml" in dry.stdout
    assert "+++ b/clusters/staging/argocd/models/qwen3-30b-a3b.yaml" in dry.stdout
    assert "Dry run: nothing written" in dry.stdout
    assert snapshot(repo) == before

    run = new_model(repo, *args)
    assert run.code == 0, run.output
    workload = _assert_served(repo, "staging", "qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B")
    assert (workload.replicas, workload.max_replicas) == (1, 2)
    assert workload.flags.get("--reasoning-parser") == "qwen3"
    seqs = int(workload.flags["--max-num-seqs"] or 0)
    assert 1 <= seqs < 256  # sized for ~2k-token requests, not vLLM's default
    _assert_synced(repo, "staging", "qwen3-30b-a3b")
    added = (repo / "clusters/staging/flux/models/qwen3-30b-a3b.yaml").read_text()
    assert "interval: 20m  # qwen3-30b-a3b polls less often" in added
    _assert_clean(repo)


def test_an_entry_point_without_models_folder_gets_one(tmp_path: Path) -> None:
    """dev without models and without clusters/dev/argocd/models/: new-model creates that
    folder and lists it in the entry point (all or nothing); --remove leaves it, empty."""
    repo = copy_repo(tmp_path / "repo")
    emptied = new_model(repo, "Qwen/Qwen3-14B", "--env", "dev", "--name", "qwen3", "--remove")
    assert emptied.code == 0, emptied.output
    entry = repo / "clusters/dev/argocd/kustomization.yaml"
    committed = entry.read_text()
    models = repo / "clusters/dev/argocd/models"
    shutil.rmtree(models)
    entry.write_text(committed.replace("  - models\n", ""))
    _assert_clean(repo)

    before = snapshot(repo)
    # Interrupted after both files of the new folder are written: folder and all undone.
    interrupted = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", env={INTERRUPT_HOOK: "5"})
    assert interrupted.code == 2 and "nothing changed" in interrupted.stderr, interrupted.output
    assert snapshot(repo) == before and not models.exists()

    added = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev")
    assert added.code == 0 and "OK: 0 errors" in added.stdout, added.output
    assert entry.read_text() == committed
    listing = (models / "kustomization.yaml").read_text()
    assert listing.startswith("# One Argo CD Application per model folder of overlays/dev/")
    assert _listed(repo, "clusters/dev/argocd/models/kustomization.yaml") == ["qwen3-0-6b.yaml"]
    _assert_synced(repo, "dev", "qwen3-0-6b")
    _assert_clean(repo)

    removed = new_model(repo, "Qwen/Qwen3-0.6B", "--env", "dev", "--remove")
    assert removed.code == 0, removed.output
    assert load_yaml(repo, "clusters/dev/argocd/models/kustomization.yaml")["resources"] == []
    assert entry.read_text() == committed
    _assert_clean(repo)

"""`tools/new-model MODEL --env ENV`: add (or remove) a model, sized, routed and validated.

Exit codes: 0 done (or nothing to change; a dry run that would pass), 1 validation found new
errors (nothing is written unless --keep-on-error), 2 bad input, a refusal (the model exists
with other settings and no --force) or an interrupted write (everything restored).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vllm_gitops.cli.common import guarded, new_app
from vllm_gitops.errors import EXIT_FINDINGS, EXIT_OK
from vllm_gitops.newmodel import inputs
from vllm_gitops.newmodel.run import Outcome, Refused, run
from vllm_gitops.newmodel.scaffold import folder_of, models_list
from vllm_gitops.newmodel.transaction import apply
from vllm_gitops.pipeline import Report
from vllm_gitops.report.text import render
from vllm_gitops.settings import find_repo_root

# "\b" keeps click from re-wrapping the example lines.
EPILOG = """\b
Examples:
  tools/new-model Qwen/Qwen3-8B --env dev                     # cheapest GPU that fits
  tools/new-model meta-llama/Llama-3.1-70B-Instruct --env prod \\
      --min-replicas 1 --max-replicas 2                       # autoscaled 1..2
  tools/new-model Qwen/Qwen3-30B-A3B --env staging --dry-run  # diff only, write nothing
  tools/new-model Qwen/Qwen3-8B --env dev --remove            # take it out again

Writes overlays/<env>/models/<name>/, lists it in overlays/<env>/models/kustomization.yaml,
writes its sync files clusters/<env>/flux/models/<name>.yaml (Flux Kustomization) and
clusters/<env>/argocd/models/<name>.yaml (Argo CD Application), each listed in its folder's
kustomization.yaml (created and listed in the entry point when missing; the Flux timeout
covers the model's startup), and regenerates overlays/<env>/apps/models.yaml (LiteLLM
routes).
After a run: git add overlays/<env> clusters/<env> && open a pull request (CI runs make
validate)."""

app = new_app()


@app.command(epilog=EPILOG)
def main(
    model: Annotated[str, typer.Argument(
        help="Hugging Face model id, e.g. Qwen/Qwen3-8B or meta-llama/Llama-3.1-70B-Instruct.")],
    env: Annotated[str, typer.Option(
        "--env", help="Environment (folder overlays/<env>), e.g. --env prod.")],
    gpu_family: Annotated[str | None, typer.Option(
        "--gpu-family", help="GPU-family component of base/components, e.g. --gpu-family "
        "gpu-g6e-1x (default: the cheapest that fits).")] = None,
    instance_type: Annotated[str | None, typer.Option(
        "--instance-type", help="Pin an EC2 instance type, e.g. --instance-type "
        "g6e.12xlarge.")] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(
        "--tensor-parallel-size", "-tp", help="GPUs per replica, e.g. "
        "--tensor-parallel-size 4 (default: every GPU of the node).")] = None,
    max_model_len: Annotated[int | None, typer.Option(
        "--max-model-len", help="Context length, e.g. --max-model-len 32768 (default: 32768 "
        "or the model's maximum if smaller; shorter if the KV cache needs it).")] = None,
    replicas: Annotated[int | None, typer.Option(
        "--replicas", help="Fixed replica count, e.g. --replicas 2 (default 1).")] = None,
    min_replicas: Annotated[int | None, typer.Option(
        "--min-replicas", help="Autoscaled (HPA on the request queue): lower bound, e.g. "
        "--min-replicas 1.")] = None,
    max_replicas: Annotated[int | None, typer.Option(
        "--max-replicas", help="Autoscaled: upper bound, e.g. --max-replicas 3.")] = None,
    served_model_name: Annotated[str | None, typer.Option(
        "--served-model-name", help="Name vLLM answers to, e.g. --served-model-name "
        "llama-70b (default: the model id).")] = None,
    route: Annotated[str | None, typer.Option(
        "--route", help="LiteLLM model_name clients ask for, e.g. --route vllm-server-llama "
        "(default: vllm-server-<name>).")] = None,
    name: Annotated[str | None, typer.Option(
        "--name", help="Folder and object suffix, e.g. --name llama70b -> vllm-llama70b "
        "(default: from the model id).")] = None,
    model_config: Annotated[Path | None, typer.Option(
        "--model-config", help="The model's config.json when it is not in catalog/models, "
        "e.g. --model-config ./config.json.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the diff and the validation verdict and write nothing, "
        "e.g. --dry-run.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing model folder with other settings, e.g. rerun "
        "with --force --max-model-len 16384.")] = False,
    remove: Annotated[bool, typer.Option(
        "--remove", help="Take the model out of the environment (folder, its Flux and Argo CD "
        "files, list entries, routes; NodePools stay), e.g. --remove.")] = False,
    keep_on_error: Annotated[bool, typer.Option(
        "--keep-on-error", help="Write the files even when validation finds errors (to fix "
        "them by hand), e.g. --keep-on-error.")] = False,
) -> None:
    """Add a model to an environment: pick GPUs with the sizing engine, write
    overlays/<env>/models/<name>/ and the Flux Kustomization and Argo CD Application that sync
    it (clusters/<env>/*/models/<name>.yaml), list them, regenerate the routes, validate."""

    def body() -> int:
        root = find_repo_root(Path.cwd())
        request = _request(root, model, env, gpu_family, instance_type, tensor_parallel_size,
                           max_model_len, replicas, min_replicas, max_replicas,
                           served_model_name, route, name, model_config, remove)
        return _execute(request, root, dry_run, force, keep_on_error)

    raise typer.Exit(guarded(body))


def _request(root: Path, model: str, env: str, gpu_family: str | None,
             instance_type: str | None, tp: int | None, max_model_len: int | None,
             replicas: int | None, min_replicas: int | None, max_replicas: int | None,
             served: str | None, route: str | None, name: str | None,
             model_config: Path | None, remove: bool) -> inputs.Request:
    inputs.check_model_id(model)
    inputs.check_env(root, env)
    inputs.check_positive("--tensor-parallel-size", tp)
    inputs.check_positive("--max-model-len", max_model_len)
    inputs.check_model_config(model_config)
    low, high, autoscaled = inputs.replica_range(replicas, min_replicas, max_replicas)
    folder_name = name if name is not None else inputs.default_name(model)
    inputs.check_name_shape(folder_name)
    request = inputs.Request(
        model_id=model, env=env, name=folder_name, served_model_name=served or model,
        route=route or f"vllm-server-{folder_name}", gpu_family=gpu_family,
        instance_type=instance_type, tensor_parallel_size=tp, max_model_len=max_model_len,
        min_replicas=low, max_replicas=high, autoscaled=autoscaled,
        model_config=model_config.resolve() if model_config else None, remove=remove)
    inputs.check_public_name("--served-model-name", request.served_model_name)
    inputs.check_public_name("--route", request.route)
    return request


def _execute(request: inputs.Request, root: Path, dry_run: bool, force: bool,
             keep_on_error: bool) -> int:
    console = Console(highlight=False, soft_wrap=True)
    try:
        outcome = run(request, root, force=force)
    except Refused as refused:
        sys.stdout.write(refused.diff)
        raise
    if outcome.nothing_to_change:
        what = "is not in" if request.remove else "is already in"
        console.print(f"nothing to change: {request.name} {what} {request.env} as asked")
        return EXIT_OK
    failed = bool(outcome.new_errors)
    if dry_run:
        sys.stdout.write(outcome.diff)
    if failed:
        _print_findings(outcome)
    write = not dry_run and (not failed or keep_on_error)
    if write:
        apply(root, outcome.changes)
    _summary(console, outcome, dry_run, written=write)
    return EXIT_FINDINGS if failed else EXIT_OK


def _print_findings(outcome: Outcome) -> None:
    report = Report(findings=outcome.new_errors, targets=outcome.report.targets
                    if outcome.report else 0)
    sys.stdout.write("Validation of the changed environment found new errors:\n")
    sys.stdout.write(render(report))


def _summary(console: Console, outcome: Outcome, dry_run: bool, written: bool) -> None:
    req = outcome.request
    table = Table(title=f"tools/new-model {req.model_id} --env {req.env}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in _rows(outcome):
        table.add_row(key, value)
    console.print(table)
    paths = outcome.changes.paths()
    verb = "would change" if not written else "changed"
    console.print(f"Files {verb}:")
    for path in paths:
        console.print(f"  {path}")
    if written:
        folders = sorted({_git_folder(path, req.env) for path in paths})
        console.print(f"Next: git add {' '.join(folders)} && open a pull request "
                      "(CI runs make validate)")
    elif dry_run:
        console.print("Dry run: nothing written.")
    else:
        console.print("Nothing written (validation failed; --keep-on-error writes anyway).")


def _git_folder(path: str, env: str) -> str:
    """What `git add` takes for a changed file: the environment's folder, else its own."""
    for top in ("overlays", "clusters"):
        if path.startswith(f"{top}/{env}/"):
            return f"{top}/{env}"
    return path.rsplit("/", 1)[0]


def _rows(outcome: Outcome) -> list[tuple[str, str]]:
    req = outcome.request
    listed = "" if req.remove else f", listed in {models_list(req.env)}"
    rows = [("model", f"{req.model_id} -> folder {folder_of(req)}{listed}")]
    if req.remove:
        files = ", ".join(u.path for u in outcome.sync if u.path in outcome.changes.files)
        rows.append(("removed", f"model folder and its entry, its sync files ({files or 'none'}) "
                     "and their entries, its route; NodePools in infrastructure/ are left as "
                     "they are (other models may use them): remove one by hand if nothing "
                     "needs it"))
    else:
        rows += [("synced by", "\n".join(f"{u.tool.label} {u.name} ({u.path}, listed in "
                                         f"{u.listing})" for u in outcome.sync) or "nothing")]
    choice, sizing = outcome.choice, outcome.sizing
    if choice is not None and sizing is not None:
        inst = choice.instance
        price = inst.usd_per_hour or 0.0
        rows += [
            ("picked", f"{inst.name} ({inst.gpus} x {inst.gpu.key}), GPU family "
                       f"{choice.offer.family.component}, NodePool {choice.offer.pool.name}"),
            ("why", "\n".join(choice.reasons)),
            ("vLLM", f"--tensor-parallel-size={choice.tensor_parallel_size} (GPUs = TP x PP = "
                     f"{choice.gpus}) --max-model-len={choice.max_model_len} "
                     f"--max-num-seqs={choice.max_num_seqs}"),
            ("pod", f"{sizing.cpu} CPU, {sizing.memory_gib}Gi memory, {sizing.shm_gib}Gi "
                    f"/dev/shm, {sizing.cache_gib}Gi model cache, startup probe "
                    f"{sizing.probe_budget_s} s"),
            ("replicas", f"{req.min_replicas}..{req.max_replicas} (HPA)" if req.autoscaled
             else str(req.min_replicas)),
            ("cost", _cost(req, price)),
            ("route", f"{req.route} -> {req.served_model_name}"),
        ]
        karpenter = outcome.karpenter
        if karpenter is not None:
            rows.append(("Karpenter", karpenter.reason))
    rows += [("warning", note) for note in outcome.notes]
    rows.append(("validation", _verdict(outcome)))
    return rows


def _cost(req: inputs.Request, price: float) -> str:
    low = f"${req.min_replicas * price:.2f}/h with {req.min_replicas} replica(s)"
    if req.max_replicas == req.min_replicas:
        return f"{low} (us-east-1 on-demand)"
    return (f"{low}, ${req.max_replicas * price:.2f}/h with {req.max_replicas} "
            "(us-east-1 on-demand)")


def _verdict(outcome: Outcome) -> str:
    report = outcome.report
    if report is None:
        return "not run"
    summary = report.summary()
    text = (f"{summary['errors']} errors, {summary['warnings']} warnings in "
            f"{summary['targets']} targets of {outcome.request.env} "
            f"({summary['resources']} resources)")
    if outcome.old_errors:
        text += f"; {outcome.old_errors} error(s) were there before this change"
    return ("FAILED: " if outcome.new_errors else "OK: ") + text


if __name__ == "__main__":
    app()


__all__ = ["app"]

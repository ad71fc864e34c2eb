"""Probe rules: the kubelet gives vLLM time enough to download and load its model."""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.quantity import MB
from vllm_gitops.topology import startup_plan, vllm_servers


@rule(
    "probes/startup-budget", Severity.ERROR,
    "the startup (or liveness) probe kills vLLM before it can load the model",
    why="""Before vLLM answers /health it downloads the weights (tens of GB on a first start),
    loads them into the GPUs and compiles. The kubelet restarts the container when the
    startupProbe (or, without one, the livenessProbe) has failed for initialDelaySeconds +
    failureThreshold x periodSeconds. If that budget is shorter than the start, the pod is
    killed mid-load and restarts forever (CrashLoopBackOff) without ever serving.""",
    fix="""Add a startupProbe on /health with failureThreshold x periodSeconds above the
    estimate in the message (tools/plan shows it), and keep liveness short: it only starts
    once the startup probe has succeeded.""",
)
def startup_budget(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        budget = server.kill_budget_s
        if budget is None:
            continue  # nothing kills a slow start
        planned = startup_plan(scope, server)
        if planned is None or planned.result is None or planned.result.startup is None:
            continue  # unknown model or hardware: say nothing rather than guess
        startup = planned.result.startup
        if budget >= startup.cold_s:
            continue
        kind = "startupProbe" if "startupProbe" in server.probes else "livenessProbe"
        yield Violation(server.resource, (
            f"{server.container}: {kind} budget {budget:,.0f} s < estimated cold start "
            f"{startup.cold_s:,.0f} s for {server.model} (download "
            f"{startup.weight_bytes / MB / 1000:,.0f} GB at {startup.download_mb_s:,.0f} MB/s, "
            f"load {startup.load_s:,.0f} s, compile and CUDA graphs "
            f"{startup.compile_s + startup.cudagraph_s:,.0f} s); allow at least "
            f"{startup.recommended_probe_s:,} s"), (*server.container_path, kind))

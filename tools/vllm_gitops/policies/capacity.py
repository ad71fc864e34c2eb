"""Capacity rules: does the server run as many requests at once as its memory holds?"""

from __future__ import annotations

from collections.abc import Iterator

from vllm_gitops.findings import Severity
from vllm_gitops.policies.registry import Violation, rule
from vllm_gitops.scope import Scope
from vllm_gitops.sizing.traffic import (
    CAP_FACTOR,
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    concurrency_for,
)
from vllm_gitops.topology import engine_version, memory_plan, vllm_servers


@rule(
    "capacity/max-num-seqs-cap", Severity.WARNING,
    "--max-num-seqs caps concurrent requests far below what the KV cache holds",
    why=f"""vLLM runs at most --max-num-seqs requests at once and queues the rest. It gives
    KV-cache pages to a request as it grows, so a value sized for every request being as long
    as --max-model-len leaves most of the GPU memory idle under ordinary traffic: requests wait
    in the queue (slow first tokens, timeouts at the gateway) while the cache could hold
    {CAP_FACTOR:g} times more of them or better ({DEFAULT_PROMPT_TOKENS}-token prompts with
    {DEFAULT_OUTPUT_TOKENS}-token answers, on the smallest GPU the pod can land on).""",
    fix="""Raise --max-num-seqs to the value in the message (tools/plan PATH prints it with
    the matching --max-num-batched-tokens; pass --prompt-tokens/--output-tokens for other
    traffic), or remove the flag to keep vLLM's default.""",
)
def max_num_seqs_cap(scope: Scope) -> Iterator[Violation]:
    for server in vllm_servers(scope):
        if server.engine_args.max_num_seqs is None:
            continue  # vLLM's own default: not a choice this repository made
        planned = memory_plan(scope, server)
        if planned is None:
            continue  # unknown model or hardware
        result, hardware = planned
        conc = concurrency_for(result.model, hardware.gpu, server.engine_args,
                               engine_version(server), result.memory)
        if conc is None or not conc.capped:
            continue
        yield Violation(server.resource, (
            f"{server.container}: {server.model} on {hardware.gpu.device_name}: "
            f"{conc.cap_message()}"), (*server.container_path, "args"))

"""`tools/diff` output: markdown (a pull-request comment), json, text."""

from __future__ import annotations

import json
from typing import Any

from vllm_gitops.diff import ClusterDiff, DiffReport
from vllm_gitops.diff.cost import ModelChange
from vllm_gitops.diff.hazards import DATA_LOSS, DISRUPTION, REFUSED, RESTART

# GitHub refuses comments over 65,536 characters; keep room for the summary.
MAX_COMMENT_CHARS = 60_000
MAX_DIFF_LINES = 200
COMMENT_MARKER = "<!-- vllm-gitops-diff -->"  # lets CI update its own comment
_ICONS = {REFUSED: "⛔", DATA_LOSS: "💾", DISRUPTION: "⚠️", RESTART: "🔄"}
_LABELS = {REFUSED: "apply refused", DATA_LOSS: "data loss", DISRUPTION: "clients disrupted",
           RESTART: "restarts serving pods"}


def money(value: tuple[float, float] | None) -> str:
    if value is None:
        return "—"
    low, high = value
    return f"${low:,.2f}/h" if low == high else f"${low:,.2f}–{high:,.2f}/h"


def _counts(cluster: ClusterDiff) -> str:
    c = cluster.changes
    return f"+{c.count('added')} −{c.count('removed')} ~{c.count('changed')}"


def _hazard_summary(cluster: ClusterDiff) -> str:
    parts = [f"{_ICONS[k]} {cluster.hazard_count(k)} {_LABELS[k]}" for k in _LABELS
             if cluster.hazard_count(k)]
    return ", ".join(parts) or "none"


def _model_line(change: ModelChange) -> str:
    name = f"{change.key[1]} {change.key[3]}"
    if change.before is None:
        return f"{name}: new — {_facts(change.after)}"
    if change.after is None:
        return f"{name}: removed (was {_facts(change.before)})"
    fields = ", ".join(f"{f} {change.before.get(f)!s} → {change.after.get(f)!s}"
                       for f in change.changed_fields)
    return f"{name}: {fields}"


def _facts(facts: dict[str, Any] | None) -> str:
    if not facts:
        return "?"
    starts = {True: "starts", False: "does NOT start", None: "fit unknown"}[facts["starts"]]
    text = (f"{facts['model']} on {facts['instance_type'] or 'unknown instance'}, {starts}, "
            f"context {facts['longest_context']}, {facts['replicas']}–{facts['max_replicas']} "
            "replicas")
    return text + (f" ({facts['failure']})" if facts.get("failure") else "")


# ---------------------------------------------------------------- markdown


def markdown(report: DiffReport) -> str:
    changed = [c for c in report.clusters if not c.unchanged]
    lines = [COMMENT_MARKER, "### Rendered changes per cluster", "",
             f"Base `{report.base}` → head `{report.head}`.", ""]
    if not changed:
        return "\n".join([*lines, "No cluster's rendered manifests change.", ""])
    lines += ["| cluster | resources | hazards | cost before | cost after |",
              "|---|---|---|---|---|"]
    for c in report.clusters:
        star = "" if not c.unpriced else " *"
        lines.append(f"| `{c.name}` | {_counts(c)} | {_hazard_summary(c)} | "
                     f"{money(c.cost_before)} | {money(c.cost_after)}{star} |")
    if any(c.unpriced for c in report.clusters):
        lines += ["", "\\* a model server's instance type (so its price) is unknown at one "
                  "revision; the sum leaves it out."]
    lines.append("")
    budget = MAX_COMMENT_CHARS - sum(len(x) + 1 for x in lines)
    for cluster in changed:
        section = _markdown_cluster(cluster)
        if len(section) > budget:
            section = _markdown_cluster(cluster, with_diffs=False)
        if len(section) > budget:
            lines.append(f"_{cluster.name}: too large for a comment; run `tools/diff` locally._")
            continue
        budget -= len(section)
        lines.append(section)
    return "\n".join(lines) + "\n"


def _markdown_cluster(cluster: ClusterDiff, with_diffs: bool = True) -> str:
    out = ["<details>", f"<summary><b>{cluster.name}</b> ({cluster.status}): {_counts(cluster)}, "
           f"{_hazard_summary(cluster)}</summary>", ""]
    for side, errors in cluster.render_errors.items():
        out += [f"**Does not render at {side}** (nothing compared; `tools/validate` tells "
                "more):", ""] + [f"- {e}" for e in errors] + [""]
    if cluster.changes.hazards:
        out += ["**Review before merging:**", ""]
        out += [f"- {_ICONS[h.kind]} **{_LABELS[h.kind]}**: `{h.resource}`: {h.message}"
                for h in cluster.changes.hazards]
        out.append("")
    if cluster.models:
        out += ["**Model servers:**", ""] + [f"- {_model_line(m)}" for m in cluster.models] + [""]
    for change in cluster.changes.resources:
        if with_diffs:
            out += [f"<details><summary>{change.status}: <code>{change.title}</code></summary>",
                    "", "```diff", _clip(change.diff).rstrip("\n"), "```", "</details>"]
        else:
            out.append(f"- {change.status}: `{change.title}`")
    out += ["", "</details>", ""]
    return "\n".join(out)


def _clip(diff: str) -> str:
    lines = diff.splitlines(keepends=True)
    if len(lines) <= MAX_DIFF_LINES:
        return diff.replace("```", "`\u200b``")
    kept = "".join(lines[:MAX_DIFF_LINES]).replace("```", "`\u200b``")
    return kept + f"... {len(lines) - MAX_DIFF_LINES} more lines (run tools/diff locally)\n"


# ---------------------------------------------------------------- json, text


def json_text(report: DiffReport) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"


def text(report: DiffReport) -> str:
    lines = [f"base {report.base} -> head {report.head}"]
    changed = [c for c in report.clusters if not c.unchanged]
    if not changed:
        return "\n".join([*lines, "no cluster's rendered manifests change", ""])
    for c in report.clusters:
        lines.append(f"{c.name}: {_counts(c)}; hazards: {_hazard_summary(c)}; cost "
                     f"{money(c.cost_before)} -> {money(c.cost_after)}")
    for cluster in changed:
        lines += ["", f"== {cluster.name} ({cluster.status})"]
        for side, errors in cluster.render_errors.items():
            lines += [f"render error at {side}: {e}" for e in errors]
        lines += [f"[{h.kind}] {h.resource}: {h.message}" for h in cluster.changes.hazards]
        lines += [f"[model] {_model_line(m)}" for m in cluster.models]
        for change in cluster.changes.resources:
            lines += [f"-- {change.status}: {change.title}", change.diff.rstrip("\n")]
    return "\n".join(lines) + "\n"


FORMATS = {"markdown": markdown, "json": json_text, "text": text}

"""Plain-text renderings of the :mod:`gepetto.runview` data for the terminal.

Each function takes the data of one view and returns the text to print; nothing here reads
a store or computes a number the data does not hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from gepetto.runview import CandidateDetail, RunComparison, RunSummary

__all__ = ["candidate_text", "comparison_text", "summary_text"]


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _when(epoch: float | None) -> str:
    if epoch is None or epoch <= 0:
        return "-"
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _budget(head: RunSummary) -> str:
    if head.budget_total is None:
        return f"{head.budget_used} metric calls (no budget)"
    share = head.budget_used / head.budget_total if head.budget_total else 0.0
    return f"{head.budget_used} / {head.budget_total} metric calls ({share:.0%})"


def _cost(head: RunSummary) -> str:
    text = f"${head.cost_usd:.4f}"
    if head.unpriced_lm_calls:
        text += f" (+{head.unpriced_lm_calls} LM calls of unknown price)"
    return text


def summary_text(head: RunSummary) -> str:
    """``gepetto status``: one line per fact."""
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(head.outcomes.items())) or "none yet"
    calls = ", ".join(f"{n} {role}" for role, n in head.lm_calls.items()) or "none recorded"
    lines = [
        f"run        {head.run_id} in {head.source}",
        f"status     {head.status}" + (f": {head.stop_reason}" if head.stop_reason else ""),
        f"started    {_when(head.created_at)}; last event {_when(head.updated_at)}",
        f"budget     {_budget(head)}",
        f"cost       {_cost(head)}; LM calls: {calls}",
        f"iterations {head.iterations} ({outcomes})",
        f"pool       {head.pool_size} candidates, {head.valset_size} validation examples",
        f"best       candidate {head.best_id}: {_score(head.best_score)}",
        f"front      {', '.join(map(str, head.front)) or '-'} "
        f"(aggregate score {_score(head.front_mean)})",
    ]
    return "\n".join(lines)


def _block(title: str, text: str) -> str:
    body = text if text.endswith("\n") else text + "\n"
    return f"--- {title} ---\n{body}"


def candidate_text(detail: CandidateDetail, *, prompts: bool = True) -> str:
    """``gepetto show``: texts, scores, parents, diffs and the reflection that made it."""
    parents = ", ".join(map(str, detail.parents)) or "none (the seed)"
    children = ", ".join(map(str, detail.children)) or "none"
    role = {"best": " (best)", "front": " (on the Pareto front)"}.get(detail.role, "")
    scores = " ".join(f"{e}:{_score(s)}" for e, s in detail.val_scores.items())
    parts = [
        f"candidate {detail.id}{role}: validation score {_score(detail.score)} on "
        f"{detail.coverage} examples",
        f"origin {detail.origin}, iteration {detail.iteration}, parents {parents}, "
        f"children {children}, found after {detail.metric_calls} metric calls",
        f"scores by example: {scores or '-'}",
    ]
    if detail.decision is not None:
        parts.append(f"accepted: {detail.decision['reason']}")
    parts.append("")
    for name, text in detail.texts.items():
        parts.append(_block(f"text: {name}", text))
    for parent, diffs in detail.diffs.items():
        if not diffs:
            parts.append(f"(same texts as candidate {parent})\n")
        for name, diff in diffs.items():
            parts.append(_block(f"diff to candidate {parent}: {name}", diff))
    reflection = detail.reflection
    if reflection is not None:
        parts.extend(_reflection_blocks(reflection, prompts=prompts))
    return "\n".join(parts).rstrip("\n") + "\n"


def _reflection_blocks(reflection: Mapping[str, Any], *, prompts: bool) -> list[str]:
    blocks = []
    for name, why in dict(reflection.get("failures") or {}).items():
        blocks.append(f"reflection on {name} gave no usable text: {why}\n")
    for name, why in dict(reflection.get("flags") or {}).items():
        blocks.append(f"reflection on {name} was flagged: {why}\n")
    prompt_map = dict(reflection.get("prompts") or {})
    replies = dict(reflection.get("replies") or {})
    if prompts:
        for name, prompt in prompt_map.items():
            blocks.append(_block(f"reflection prompt: {name}", _prompt_text(prompt)))
    for name, reply in replies.items():
        blocks.append(_block(f"reflection reply: {name}", str(reply)))
    if not prompt_map and not replies:
        blocks.append("(no reflection prompt kept: the run folder has no event log)\n")
    return blocks


def _prompt_text(prompt: Any) -> str:
    """A prompt as text: a string, or chat messages as ``role: content`` paragraphs."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n\n".join(
            f"{m.get('role', '?')}: {m.get('content', '')}" if isinstance(m, dict) else str(m)
            for m in prompt
        )
    return str(prompt)


def comparison_text(comparison: RunComparison) -> str:
    """``gepetto compare``: the two summaries side by side, then the best texts' diff."""
    a, b = comparison.a, comparison.b
    rows = [
        ("run", f"{a.run_id} in {a.source}", f"{b.run_id} in {b.source}"),
        ("status", a.status, b.status),
        ("best", f"{a.best_id}: {_score(a.best_score)}", f"{b.best_id}: {_score(b.best_score)}"),
        ("front aggr.", _score(a.front_mean), _score(b.front_mean)),
        ("budget", _budget(a), _budget(b)),
        ("cost", _cost(a), _cost(b)),
        ("iterations", str(a.iterations), str(b.iterations)),
        ("pool", str(a.pool_size), str(b.pool_size)),
    ]
    width = max(len(row[1]) for row in rows) + 2
    lines = [f"{'':<11}{'A':<{width}}B"]
    lines += [f"{name:<11}{left:<{width}}{right}" for name, left, right in rows]
    wins = comparison.wins
    lines.append(
        f"\nbest candidates on the {len(comparison.shared_examples)} validation examples both "
        f"were scored on: A {_score(comparison.a_mean_shared)}, B "
        f"{_score(comparison.b_mean_shared)} (A better on {wins.get('a', 0)}, B better on "
        f"{wins.get('b', 0)}, tied on {wins.get('tie', 0)})"
    )
    if not comparison.best_diffs:
        lines.append("the best candidates have the same texts")
    for name, diff in comparison.best_diffs.items():
        lines.append("\n" + _block(f"best A -> best B: {name}", diff).rstrip("\n"))
    return "\n".join(lines) + "\n"

"""The results file of ``bench/quality.py`` and its tables (one JSON object a line, a run)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

REFERENCES = ("seed-prompt", "hand-written")  # real mode only: one evaluation, no optimizer
GEPA = "gepa"


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["mode"], row["task"], row["name"], row["seed"], row["budget"])


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of the results file; a torn last line (a crash mid-write) is ignored."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


_LABELS = {
    GEPA: "gepa 0.1.4",
    "seed-prompt": "seed prompt",
    "hand-written": "hand-written",
    "default": "gepetto defaults",
    "early-reject": "gepetto defaults with early rejection (2026-11-29)",
    "history-0+examples": "gepetto defaults, no history, first runs (examples)",
}


PREVIOUS = "previous-template"
"""Rows run with the rules-only default template of before 2026-11-28 are named
``previous-template`` (the defaults then) or ``previous-template+<variant>``; their kwargs
hold that template."""


NO_HISTORY = "history-0"
"""Rows run while ``reflection_history`` defaulted to 0 (before the evening of 2026-11-28)
are named ``history-0`` (the defaults then) or ``history-0+<variant>``; their kwargs hold
``reflection_history=0``. The ``history-3`` rows of that time are the ``default`` rows now."""


def label(row: dict[str, Any]) -> str:
    """How a row's optimizer is named in tables and progress lines."""
    name = row["name"]
    if name in _LABELS:
        return _LABELS[name]
    for prefix, what in ((PREVIOUS, "previous template"), (NO_HISTORY, "no history")):
        if name == prefix:
            return f"gepetto defaults, {what}"
        if name.startswith(prefix + "+"):
            return f"gepetto {name.removeprefix(prefix + '+')}, {what}"
    return f"gepetto {name}"


def latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each key (a re-run with other options replaces the earlier one)."""
    by_key = {row_key(r): r for r in rows}
    return list(by_key.values())


_MEANS = ("test", "val", "val_reported", "metric_calls", "reflection_calls", "candidates", "wall_s")


def summarize(rows: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """Means over seeds per (mode, task, budget, optimizer), sorted by budget and ``order``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in sorted(latest(rows), key=lambda r: (r["seed"] is not None, r["seed"] or 0)):
        key = (row["mode"], row["task"], row["budget"], row["name"])
        groups.setdefault(key, []).append(row)
    out = []
    for (mode, task, budget, name), runs in groups.items():
        summary: dict[str, Any] = {"mode": mode, "task": task, "budget": budget, "name": name}
        summary["runs"] = runs
        for field in _MEANS:
            values = [r[field] for r in runs if r.get(field) is not None]
            summary[field] = statistics.mean(values) if values else None
        out.append(summary)
    rank = {name: i for i, name in enumerate(order)}
    out.sort(key=lambda s: (s["mode"], s["task"], s["budget"] or 0, rank.get(s["name"], 99)))
    return out


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def synthetic_table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| budget | optimizer | seeds | best val | test | test per seed | metric calls used "
        "| reflections | candidates | wall s |",
        "|--:|---|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for s in summary:
        if s["mode"] != "synthetic":
            continue
        per_seed = " / ".join(f"{r['test']:.3f}" for r in s["runs"])
        lines.append(
            f"| {s['budget']:,} | {label(s)} | {len(s['runs'])} | {s['val']:.3f} "
            f"| **{s['test']:.3f}** | {per_seed} | {s['metric_calls']:.0f} "
            f"| {s['reflection_calls']:.0f} | {s['candidates']:.1f} | {s['wall_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def real_table(summary: list[dict[str, Any]], task: str) -> str:
    lines = [
        "| budget | optimizer | seeds | test (mean) | val (mean) | val in the search "
        "| test per seed | metric calls | reflection calls | candidates | wall min |",
        "|--:|---|--:|--:|--:|--:|---|--:|--:|--:|--:|",
    ]
    for s in summary:
        if s["mode"] != "real" or s["task"] != task:
            continue
        reference = s["name"] in REFERENCES
        per_seed = " / ".join(f"{r['test']:.2f}" for r in s["runs"]) if not reference else "-"
        budget = "-" if reference else f"{s['budget']:,}"
        seeds = "-" if reference else str(len(s["runs"]))
        wall = None if s["wall_s"] is None else s["wall_s"] / 60
        lines.append(
            f"| {budget} | {label(s)} | {seeds} | **{s['test']:.2f}** | {s['val']:.2f} "
            f"| {_num(s['val_reported'], '.2f')} | {per_seed} | {_num(s['metric_calls'], '.0f')} "
            f"| {_num(s['reflection_calls'], '.0f')} | {_num(s['candidates'], '.1f')} "
            f"| {_num(wall, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def measured(rows: list[dict[str, Any]], mode: str) -> str:
    runs = [r for r in latest(rows) if r["mode"] == mode]
    if not runs:
        return "Not measured yet.\n"
    dates = sorted(r["date"] for r in runs)
    commits = sorted({r["commit"] for r in runs})
    return (
        f"{len(runs)} runs measured {dates[0]} to {dates[-1]}, at "
        + ", ".join(f"`{c}`" for c in commits)
        + f"; 1-min load average at the end of a run: {min(r['load'] for r in runs):.2f} to "
        f"{max(r['load'] for r in runs):.2f}.\n"
    )


SUITE_TASKS = (
    "tickets",
    "dates",
    "arithmetic",
    "extraction",
    "tagging",
    "atlas-rag",
    "durations-spec",
)
"""The task suite of issue #27, in the order of the suite table."""
SUITE_SINCE = "2026-12-06 11:05"
"""gepetto rows of the suite table are runs from this time on (UTC; the defaults of now: a
reply repeating a candidate already tried is asked for again); gepa 0.1.4 and the reference
prompts do not change, so all their runs count."""


def _spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}"


def suite_table(rows: list[dict[str, Any]], gepetto: str = "default") -> str:
    """One line per suite task: the hand-written reference, gepa 0.1.4 and gepetto's
    ``gepetto`` variant (mean ± standard deviation of test over seeds, metric calls,
    reflection calls, wall minutes), and the suite's mean over the tasks both have."""
    runs = [r for r in latest(rows) if r["mode"] == "real" and r["task"] in SUITE_TASKS]

    def of(task: str, name: str) -> list[dict[str, Any]]:
        return [
            r
            for r in runs
            if r["task"] == task
            and r["name"] == name
            and (name in (GEPA, *REFERENCES) or r["date"] >= SUITE_SINCE)
        ]

    lines = [
        "| task | hand-written | gepa 0.1.4 test | gepetto test | gepetto − gepa "
        "| metric calls (gepa / gepetto) | reflections | wall min |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    means: list[tuple[float, float]] = []
    for task in SUITE_TASKS:
        reference, theirs, ours = of(task, "hand-written"), of(task, GEPA), of(task, gepetto)
        if not (theirs or ours):
            continue

        def cell(group: list[dict[str, Any]], field: str, scale: float = 1.0) -> str:
            values = [r[field] / scale for r in group if r.get(field) is not None]
            return f"{statistics.mean(values):.0f}" if values else "-"

        def test(group: list[dict[str, Any]]) -> str:
            if not group:
                return "-"
            return f"{_spread([r['test'] for r in group])} ({len(group)})"

        difference = "-"
        if theirs and ours:
            theirs_mean = statistics.mean(r["test"] for r in theirs)
            ours_mean = statistics.mean(r["test"] for r in ours)
            difference = f"{ours_mean - theirs_mean:+.2f}"
            means.append((theirs_mean, ours_mean))
        hand = f"{reference[-1]['test']:.2f}" if reference else "-"
        lines.append(
            f"| {task} | {hand} | {test(theirs)} | {test(ours)} | {difference} "
            f"| {cell(theirs, 'metric_calls')} / {cell(ours, 'metric_calls')} "
            f"| {cell(theirs, 'reflection_calls')} / {cell(ours, 'reflection_calls')} "
            f"| {cell(theirs, 'wall_s', 60)} / {cell(ours, 'wall_s', 60)} |"
        )
    if means:
        gepa_mean = statistics.mean(m[0] for m in means)
        ours_mean = statistics.mean(m[1] for m in means)
        lines.append(
            f"| **suite mean** ({len(means)} tasks) | | **{gepa_mean:.3f}** | **{ours_mean:.3f}** "
            f"| **{ours_mean - gepa_mean:+.3f}** | | | |"
        )
    return "\n".join(lines) + "\n"


def paired_differences(
    rows: list[dict[str, Any]], mode: str, names: list[str], baseline: str = "default"
) -> str:
    """For each of ``names`` and each budget: its test score minus ``baseline``'s on the
    same task and seed (the seeds both ran), mean ± standard error and wins/losses; a
    markdown table."""
    runs = {
        (r["task"], r["name"], r["seed"], r["budget"]): r
        for r in latest(rows)
        if r["mode"] == mode and r["seed"] is not None
    }
    lines = [
        f"| optimizer | budget | seeds | test − {baseline} (mean ± s.e.) | better / worse |",
        "|---|--:|--:|--:|--:|",
    ]
    for name in names:
        for budget in sorted({key[3] for key in runs if key[1] == name}):
            gaps = [
                run["test"] - runs[(task, baseline, seed, budget)]["test"]
                for (task, other, seed, b), run in runs.items()
                if other == name and b == budget and (task, baseline, seed, budget) in runs
            ]
            if len(gaps) < 2:
                continue
            error = statistics.stdev(gaps) / len(gaps) ** 0.5
            lines.append(
                f"| {label({'name': name})} | {budget:,} | {len(gaps)} "
                f"| {statistics.mean(gaps):+.3f} ± {error:.3f} "
                f"| {sum(g > 0 for g in gaps)} / {sum(g < 0 for g in gaps)} |"
            )
    return "\n".join(lines) + "\n"

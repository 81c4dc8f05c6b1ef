"""A run's report: PNG plots and one self-contained HTML page, drawn from
:mod:`gepetto.runview` data.

:func:`report_data` computes everything the report shows (one call to each runview data
function); the renderers draw it and compute nothing: :func:`plot_progress` (best and
front-mean validation score against metric calls, wall time or cost), :func:`plot_front`
(each candidate's score against the calls spent when it was found, the Pareto front and the
best marked), :func:`plot_scores` (the candidates × examples score matrix),
:func:`plot_lineage` (the candidate tree) and :func:`report_html` (the page, with the plots
inlined as ``data:`` URIs, so it loads nothing from anywhere). :func:`write_report` writes
them all to a folder.

The plots need matplotlib (``pip install 'gepetto[report]'``); it is imported by the
functions that draw, with the Agg backend (no display), through :class:`~matplotlib.figure.
Figure` objects only, so no global pyplot state is touched.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gepetto.errors import ConfigError
from gepetto.runview import (
    CandidateDetail,
    Lineage,
    ProgressSeries,
    RunSummary,
    RunView,
    ScoreMatrix,
    candidate_detail,
    lineage,
    progress,
    score_matrix,
    summary,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PLOTS",
    "ReportData",
    "plot_front",
    "plot_lineage",
    "plot_progress",
    "plot_scores",
    "report_data",
    "report_html",
    "write_report",
]

XAxis = Literal["metric_calls", "elapsed_s", "cost_usd"]
_X_LABELS = {
    "metric_calls": "metric calls",
    "elapsed_s": "wall time since the run was created (s)",
    "cost_usd": "LM cost (USD, priced calls)",
}
_ROLE_COLOURS = {"best": "#00b7c7", "front": "#f28e2b", "": "#c8c8c8"}


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything a report shows, from :mod:`gepetto.runview`."""

    summary: RunSummary
    progress: ProgressSeries
    matrix: ScoreMatrix
    lineage: Lineage
    best: CandidateDetail | None

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_json(),
            "progress": self.progress.to_json(),
            "matrix": self.matrix.to_json(),
            "lineage": self.lineage.to_json(),
            "best": None if self.best is None else self.best.to_json(),
        }


def report_data(view: RunView) -> ReportData:
    """The data of a run's report (the view is read as it is; refresh it first)."""
    head = summary(view)
    best = candidate_detail(view, head.best_id) if head.best_id is not None else None
    return ReportData(head, progress(view), score_matrix(view), lineage(view), best)


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(
            "the report's plots need matplotlib: pip install 'gepetto[report]'"
        ) from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_progress(data: ReportData, path: str | os.PathLike[str], x: XAxis) -> bool:
    """Best and front-mean score against ``x``; ``False`` (nothing written) when no point
    has an ``x`` (wall time without an event log)."""
    points = [p for p in data.progress.points if p.get(x) is not None]
    if not points:
        return False
    figure = _figure(7.0, 3.8)
    axes = figure.add_subplot()
    xs = [p[x] for p in points]
    for key, label, colour, style in (
        ("best_score", "best candidate", "#1f77b4", "-"),
        ("front_mean", "Pareto front aggregate (best per example)", "#f28e2b", "--"),
    ):
        ys = [p[key] if p[key] is not None else float("nan") for p in points]
        axes.step(xs, ys, where="post", label=label, color=colour, linewidth=2, linestyle=style)
    added = [p for p in points if p["candidate_id"] is not None]
    axes.scatter(
        [p[x] for p in added],
        [p["best_score"] for p in added],
        s=14,
        color="#1f77b4",
        zorder=3,
        label="a candidate was added",
    )
    axes.set_xlabel(_X_LABELS[x])
    axes.set_ylabel("validation score")
    axes.set_title(f"run {data.summary.run_id}: score against {_X_LABELS[x].split(' (')[0]}")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.savefig(path, format="png")
    return True


def plot_front(data: ReportData, path: str | os.PathLike[str]) -> None:
    """Each candidate's mean score against the metric calls spent when it was found."""
    figure = _figure(7.0, 3.8)
    axes = figure.add_subplot()
    nodes = data.lineage.nodes
    for role, label in (("", "candidate"), ("front", "Pareto front"), ("best", "best")):
        chosen = [n for n in nodes if n["role"] == role]
        if chosen:
            axes.scatter(
                [n["metric_calls"] for n in chosen],
                [n["score"] if n["score"] is not None else float("nan") for n in chosen],
                s=46 if role else 24,
                color=_ROLE_COLOURS[role],
                edgecolors="#333333",
                linewidths=0.5,
                label=label,
                zorder=3 if role else 2,
            )
    for node in nodes:
        if node["role"] and node["score"] is not None:
            axes.annotate(
                str(node["id"]),
                (node["metric_calls"], node["score"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    axes.margins(0.08)
    axes.set_xlabel("metric calls when the candidate was found")
    axes.set_ylabel("mean validation score")
    axes.set_title(f"run {data.summary.run_id}: candidates and the Pareto front")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.savefig(path, format="png")


def plot_scores(data: ReportData, path: str | os.PathLike[str]) -> None:
    """The score matrix as a heat map (rows: candidates; columns: validation examples)."""
    matrix = data.matrix
    rows = [[v if v is not None else float("nan") for v in row] for row in matrix.scores]
    height = min(12.0, 1.6 + 0.22 * max(1, len(rows)))
    figure = _figure(7.0, height)
    axes = figure.add_subplot()
    if rows and rows[0]:
        image = axes.imshow(rows, aspect="auto", cmap="viridis", vmin=0.0, interpolation="none")
        figure.colorbar(image, ax=axes, label="score")
    axes.set_xlabel(f"validation example ({len(matrix.example_ids)})")
    axes.set_ylabel("candidate")
    if len(matrix.candidate_ids) <= 40:
        axes.set_yticks(range(len(matrix.candidate_ids)), [str(i) for i in matrix.candidate_ids])
    axes.set_title(f"run {data.summary.run_id}: validation scores")
    figure.savefig(path, format="png")


def _tree_positions(nodes: Sequence[Mapping[str, Any]]) -> dict[int, tuple[float, float]]:
    """Node centres: one row per generation, candidates left to right in id order."""
    rows: dict[int, list[int]] = {}
    for node in nodes:
        rows.setdefault(int(node["generation"]), []).append(int(node["id"]))
    width = max((len(r) for r in rows.values()), default=1)
    positions = {}
    for generation, ids in rows.items():
        offset = (width - len(ids)) / 2
        for column, candidate_id in enumerate(ids):
            positions[candidate_id] = (offset + column, -float(generation))
    return positions


def plot_lineage(data: ReportData, path: str | os.PathLike[str]) -> None:
    """The candidate tree: an arrow from each parent to its child, colours by role."""
    nodes = data.lineage.nodes
    positions = _tree_positions(nodes)
    width = max((x for x, _ in positions.values()), default=0.0) + 1
    depth = -min((y for _, y in positions.values()), default=0.0) + 1
    figure = _figure(min(16.0, max(5.0, 2.0 + 0.9 * width)), min(16.0, 1.5 + 0.8 * depth))
    axes = figure.add_subplot()
    for node in nodes:
        for parent in node["parents"]:
            if parent in positions:
                axes.annotate(
                    "",
                    xy=positions[node["id"]],
                    xytext=positions[parent],
                    arrowprops={
                        "arrowstyle": "->",
                        "color": "#555555",
                        "shrinkA": 11,
                        "shrinkB": 11,
                    },
                )
    for node in nodes:
        x, y = positions[node["id"]]
        score = "-" if node["score"] is None else f"{node['score']:.2f}"
        axes.text(
            x,
            y,
            f"{node['id']}\n{score}",
            ha="center",
            va="center",
            fontsize=8,
            bbox={
                "boxstyle": "round",
                "facecolor": _ROLE_COLOURS[node["role"]],
                "edgecolor": "#333333",
            },
        )
    axes.set_xlim(-0.8, width - 0.2)
    axes.set_ylim(-depth + 0.2, 0.8)
    axes.set_axis_off()
    axes.set_title(
        f"run {data.summary.run_id}: lineage\n(cyan: best, orange: Pareto front)", fontsize=10
    )
    figure.savefig(path, format="png")


PLOTS: tuple[str, ...] = (
    "progress_calls.png",
    "progress_time.png",
    "progress_cost.png",
    "front.png",
    "scores.png",
    "lineage.png",
)
"""The PNG files :func:`write_report` may write (``progress_time.png`` only with times,
``progress_cost.png`` only when the run spent on priced LM calls)."""


def write_report(view: RunView, folder: str | os.PathLike[str]) -> list[Path]:
    """Write the PNG plots and ``report.html`` of a run into ``folder`` (created if
    missing); returns the files written, the page last.

    Raises:
        ConfigError: matplotlib is not installed.
        OSError: the folder cannot be written.
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data = report_data(view)
    written: list[Path] = []
    for name, x in (
        ("progress_calls.png", "metric_calls"),
        ("progress_time.png", "elapsed_s"),
        ("progress_cost.png", "cost_usd"),
    ):
        if x == "cost_usd" and not data.summary.cost_usd:
            continue
        if plot_progress(data, out / name, x):  # type: ignore[arg-type]
            written.append(out / name)
    plot_front(data, out / "front.png")
    plot_scores(data, out / "scores.png")
    plot_lineage(data, out / "lineage.png")
    written += [out / "front.png", out / "scores.png", out / "lineage.png"]
    images = {path.name: path.read_bytes() for path in written}
    page = out / "report.html"
    page.write_text(report_html(data, images), encoding="utf-8")
    written.append(page)
    return written


def _esc(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;"
    "padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}"
    "pre{white-space:pre-wrap;background:#f8f8f8;padding:.6em;border:1px solid #e3e3e3}"
    "img{max-width:100%;border:1px solid #eee;margin:.3em 0}"
    ".add{color:#116611}.del{color:#aa1111}"
)


def _diff_html(diff: str) -> str:
    lines = []
    for line in diff.splitlines():
        css = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        lines.append(f'<span class="{css}">{_esc(line)}</span>' if css else _esc(line))
    return "<pre>" + "\n".join(lines) + "</pre>"


def report_html(data: ReportData, images: Mapping[str, bytes]) -> str:
    """The report page: nothing external (the PNGs are inlined as ``data:`` URIs)."""
    head = data.summary
    when = datetime.datetime.fromtimestamp(head.created_at, datetime.UTC)
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(head.outcomes.items()))
    facts = [
        ("status", head.status + (f": {head.stop_reason}" if head.stop_reason else "")),
        ("created", when.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("budget", f"{head.budget_used} / {head.budget_total or '-'} metric calls"),
        (
            "cost",
            f"${head.cost_usd:.4f}"
            + (f" (+{head.unpriced_lm_calls} unpriced calls)" if head.unpriced_lm_calls else ""),
        ),
        (
            "iterations",
            f"{head.iterations} ({outcomes})",
        ),
        ("best", f"candidate {head.best_id}: {_fmt(head.best_score)}"),
        (
            "Pareto front",
            f"{', '.join(map(str, head.front))} (aggregate score {_fmt(head.front_mean)})",
        ),
        ("pool", f"{head.pool_size} candidates on {head.valset_size} validation examples"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gepetto report: {_esc(head.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>gepetto run {_esc(head.run_id)}</h1><p>{_esc(head.source)}</p>",
        _table(["", ""], facts),
    ]
    captions = {
        "progress_calls.png": "Score against metric calls",
        "progress_time.png": "Score against wall time",
        "progress_cost.png": "Score against cost",
        "front.png": "Candidates and the Pareto front",
        "scores.png": "Validation scores (candidates × examples)",
        "lineage.png": "Lineage",
    }
    for name, caption in captions.items():
        if name in images:
            encoded = base64.b64encode(images[name]).decode("ascii")
            parts.append(
                f"<h2>{_esc(caption)}</h2>"
                f'<img alt="{_esc(caption)}" src="data:image/png;base64,{encoded}">'
            )
    best = data.best
    if best is not None:
        parts.append(f"<h2>Best candidate: {best.id}</h2>")
        for name, text in best.texts.items():
            parts.append(f"<h3>{_esc(name)}</h3><pre>{_esc(text)}</pre>")
        for parent, diffs in best.diffs.items():
            for name, diff in diffs.items():
                parts.append(f"<h3>Diff to candidate {parent}: {_esc(name)}</h3>")
                parts.append(_diff_html(diff))
    parts.append("<h2>Candidates</h2>")
    parts.append(
        _table(
            ["id", "parents", "score", "role", "origin", "iteration", "found after calls"],
            [
                [
                    n["id"],
                    ", ".join(map(str, n["parents"])) or "seed",
                    _fmt(n["score"]),
                    n["role"],
                    n["origin"],
                    n["iteration"],
                    n["metric_calls"],
                ]
                for n in data.lineage.nodes
            ],
        )
    )
    parts.append("<h2>Decisions</h2>")
    parts.append(
        _table(
            ["iteration", "parent", "child", "outcome", "reason"],
            [
                [
                    d["iteration"],
                    d["parent_id"],
                    "-" if d["child_id"] is None else d["child_id"],
                    d["outcome"],
                    d["reason"],
                ]
                for d in data.lineage.decisions
            ],
        )
    )
    parts.append("</body></html>")
    return "\n".join(parts)

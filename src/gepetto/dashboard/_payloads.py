"""The JSON each dashboard view receives: :mod:`gepetto.runview`'s data, plus what only a
page needs (its key, the last decisions on the overview, the colour range of the matrix).

Nothing is computed here that :mod:`gepetto.runview` computes; these functions pick and
name. Each takes a :class:`~gepetto.runview.RunView` (read under its feed's lock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gepetto import runview

if TYPE_CHECKING:
    from gepetto.dashboard._followed import FollowedRun

__all__ = [
    "candidate",
    "compare",
    "lineage",
    "live_state",
    "matrix",
    "progress",
    "reflection",
    "run_row",
    "summary",
]

_LAST_DECISIONS = 12


def run_row(key: str, view: runview.RunView, error: str | None) -> dict[str, Any]:
    """One line of the list of runs."""
    data = runview.summary(view).to_json()
    return {
        "key": key,
        "run_id": data["run_id"],
        "source": data["source"],
        "status": data["status"],
        "candidates": data["pool_size"],
        "best_score": data["best_score"],
        "metric_calls": data["budget_used"],
        "max_metric_calls": data["budget_total"],
        "cost_usd": data["cost_usd"],
        "seq": data["last_seq"],
        "error": error,
    }


def summary(view: runview.RunView, key: str) -> dict[str, Any]:
    """The overview's cards and its table of the latest decisions."""
    data = runview.summary(view).to_json()
    updated = data["updated_at"]
    data["key"] = key
    data["elapsed_s"] = None if updated is None else max(0.0, updated - data["created_at"])
    recent = view.decisions[-_LAST_DECISIONS:]
    data["last_decisions"] = [runview.decision_json(e.seq, e.record) for e in reversed(recent)]
    return data


def progress(view: runview.RunView) -> dict[str, Any]:
    """The progress points (best and front mean after each iteration)."""
    return runview.progress(view).to_json()


def matrix(view: runview.RunView) -> dict[str, Any]:
    """The score matrix, with the range of its scores for the colour scale."""
    data = runview.score_matrix(view).to_json()
    values = [v for row in data["scores"] for v in row if v is not None]
    data["lo"] = min(values, default=0.0)
    data["hi"] = max(values, default=1.0)
    return data


def lineage(view: runview.RunView) -> dict[str, Any]:
    """The lineage tree and every decision."""
    return runview.lineage(view).to_json()


def candidate(view: runview.RunView, candidate_id: int) -> dict[str, Any]:
    """One candidate: texts, unified diffs to each parent, the reflection that made it."""
    return runview.candidate_detail(view, candidate_id).to_json()


def compare(a: runview.RunView, b: runview.RunView) -> dict[str, Any]:
    """Two runs side by side."""
    return runview.compare_runs(a, b).to_json()


def reflection(view: FollowedRun) -> dict[str, Any]:
    """The reflection streamed most recently (being written, or the last one written)."""
    return view.streamed_reflection()


def live_state(key: str, view: FollowedRun, running: bool) -> dict[str, Any]:
    """What the live channel sends: the store position of the views' data (streamed pieces
    left out), whether a process runs the run now, and the streamed reflection."""
    return {
        "update": {"key": key, "seq": view.data_seq, "running": running},
        "reflection": {"key": key, **view.streamed_reflection()},
    }

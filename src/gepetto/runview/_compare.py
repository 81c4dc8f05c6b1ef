"""Two runs side by side (:func:`compare_runs`), from the data of :mod:`._data`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.runview._data import RunSummary, _num, _sorted_ids, component_diff, summary
from gepetto.runview._view import RunView

__all__ = ["RunComparison", "compare_runs"]


@dataclass(frozen=True, slots=True)
class RunComparison:
    """Two runs side by side: their summaries, the diff between their best candidates, and
    the best candidates' scores on the validation examples both were scored on."""

    a: RunSummary
    b: RunSummary
    best_diffs: Mapping[str, str]
    shared_examples: tuple[Any, ...]
    a_scores: tuple[float | None, ...]
    b_scores: tuple[float | None, ...]
    a_mean_shared: float | None
    b_mean_shared: float | None
    wins: Mapping[str, int] = field(default_factory=dict)
    """On the shared examples: ``a`` better, ``b`` better, ``tie``."""

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.to_json(),
            "b": self.b.to_json(),
            "best_diffs": dict(self.best_diffs),
            "shared_examples": list(self.shared_examples),
            "a_scores": list(self.a_scores),
            "b_scores": list(self.b_scores),
            "a_mean_shared": _num(self.a_mean_shared),
            "b_mean_shared": _num(self.b_mean_shared),
            "wins": dict(self.wins),
        }


def compare_runs(a: RunView, b: RunView) -> RunComparison:
    """Compare two runs (of one task, usually: example ids are matched by position)."""
    first, second = summary(a), summary(b)
    diffs = {}
    for name in sorted(set(first.best_texts) | set(second.best_texts)):
        diff = component_diff(
            first.best_texts.get(name, ""),
            second.best_texts.get(name, ""),
            old_name=f"A candidate {first.best_id}: {name}",
            new_name=f"B candidate {second.best_id}: {name}",
        )
        if diff:
            diffs[name] = diff
    a_scores = _best_scores(a)
    b_scores = _best_scores(b)
    shared = _sorted_ids(set(a_scores) & set(b_scores))
    left = tuple(_num(a_scores[e]) for e in shared)
    right = tuple(_num(b_scores[e]) for e in shared)
    wins = {"a": 0, "b": 0, "tie": 0}
    for x, y in zip(left, right, strict=True):
        key = "tie" if x == y else ("a" if (x or 0.0) > (y or 0.0) else "b")
        wins[key] += 1
    return RunComparison(
        a=first,
        b=second,
        best_diffs=diffs,
        shared_examples=tuple(shared),
        a_scores=left,
        b_scores=right,
        a_mean_shared=_mean(left),
        b_mean_shared=_mean(right),
        wins=wins,
    )


def _best_scores(view: RunView) -> Mapping[Any, float]:
    state = view.state
    return state.val_scores(state.best_id) if state.candidates else {}


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None

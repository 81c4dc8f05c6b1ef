"""The merge proposer inside real runs: scheduling, acceptance, journaling and resume."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import gepetto
from gepetto.records import record_from_dict
from gepetto.state import RunState
from gepetto.storage import SQLiteStorage
from gepetto.strategies import ParetoSelector
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter

SEED = {"system": "Be brief.", "tools": "No tools."}
A_WORDS, B_WORDS = ["a1", "a2", "a3"], ["b1", "b2", "b3"]
DATA = [{"needs": w, "component": "system"} for w in A_WORDS] + [
    {"needs": w, "component": "tools"} for w in B_WORDS
]


class SeedFirst:
    """Picks the seed as parent for the first two proposals (two branches), then Pareto."""

    def __init__(self) -> None:
        self.calls = 0
        self.pareto = ParetoSelector()

    def select(self, state: RunState, rng: random.Random) -> int:
        self.calls += 1
        return 0 if self.calls <= 2 else self.pareto.select(state, rng)


def run(**options: Any) -> gepetto.Result:
    options.setdefault("candidate_selection_strategy", SeedFirst())
    return gepetto.optimize(
        SEED,
        DATA,
        DATA,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(3),
        reflection_minibatch_size=6,
        max_metric_calls=120,
        use_merge=True,
        display_progress_bar=False,
        **options,
    )


def test_two_branches_are_merged_into_a_perfect_candidate() -> None:
    result = run()
    merged = [i for i, parents in enumerate(result.parents) if len(parents) == 2]
    assert merged, f"no merge in {result.decisions}"
    child = merged[0]
    assert sorted(result.parents[child]) == [1, 2]
    assert result.val_aggregate_scores[child] == 1.0
    assert result.val_aggregate_scores[1] == result.val_aggregate_scores[2] == 0.5
    assert result.best_score == 1.0
    reasons = [d["reason"] for d in result.decisions if "merge of" in d["reason"]]
    assert any("matched the better parent" in r for r in reasons)


def test_without_merge_no_candidate_has_two_parents() -> None:
    result = gepetto.optimize(
        SEED,
        DATA,
        DATA,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(3),
        reflection_minibatch_size=6,
        max_metric_calls=120,
        candidate_selection_strategy=SeedFirst(),
        display_progress_bar=False,
    )
    assert all(len(parents) <= 1 for parents in result.parents)


def test_merge_state_is_journaled_and_never_repeated(tmp_path: Path) -> None:
    result = run(run_dir=tmp_path, max_merge_invocations=3)
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    records = [record_from_dict(body) for _, body in storage.read("default")]
    storage.close()
    merges = [r for r in records if r.kind == "iteration" and r.operation == "merge"]
    assert 1 <= len(merges) <= 3
    triplets = [(*r.merge_parents, r.merge_ancestor) for r in merges if r.merge_parents]
    assert len(triplets) == len(set(triplets)), "a merge was tried twice"
    again = run(run_dir=tmp_path, max_merge_invocations=3)  # resumed: nothing new to do
    assert again.candidates == result.candidates
    assert again.total_metric_calls == result.total_metric_calls

"""gepa's evaluation policy protocol and full policy, as served under
gepa.strategies.eval_policy."""

from __future__ import annotations

from typing import Any

import pytest

from gepetto.gepa_state import GEPAStateView
from gepetto.records import CandidateRecord, EvaluationRecord
from gepetto.state import RunState
from gepetto.strategies.gepa_eval_policy import EvaluationPolicy, FullEvaluationPolicy
from gepetto.types import ListDataLoader


def state_with(scores: list[dict[int, float]]) -> GEPAStateView:
    state = RunState(valset_size=3)
    for n, by_id in enumerate(scores):
        ids = tuple(by_id)
        state.append(
            EvaluationRecord(
                f"h{n}", "val", "validation", n - 1, ids, tuple(by_id.values()), None, len(ids)
            )
        )
        parents = () if n == 0 else (0,)
        state.append(CandidateRecord(n, {"x": str(n)}, parents, "seed", n - 1, 0, f"h{n}"))
    return GEPAStateView(state)


def test_full_policy_gives_every_id_and_the_best_mean() -> None:
    policy: FullEvaluationPolicy[Any, Any] = FullEvaluationPolicy()
    view = state_with([{0: 0.5, 1: 0.5}, {0: 1.0}, {0: 0.5, 1: 1.0, 2: 0.0}])
    assert policy.get_eval_batch(ListDataLoader("abc"), view) == [0, 1, 2]
    assert policy.get_best_program(view) == 1
    assert policy.get_valset_score(2, view) == pytest.approx(0.5)


def test_ties_go_to_more_evidence() -> None:
    view = state_with([{0: 1.0}, {0: 1.0, 1: 1.0}])
    assert FullEvaluationPolicy().get_best_program(view) == 1


def test_a_subclass_must_write_the_three_methods() -> None:
    class Partial(EvaluationPolicy[Any, Any]):
        def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> Any:
            return []

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]
    assert isinstance(FullEvaluationPolicy(), EvaluationPolicy)

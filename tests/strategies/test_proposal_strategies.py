"""gepa's proposal sampling and selection objects: plain configuration the engine reads."""

from __future__ import annotations

import pytest

from gepetto.errors import ConfigError
from gepetto.strategies.proposal_sampling import (
    IndependentSampling,
    ProposalTask,
    PxNSampling,
    SameParentSampling,
    SingleMutationSampling,
    describe_sampling,
    resolve_sampling,
)
from gepetto.strategies.proposal_selection import (
    AllImprovements,
    BestImprovement,
    TopKImprovements,
    describe_selection,
    resolve_selection,
    select_by_margin,
)


def test_sampling_shapes_follow_gepa() -> None:
    assert (SameParentSampling(3).parents, SameParentSampling(3).per_parent) == (1, 3)
    assert (IndependentSampling(4).parents, IndependentSampling(4).per_parent) == (4, 1)
    assert (PxNSampling(p=2, n=5).parents, PxNSampling(p=2, n=5).tasks) == (2, 10)
    assert SingleMutationSampling().tasks == 1
    assert PxNSampling(2, 3) == PxNSampling(p=2, n=3) != PxNSampling(3, 2)
    task = ProposalTask(0, {"a": "x"}, [1, 2], ["e1", "e2"])
    assert task.parent_idx == 0


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_counts_are_checked(bad: object) -> None:
    with pytest.raises(ConfigError, match="must be an int >= 1"):
        SameParentSampling(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be an int >= 1"):
        TopKImprovements(bad)  # type: ignore[arg-type]


def test_gepa_defaults_resolve_to_none_and_are_recorded_as_none() -> None:
    assert resolve_sampling(None) is resolve_sampling(SingleMutationSampling()) is None
    assert resolve_selection(None) is resolve_selection(AllImprovements()) is None
    assert describe_sampling(IndependentSampling(2)) == "IndependentSampling(n=2)"
    assert describe_selection(BestImprovement()) == "BestImprovement()"
    assert describe_selection(AllImprovements()) is None


def test_user_written_strategies_are_refused() -> None:
    class Custom:
        def select(self, proposals: list[object], state: object, criterion: object) -> list[object]:
            return proposals

    with pytest.raises(ConfigError, match=r"selection_strategy=Custom\(\.\.\.\)"):
        resolve_selection(Custom())

    class Subclass(BestImprovement):
        pass

    with pytest.raises(ConfigError, match="GEPAState"):
        resolve_selection(Subclass())


def test_select_by_margin() -> None:
    margins = [1.0, 3.0, 2.0, 3.0]
    assert select_by_margin(margins, None) == [0, 1, 2, 3]
    assert select_by_margin(margins, BestImprovement()) == [1]  # the first on a tie
    assert select_by_margin(margins, TopKImprovements(3)) == [1, 3, 2]
    assert select_by_margin([], TopKImprovements(2)) == []

"""stale_proposals: with several proposals in flight, a proposal whose parent is superseded
during its reflection is carried over to the successor ("rebase") or ends as stale ("drop");
the budget stays exact either way, and one proposal in flight never rebases."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
SEED = {"instructions": "Answer."}


class LineAddingLM(FeedbackFollowingLM):
    """FeedbackFollowingLM that puts each added word on a line of its own (an additive edit
    that a line-based rebase can carry over), after a wait (reflections take time)."""

    async def __call__(self, prompt: Any) -> str:  # type: ignore[override]
        await asyncio.sleep(0.02)
        reply = super().__call__(prompt)
        head, _, tail = reply.rpartition(" ")
        return f"{head}\n{tail}"


def run(mode: str, k: int) -> gepetto.Result:
    data = [{"needs": word} for word in WORDS]
    return gepetto.optimize(
        SEED,
        trainset=data,
        valset=data,
        adapter=KeywordAdapter(),
        reflection_lm=LineAddingLM(words_per_call=1),
        max_metric_calls=150,
        parallel_proposals=k,
        parallel_strategy="proposals",
        stale_proposals=mode,
        display_progress_bar=False,
        seed=1,
    )


def test_a_superseded_proposal_is_carried_over_to_the_successor() -> None:
    result = run("rebase", 4)
    rebased = [d for d in result.decisions if "rebased from superseded parent" in d["reason"]]
    assert rebased, [d["reason"] for d in result.decisions]
    for decision in rebased:
        old = int(decision["reason"].split("superseded parent ")[1].split(";")[0])
        new = decision["parent_id"]
        assert new != old and old in result.lineage(new)  # the successor descends from it
        if decision["outcome"] == "accepted":  # the child keeps what the successor had
            child = result.candidates[decision["child_id"]]["instructions"].split()
            assert set(result.candidates[new]["instructions"].split()) < set(child)
    assert result.total_metric_calls <= 150


def test_dropping_and_one_proposal_in_flight_never_rebase(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gepetto"):
        dropped = run("auto", 4)
    assert "stale_proposals='auto'" in caplog.text  # the automatic choice says why
    assert not any("rebased" in d["reason"] for d in dropped.decisions)
    assert any(d["reason"].startswith("stale") for d in dropped.decisions)
    sequential = run("rebase", 1)
    assert not any("rebased" in d["reason"] for d in sequential.decisions)
    assert dropped.total_metric_calls <= 150 and sequential.total_metric_calls <= 150


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ConfigError, match="stale_proposals must be one of 'auto', 'drop'"):
        run("merge", 2)


class InFlightParents:
    """Counts proposals that started on a parent another proposal in flight works on."""

    def __init__(self) -> None:
        self.in_flight: dict[int, int] = {}
        self.shared = 0
        self.started = 0

    def on_iteration_started(self, event: Any) -> None:
        self.started += 1
        self.shared += event.parent_id in self.in_flight.values()
        self.in_flight[event.iteration] = event.parent_id

    def on_iteration_finished(self, event: Any) -> None:
        self.in_flight.pop(event.iteration, None)


def spread_run(spread: bool | None, k: int = 4) -> tuple[gepetto.Result, InFlightParents]:
    data = [{"needs": [word, WORDS[(i + 3) % len(WORDS)]]} for i, word in enumerate(WORDS)]
    watch = InFlightParents()
    result = gepetto.optimize(
        SEED,
        trainset=data,
        valset=data,
        adapter=KeywordAdapter(),
        reflection_lm=LineAddingLM(words_per_call=1),
        max_metric_calls=300,
        parallel_proposals=k,
        parallel_strategy="proposals",
        spread_parents=spread,
        callbacks=[watch],
        display_progress_bar=False,
        seed=2,
    )
    return result, watch


def test_spread_parents_is_off_unless_asked_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="gepetto"):
        default, _ = spread_run(None)
    assert "spread_parents=None" in caplog.text and "no reliable gain" in caplog.text
    spread, _ = spread_run(True)
    assert default.total_metric_calls <= 300 and spread.total_metric_calls <= 300


class FrontState:
    """The part of the run state the spreading rule reads: the front and its weights."""

    def __init__(self, ids: list[int], weights: list[int]) -> None:
        self.weights = (ids, weights)

    def selection_weights(self) -> tuple[list[int], list[int]]:
        return self.weights


def test_a_parent_in_flight_gives_way_to_a_free_member_of_the_front() -> None:
    import random
    from types import SimpleNamespace

    from gepetto.engine.proposal import _spread

    def ctx(in_flight: dict[int, int], ids: list[int], weights: list[int]) -> Any:
        return SimpleNamespace(
            parents_in_flight=in_flight,
            state=FrontState(ids, weights),
            rng=lambda iteration, stream: random.Random(f"{iteration}/{stream}"),
        )

    assert _spread(ctx({}, [3, 5], [4, 1]), 7, 3) == 3  # nobody works on it
    assert _spread(ctx({6: 3}, [3, 5], [4, 1]), 7, 3) == 5  # the only free member
    assert _spread(ctx({6: 3, 8: 5}, [3, 5], [4, 1]), 7, 3) == 3  # none free: keep it
    drawn = {_spread(ctx({6: 3}, [3, 5, 9], [4, 1, 1]), i, 3) for i in range(40)}
    assert drawn == {5, 9}  # drawn among the free ones by their weights

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

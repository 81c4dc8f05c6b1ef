"""parallel_strategy: how parallel_proposals=K is spent. "samples" (what "auto" picks when
the reflection LM writes the proposals) runs ceil(K/4) proposals, each the best of K//ceil(K/4)
reflections asked for at once and scored side by side on a minibatch of 9; "proposals"
keeps K independent proposals in flight."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.engine.config import resolve_parallel_strategy
from gepetto.engine.options import GEPAConfig
from gepetto.errors import ConfigError
from gepetto.strategies.batch_sampling import EpochShuffledSampler
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(8)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def resolved(reflects: bool = True, **options: Any) -> tuple[int, int, int | None]:
    config = resolve_parallel_strategy(GEPAConfig.from_options(None, **options), reflects=reflects)
    return (
        config.engine.parallel_proposals,
        config.reflection.reflection_samples,
        config.reflection.reflection_minibatch_size,
    )


@pytest.mark.parametrize(
    ("k", "expected"),
    [(1, (1, 1, None)), (2, (1, 2, 9)), (3, (1, 3, 9)), (4, (1, 4, 9)), (5, (2, 2, 9)),
     (6, (2, 3, 9)), (8, (2, 4, 9)), (16, (4, 4, 9))],
)  # fmt: skip
def test_auto_spends_k_on_best_of_n_proposals(k: int, expected: tuple[int, int, int]) -> None:
    assert resolved(parallel_proposals=k) == expected
    assert resolved(parallel_proposals=k, parallel_strategy="samples") == expected


def test_a_given_minibatch_size_or_sampler_is_kept() -> None:
    assert resolved(parallel_proposals=4, reflection_minibatch_size=3) == (1, 4, 3)
    sampler = EpochShuffledSampler(5)
    config = resolve_parallel_strategy(
        GEPAConfig.from_options(None, parallel_proposals=4, batch_sampler=sampler), reflects=True
    )
    assert config.reflection.batch_sampler is sampler
    assert config.reflection.reflection_minibatch_size is None


def test_auto_keeps_independent_proposals_where_samples_do_not_apply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gepetto")
    assert resolved(parallel_proposals=4, parallel_strategy="proposals") == (4, 1, None)
    assert resolved(parallel_proposals=4, reflection_samples=2) == (4, 2, None)
    assert "reflection_samples is set" in caplog.text
    assert resolved(reflects=False, parallel_proposals=4) == (4, 1, None)
    assert "nothing to sample" in caplog.text
    greedy = {"reflection_lm_kwargs": {"temperature": 0}}
    assert resolved(parallel_proposals=4, **greedy) == (4, 1, None)
    assert "temperature 0" in caplog.text
    assert resolved(parallel_proposals=4, reflection_lm_kwargs={"temperature": 0.7}) == (1, 4, 9)


def test_the_automatic_choice_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gepetto")
    resolved(parallel_proposals=8)
    assert "2 proposals in flight, each the best of 4 reflections" in caplog.text
    assert "minibatch of 9" in caplog.text
    assert "parallel_strategy='proposals' keeps 8 independent proposals" in caplog.text


@pytest.mark.parametrize(
    ("options", "reflects", "why"),
    [
        ({"reflection_samples": 3}, True, "reflection_samples is set"),
        ({}, False, "does not write the proposals"),
    ],
)
def test_samples_where_they_cannot_apply_is_refused_before_any_call(
    options: dict[str, Any], reflects: bool, why: str
) -> None:
    with pytest.raises(ConfigError, match=why):
        resolved(reflects, parallel_proposals=4, parallel_strategy="samples", **options)


def test_an_unknown_strategy_is_refused_before_any_call() -> None:
    lm = FeedbackFollowingLM()
    with pytest.raises(ConfigError, match="parallel_strategy must be one of"):
        gepetto.optimize(
            SEED, TRAIN, VAL, adapter=KeywordAdapter(), reflection_lm=lm,
            max_metric_calls=40, parallel_strategy="threads",
        )  # fmt: skip
    assert lm.calls == 0


class ConcurrencyCountingLM:
    """A reflection LM that follows the keyword feedback, one different word per reply to the
    same prompt (sampled replies), and records how many of its calls overlapped."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.replies: dict[str, int] = {}
        self.lock = threading.Lock()

    async def __call__(self, prompt: Any) -> str:
        text = prompt if isinstance(prompt, str) else str(prompt[-1]["content"])
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            nth = self.replies.get(text, 0)
            self.replies[text] = nth + 1
        await asyncio.sleep(0.02)  # long enough for the other samples to start
        with self.lock:
            self.in_flight -= 1
        return FeedbackFollowingLM(words_per_call=1 + nth % 2)(text)


def test_a_run_with_four_in_flight_judges_the_best_of_four_samples(tmp_path: Path) -> None:
    lm = ConcurrencyCountingLM()
    adapter = KeywordAdapter()
    result = gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=adapter,
        reflection_lm=lm,
        max_metric_calls=60,
        parallel_proposals=4,
        run_dir=tmp_path,
        display_progress_bar=False,
    )
    assert result.total_metric_calls <= 60
    assert lm.most_in_flight == 4  # one proposal's four samples at once, never more
    assert lm.calls == result.num_reflection_calls and lm.calls % 4 == 0
    assert any(d["reason"].startswith("best of 2 proposals") for d in result.decisions)
    assert result.best_score > result.seed_score
    minibatches = {len(d["minibatch"]) for d in result.decisions if d.get("minibatch")}
    assert minibatches <= {9}
    # Resumed with K=1 (no widening), the run is refused with what to pass instead...
    with pytest.raises(ConfigError, match="pass reflection_minibatch_size=9"):
        gepetto.optimize(
            SEED, TRAIN, VAL, adapter=adapter, reflection_lm=lm, max_metric_calls=200,
            run_dir=tmp_path, display_progress_bar=False,
        )  # fmt: skip
    # ...and resumes with it, another sample count and another parallel_proposals.
    resumed = gepetto.optimize(
        SEED, TRAIN, VAL, adapter=adapter, reflection_lm=lm, max_metric_calls=200,
        run_dir=tmp_path, display_progress_bar=False, reflection_minibatch_size=9,
        parallel_strategy="proposals", parallel_proposals=2,
    )  # fmt: skip
    assert resumed.total_metric_calls > result.total_metric_calls

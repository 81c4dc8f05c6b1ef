"""Noise-aware acceptance: a narrow minibatch win is checked on a second minibatch."""

from __future__ import annotations

import random
from typing import Any

import gepetto
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

KNOWN, NEW = ["a", "b", "c", "d", "e", "f"], ["g", "h", "i"]
TRAIN = keyword_dataset(KNOWN + NEW)


class NewWordsFirst:
    """Always samples the three examples the seed cannot solve."""

    minibatch_size = 3

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return [6, 7, 8]


def run(**options: Any) -> gepetto.Result:
    # The reply solves the new words but forgets the known ones: a win on this minibatch only.
    lm = ScriptedLM(["```\nAnswer. g h i\n```"], repeat_last=True)
    return gepetto.optimize(
        {"instructions": "Answer. a b c d e f"},
        TRAIN,
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        batch_sampler=NewWordsFirst(),
        max_metric_calls=40,
        display_progress_bar=False,
        **options,
    )


def test_a_narrow_win_that_does_not_hold_is_rejected() -> None:
    plain = run()
    rechecked = run(recheck_margin=3)
    assert plain.num_candidates == 2  # accepted on the minibatch alone
    assert rechecked.num_candidates == 1
    reasons = [d["reason"] for d in rechecked.decisions]
    assert any(r.startswith("rechecked on a second minibatch") for r in reasons)
    # The recheck cost two minibatch evaluations but saved a validation of 9 examples.
    assert rechecked.metric_calls_val < plain.metric_calls_val


def test_a_clear_win_is_not_rechecked() -> None:
    result = run(recheck_margin=2)  # the win is 3: above the margin
    assert result.num_candidates == 2
    assert not any("rechecked" in d["reason"] for d in result.decisions)

"""A reflection reply that would make a candidate the run already tried is asked for again in
the same iteration, instead of ending it with a duplicate."""

from __future__ import annotations

import gepetto
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

DATA = keyword_dataset(["w1", "w2", "w3"])
REJECTED = "```\nAnswer. zzz\n```"  # gains no word: rejected on the minibatch
BETTER = "```\nAnswer. w1 w2 w3\n```"


def test_a_rejected_text_proposed_again_is_asked_for_again_not_tried_twice() -> None:
    lm = ScriptedLM([REJECTED, REJECTED, BETTER])
    result = gepetto.optimize(
        {"instructions": "Answer."},
        DATA,
        DATA,
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        reflection_minibatch_size=3,
        max_metric_calls=20,
        max_candidate_proposals=2,
        display_progress_bar=False,
    )
    first, second = (d for d in result.decisions if d["iteration"] >= 0)
    assert first["outcome"] == "rejected"
    assert second["outcome"] == "accepted"
    assert result.candidates[1] == {"instructions": "Answer. w1 w2 w3"}
    assert result.num_reflection_calls == 3  # the repeat and the reply asked for after it
    assert "repeated instructions that were already tried" in str(lm.prompts[2])
    assert "already tried" not in str(lm.prompts[1])

"""Memory of rejected proposals in the reflection prompt."""

from __future__ import annotations

from pathlib import Path

import gepetto
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

REPLIES = ["```\nAnswer. zeta\n```", "```\nAnswer. eta\n```", "```\nAnswer. alpha beta\n```"]


def run(memory: int, run_dir: Path | None = None) -> ScriptedLM:
    lm = ScriptedLM(REPLIES, repeat_last=True)
    gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta"]),
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        max_metric_calls=30,
        rejected_memory=memory,
        run_dir=run_dir,
        display_progress_bar=False,
    )
    return lm


def test_rejected_texts_are_shown_to_the_reflection_lm() -> None:
    prompts = run(memory=2).prompts
    assert "tried and did not do better" not in prompts[0]
    assert "Answer. zeta" in prompts[1] and "did not improve" in prompts[1]
    assert "Answer. zeta" in prompts[2] and "Answer. eta" in prompts[2]


def test_off_by_default() -> None:
    prompts = run(memory=0).prompts
    assert all("tried and did not do better" not in p for p in prompts)

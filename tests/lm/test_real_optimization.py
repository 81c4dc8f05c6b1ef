"""Optimizations against the real local models (llama-server with Qwen2.5-Coder GGUFs).

The bookkeeping is checked against real model outputs: a scripted reflection proposes a fixed
sequence of prompts and the real 0.5B task model must score them as they deserve. A slower
test lets the real 1.5B model reflect and only asserts the best is not worse than the seed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import gepetto
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.datasets import HANDWRITTEN_PROMPT, LABELS_PROMPT, SEED_PROMPT, ticket_routing
from gepetto.lm.client import LMClient
from gepetto.lm.registry import resolve_lm
from gepetto.testing import ScriptedLM
from tests.lm.short_runs import after_one_iteration

pytestmark = [pytest.mark.llm, pytest.mark.slow]

TRAIN = ticket_routing(12, seed=1)
VAL = ticket_routing(12, seed=2)


@pytest.fixture(scope="module")
def task_lm() -> Iterator[LMClient]:
    client = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=24)
    yield client
    asyncio.run(client.aclose())


def scripted_reflection() -> ScriptedLM:
    return ScriptedLM(
        [f"```\n{LABELS_PROMPT}\n```", f"```\n{HANDWRITTEN_PROMPT}\n```"], repeat_last=True
    )


def test_real_task_model_rewards_better_prompts(task_lm: LMClient, tmp_path: Path) -> None:
    result = gepetto.optimize(
        {"instructions": SEED_PROMPT},
        TRAIN,
        VAL,
        adapter=DefaultAdapter(task_lm, exact_match_evaluator(), max_concurrency=4),
        reflection_lm=scripted_reflection(),
        max_metric_calls=80,
        max_concurrency=4,
        run_dir=tmp_path,
        display_progress_bar=False,
    )
    assert result.seed_score <= 0.25  # the vague prompt makes the model answer in sentences
    assert result.best_score >= 0.75  # 1.00 with the hand-written prompt on these 12 examples
    assert result.best_candidate["instructions"] in (LABELS_PROMPT, HANDWRITTEN_PROMPT)
    task = result.lm_usage["task"]
    assert task["calls"] == result.total_metric_calls
    assert task["input_tokens"] > 0 and task["output_tokens"] > 0
    assert result.total_cost_usd == 0.0  # a local model costs nothing, and is priced as such

    # The same optimization as a new run in the same run_dir (a new run_id, else it would
    # resume the finished run): every deterministic task call comes from the LM cache there.
    again = gepetto.optimize(
        {"instructions": SEED_PROMPT},
        TRAIN,
        VAL,
        adapter=DefaultAdapter(task_lm, exact_match_evaluator(), max_concurrency=4),
        reflection_lm=scripted_reflection(),
        max_metric_calls=80,
        max_concurrency=4,
        run_dir=tmp_path,
        run_id="again",
        display_progress_bar=False,
    )
    assert again.lm_usage["task"]["cached_calls"] == again.lm_usage["task"]["calls"]
    assert again.lm_usage["task"]["input_tokens"] == 0
    # Not necessarily the same scores: with 4 requests in flight the server is not perfectly
    # deterministic, so a request repeated within the first run may have cached another reply.
    assert again.best_score >= 0.5


def test_real_reflection_model_does_not_make_things_worse(task_lm: LMClient) -> None:
    reflection = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=300,
        extra_body={"repeat_penalty": 1.1},
    )
    try:
        result = gepetto.optimize(
            {"instructions": SEED_PROMPT},
            TRAIN,
            VAL[:8],
            adapter=DefaultAdapter(task_lm, exact_match_evaluator(), max_concurrency=4),
            reflection_lm=reflection,
            max_metric_calls=20,  # the seed's 8, one proposal (3 + 3); no room to validate it
            max_concurrency=4,
            stop_callbacks=[after_one_iteration],
            display_progress_bar=False,
        )
    finally:
        asyncio.run(reflection.aclose())
    assert result.best_score >= result.seed_score
    assert result.lm_usage["reflection"]["calls"] == result.num_reflection_calls >= 1
    assert result.lm_usage["reflection"]["output_tokens"] > 0

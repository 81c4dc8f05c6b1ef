"""End-to-end runs of the loop with scripted LMs and toy adapters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import gepetto
from gepetto.testing import (
    AsyncKeywordAdapter,
    FeedbackFollowingLM,
    FlakyAdapter,
    KeywordAdapter,
    ScriptedLM,
    keyword_dataset,
)

SEED = {"instructions": "Answer."}


def run(words: list[str], **kwargs: Any) -> gepetto.Result:
    options: dict[str, Any] = {
        "adapter": KeywordAdapter(),
        "reflection_lm": FeedbackFollowingLM(),
        "max_metric_calls": 300,
        "display_progress_bar": False,
    }
    options.update(kwargs)
    return gepetto.optimize(
        SEED, keyword_dataset(words, copies=2), keyword_dataset(words), **options
    )


def test_scripted_reflection_improves_toy_task_to_perfect(words: list[str]) -> None:
    result = run(words)
    assert result.seed_score == 0.0
    assert result.best_score == 1.0
    assert set(words) <= set(result.best_candidate["instructions"].split())
    # Every accepted child descends from the seed and scores no worse than its parent.
    for child, parents in enumerate(result.parents):
        for parent in parents:
            assert result.val_aggregate_scores[child] >= result.val_aggregate_scores[parent]
    assert result.lineage(result.best_idx)[0] == 0
    assert result.total_metric_calls == result.metric_calls_train + result.metric_calls_val
    assert result.total_metric_calls <= 300


def test_async_adapter_and_async_lm(words: list[str]) -> None:
    lm = FeedbackFollowingLM()

    async def async_lm(prompt: str) -> str:
        await asyncio.sleep(0)
        return lm(prompt)

    result = run(words, adapter=AsyncKeywordAdapter(), reflection_lm=async_lm)
    assert result.best_score == 1.0
    assert lm.calls == result.num_reflection_calls


@pytest.mark.parametrize("concurrency", [1, 16])
def test_same_seed_same_result(words: list[str], concurrency: int) -> None:
    first = run(words, max_concurrency=concurrency, candidate_selection_strategy="pareto", seed=3)
    second = run(words, max_concurrency=concurrency, candidate_selection_strategy="pareto", seed=3)
    assert first.to_dict() == second.to_dict()


def test_different_seeds_sample_differently(words: list[str]) -> None:
    decisions = {
        seed: [d["parent_score"] for d in run(words, seed=seed).decisions] for seed in range(4)
    }
    assert len({tuple(v) for v in decisions.values()}) > 1


def test_garbage_reflection_replies_are_never_adopted(words: list[str]) -> None:
    replies = [
        "",  # empty
        "Certainly! Here is a new instruction: be helpful.",  # no fence
        "<think>I should add alpha</think>",  # only thinking
        "```\nAnswer.\n```",  # unchanged
        "```\n   \n```",  # empty block
        "Sure:\n```\nAnswer. alpha beta",  # truncated fence
        "<think>long monologue that never ends ```\nfake\n```",  # unclosed think swallows it
    ]
    lm = ScriptedLM(replies, repeat_last=True)
    result = run(words, reflection_lm=lm, max_metric_calls=80, reflection_retries=0)
    assert result.num_candidates == 1
    assert result.best_candidate == SEED
    failed = [d for d in result.decisions if d["outcome"] == "failed"]
    assert failed, "garbage replies must be recorded as failed proposals"
    reasons = " | ".join(d["reason"] for d in failed)
    for expected in (
        "empty reply",
        "no fenced block",
        "repeats the current text unchanged",
        "unclosed fenced block",
    ):
        assert expected in reasons


def test_failing_examples_score_zero_and_do_not_crash(words: list[str]) -> None:
    adapter = FlakyAdapter(KeywordAdapter(), fails=lambda example: example["needs"] == "beta")
    result = run(words, adapter=adapter, max_concurrency=4)
    beta_ids = [i for i, ex in enumerate(keyword_dataset(words)) if ex["needs"] == "beta"]
    assert result.best_score < 1.0
    for scores in result.val_subscores:
        for example_id in beta_ids:
            assert scores[example_id] == 0.0
    # The other examples are still solved.
    best = result.val_subscores[result.best_idx]
    assert all(best[i] == 1.0 for i in best if i not in beta_ids)


def test_reflection_lm_errors_fail_proposals_then_stop_the_run(words: list[str]) -> None:
    def broken_lm(prompt: str) -> str:
        raise ConnectionError("model server is down")

    result = run(words, reflection_lm=broken_lm)
    assert "reflection LM failed 5 times in a row" in (result.stop_reason or "")
    assert "model server is down" in result.stop_reason
    assert result.num_candidates == 1


def test_adapter_propose_new_texts_is_used_instead_of_the_lm(words: list[str]) -> None:
    class Proposing(KeywordAdapter):
        def propose_new_texts(
            self, candidate: dict[str, str], reflective_dataset: Any, components: list[str]
        ) -> dict[str, str]:
            missing = [
                r["Feedback"].split(": ")[1].split(", ")[0]
                for r in reflective_dataset[components[0]]
                if r["Feedback"].startswith("missing")
            ]
            return {components[0]: candidate[components[0]] + " " + missing[0]}

    result = run(words, adapter=Proposing(), reflection_lm=None)
    assert result.best_score == 1.0


def test_custom_candidate_proposer(words: list[str]) -> None:
    calls = []

    def proposer(candidate: dict[str, str], dataset: Any, components: list[str]) -> dict[str, str]:
        calls.append(components)
        return {"instructions": candidate["instructions"] + " " + words[len(calls) % len(words)]}

    result = run(words, reflection_lm=None, custom_candidate_proposer=proposer)
    assert calls
    assert result.best_score > 0


def test_a_custom_proposal_equal_to_its_parent_is_a_failed_proposal(words: list[str]) -> None:
    def proposer(candidate: dict[str, str], dataset: Any, components: list[str]) -> dict[str, str]:
        return dict(candidate)

    result = run(words, reflection_lm=None, custom_candidate_proposer=proposer, max_metric_calls=40)
    assert result.num_candidates == 1
    failed = [d["reason"] for d in result.decisions if d["outcome"] == "failed"]
    assert failed and all("unchanged text" in reason for reason in failed)


def test_multi_component_round_robin_and_all(words: list[str]) -> None:
    seed = {"system": "Be brief.", "tools": "No tools."}
    train = [{"needs": w, "component": "system" if i % 2 else "tools"} for i, w in enumerate(words)]
    for selector in ("round_robin", "all"):
        lm = FeedbackFollowingLM(words_per_call=2)
        result = gepetto.optimize(
            seed,
            train,
            adapter=KeywordAdapter(),
            reflection_lm=lm,
            max_metric_calls=400,
            module_selector=selector,
            display_progress_bar=False,
        )
        assert result.best_score == 1.0, selector
        updated = [d for d in result.decisions if d["outcome"] == "accepted"]
        assert updated


def test_custom_template_is_used(words: list[str]) -> None:
    template = "CUSTOM TEMPLATE\n```\n<curr_param>\n```\nFeedback:\n<side_info>"
    lm = ScriptedLM(FeedbackFollowingLM())
    result = run(words, reflection_lm=lm, reflection_prompt_template=template)
    assert lm.prompts
    assert all(p.startswith("CUSTOM TEMPLATE\n```\nAnswer.") for p in lm.prompts)
    assert result.best_score == 1.0


def test_skip_perfect_score_skips_reflection() -> None:
    result = gepetto.optimize(
        {"instructions": "alpha"},
        keyword_dataset(["alpha"], copies=4),
        adapter=KeywordAdapter(),
        reflection_lm=ScriptedLM([]),
        max_metric_calls=40,
        display_progress_bar=False,
    )
    assert result.num_reflection_calls == 0
    assert {d["outcome"] for d in result.decisions} == {"skipped"}
    assert result.stop_reason is not None and "stalled" in result.stop_reason


def test_improvement_or_equal_accepts_ties() -> None:
    words = ["alpha", "beta"]
    lm = ScriptedLM(["```\nAnswer. gamma\n```"], repeat_last=True)
    strict = run(words, reflection_lm=lm, max_metric_calls=20)
    equal = run(
        words,
        reflection_lm=ScriptedLM(["```\nAnswer. gamma\n```"], repeat_last=True),
        max_metric_calls=20,
        acceptance_criterion="improvement_or_equal",
    )
    assert strict.num_candidates == 1
    assert equal.num_candidates == 2


def test_inside_a_running_event_loop(words: list[str]) -> None:
    async def notebook_cell() -> gepetto.Result:
        # What Jupyter does: a loop is already running when the user calls optimize().
        return run(words)

    result = asyncio.run(notebook_cell())
    assert result.best_score == 1.0


def test_aoptimize(words: list[str]) -> None:
    result = asyncio.run(
        gepetto.aoptimize(
            SEED,
            keyword_dataset(words),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=200,
            display_progress_bar=False,
        )
    )
    assert result.best_score == 1.0


def test_objective_scores_flow_into_the_result(words: list[str]) -> None:
    class TwoObjectives(KeywordAdapter):
        def evaluate(
            self, batch: Any, candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            result = super().evaluate(batch, candidate, capture_traces)
            length = len(candidate["instructions"])
            result.objective_scores = [
                {"accuracy": score, "brevity": 1.0 / length} for score in result.scores
            ]
            return result

    result = run(words, adapter=TwoObjectives(), frontier_type="hybrid")
    assert result.objective_scores is not None
    assert set(result.objective_scores[0]) == {"accuracy", "brevity"}
    assert result.per_objective_best_candidates is not None
    # The seed is the shortest text, so it is best on brevity and stays on the front.
    assert 0 in result.per_objective_best_candidates["brevity"]
    assert 0 in result.pareto_front

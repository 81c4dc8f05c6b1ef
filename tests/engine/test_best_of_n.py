"""Best-of-n reflection: several proposals, each scored on the minibatch, the best judged."""

from __future__ import annotations

from typing import Any

import pytest

import gepetto
from gepetto import EvaluateTask, Optimizer, ReflectTask
from gepetto.errors import ConfigError
from gepetto.records import record_from_dict
from gepetto.storage import MemoryStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = [f"w{i}" for i in range(8)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def alternatives(task: ReflectTask, adapter: KeywordAdapter) -> list[dict[str, str]]:
    """Two proposals: the current text plus one missing word, and plus two."""
    dataset = adapter.make_reflective_dataset(task.candidate, task.eval_batch, ["instructions"])
    prompt = gepetto.proposers.render_reflection_prompt(
        gepetto.DEFAULT_REFLECTION_TEMPLATE, task.candidate["instructions"], dataset["instructions"]
    )
    options = []
    for words in (1, 2):
        text = gepetto.proposers.extract_new_text(FeedbackFollowingLM(words)(prompt)).text
        assert text is not None
        options.append({"instructions": text})
    return options


def drive(
    opt: Optimizer, adapter: KeywordAdapter, stop_after: int | None = None
) -> dict[int, list[dict[str, str]]]:
    """Run tasks one by one (optionally "crash" after ``stop_after``); the proposals made."""
    proposed: dict[int, list[dict[str, str]]] = {}
    done = 0
    while not opt.is_finished:
        if stop_after is not None and done >= stop_after:
            opt.ask()  # the process "dies" with this task in flight
            return proposed
        task = opt.ask()
        if task is None:
            break
        if isinstance(task, EvaluateTask):
            result: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:
            options = alternatives(task, adapter)
            proposed[task.iteration] = options
            result = gepetto.ProposalOutcome(options[0], lm_calls=2, alternatives=tuple(options))
        opt.tell(task.id, result)
        done += 1
    return proposed


def new_optimizer(storage: Any = None, **options: Any) -> Optimizer:
    return Optimizer(
        SEED, TRAIN, VAL, max_metric_calls=120, storage=storage or MemoryStorage(), **options
    )


def minibatch_score(texts: dict[str, str], batch: tuple[int, ...]) -> float:
    scored = KeywordAdapter().evaluate([TRAIN[i] for i in batch], texts, False)
    return sum(scored.scores)


def test_the_best_proposal_on_the_minibatch_is_judged() -> None:
    opt = new_optimizer()
    proposed = drive(opt, KeywordAdapter())
    result = opt.result()
    records = opt.state.records
    minibatches = {r.iteration: r.minibatch for r in records if r.kind == "iteration"}
    judged = [d for d in result.decisions if d["reason"].startswith("best of 2 proposals")]
    assert judged, "no iteration judged a best-of-2 choice"
    for decision in judged:
        batch = minibatches[decision["iteration"]]
        options = proposed[decision["iteration"]]
        best = max(minibatch_score(o, batch) for o in options)
        assert decision["child_score"] == best
    # Both proposals were paid for: two child evaluations per best-of-2 iteration.
    child_evals = [r for r in records if r.kind == "evaluation" and r.purpose == "child_minibatch"]
    assert len(child_evals) >= 2 * len(judged)
    assert result.total_metric_calls <= 120


@pytest.mark.parametrize("crash_at", range(1, 40, 3))
def test_crash_and_resume_with_alternatives_gives_the_uninterrupted_run(crash_at: int) -> None:
    straight = new_optimizer()
    drive(straight, KeywordAdapter())
    expected = straight.result()
    storage = MemoryStorage()
    drive(new_optimizer(storage), KeywordAdapter(), stop_after=crash_at)
    resumed = new_optimizer(storage)
    drive(resumed, KeywordAdapter())
    got = resumed.result()
    assert got.candidates == expected.candidates
    assert [d["reason"] for d in got.decisions] == [d["reason"] for d in expected.decisions]
    assert got.total_metric_calls == expected.total_metric_calls
    records = [record_from_dict(r) for _, r in storage.read("default")]
    keys = [
        (r.iteration, r.purpose, r.candidate_hash, example_id)
        for r in records
        if r.kind == "evaluation"
        for example_id in r.example_ids
    ]
    assert len(keys) == len(set(keys)), "an evaluation was journaled twice"
    reflections = [r for r in records if r.kind == "reflection"]
    assert reflections and all(len(r.alternatives) == 2 for r in reflections)


def test_reflection_samples_asks_the_lm_n_times() -> None:
    replies = iter(["```\nAnswer. w0\n```", "```\nAnswer. w0 w1\n```", "no text"] * 100)
    lm = ScriptedLM(lambda prompt: next(replies))
    result = gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        reflection_samples=3,
        reflection_retries=0,
        max_metric_calls=40,
        display_progress_bar=False,
    )
    assert lm.calls == result.num_reflection_calls
    assert result.num_reflection_calls % 3 == 0
    assert any(d["reason"].startswith("best of 2 proposals") for d in result.decisions)


def test_bad_sample_count_is_refused_before_any_call() -> None:
    lm = ScriptedLM(["```\nx\n```"], repeat_last=True)
    with pytest.raises(ConfigError, match="reflection_samples"):
        gepetto.optimize(
            SEED, TRAIN, adapter=KeywordAdapter(), reflection_lm=lm, reflection_samples=0
        )
    assert lm.calls == 0

"""Driving the optimizer from outside with ask()/tell()."""

from __future__ import annotations

import random
from typing import Any

import pytest

import gepetto
from gepetto import EvaluateTask, Optimizer, ReflectTask
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]


def do(task: Any, adapter: KeywordAdapter, lm: FeedbackFollowingLM) -> Any:
    """A minimal synchronous driver for one task."""
    if isinstance(task, EvaluateTask):
        return adapter.evaluate(task.examples, task.candidate, task.capture_traces)
    assert isinstance(task, ReflectTask)
    dataset = adapter.make_reflective_dataset(
        task.candidate, task.eval_batch, list(task.components)
    )
    prompt = gepetto.proposers.render_reflection_prompt(
        gepetto.DEFAULT_REFLECTION_TEMPLATE, task.candidate["instructions"], dataset["instructions"]
    )
    text = gepetto.proposers.extract_new_text(lm(prompt)).text
    return {"instructions": text} if text else {}


def test_sequential_ask_tell_reaches_the_same_result_as_optimize() -> None:
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    opt = Optimizer({"instructions": "Answer."}, keyword_dataset(WORDS), max_metric_calls=100)
    while not opt.is_finished:
        task = opt.ask()
        if task is None:  # None: finished, or waiting for outstanding tasks (none here)
            assert opt.is_finished
            break
        opt.tell(task.id, do(task, adapter, lm))
    mine = opt.result()
    theirs = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=100,
        display_progress_bar=False,
    )
    assert mine.best_score == theirs.best_score == 1.0
    assert mine.candidates == theirs.candidates
    assert opt.ask() is None


def test_out_of_order_tells_with_parallel_proposals() -> None:
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    opt = Optimizer(
        {"instructions": "Answer."},
        keyword_dataset(WORDS * 3),
        keyword_dataset(WORDS),
        max_metric_calls=150,
        parallel_proposals=4,
    )
    rng = random.Random(0)
    outstanding: list[Any] = []
    while not opt.is_finished:
        while (task := opt.ask()) is not None:
            outstanding.append(task)
        if not outstanding:  # ask() found a stop condition (with nothing in flight)
            assert opt.is_finished
            break
        task = outstanding.pop(rng.randrange(len(outstanding)))
        opt.tell(task.id, do(task, adapter, lm))
    result = opt.result()
    assert result.total_metric_calls <= 150
    assert result.best_score == 1.0


def test_timeout_with_an_injected_clock() -> None:
    now = [0.0]
    opt = Optimizer(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        clock=lambda: now[0],
        stop_callbacks=[gepetto.Timeout(10)],
    )
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    iterations_before_timeout = 0
    while not opt.is_finished:
        task = opt.ask()
        if task is None:
            break
        if isinstance(task, ReflectTask):
            iterations_before_timeout += 1
            now[0] += 4.0  # each reflection "takes" 4 s
        opt.tell(task.id, do(task, adapter, lm))
    assert "timeout" in (opt.stop_reason or "")
    assert iterations_before_timeout == 3  # starts at 0, 4, 8 s; at 12 s no new proposal


def test_tell_unknown_task_raises() -> None:
    opt = Optimizer({"instructions": "Answer."}, keyword_dataset(WORDS), max_metric_calls=10)
    opt.ask()
    with pytest.raises(KeyError):
        opt.tell(12345, None)


def test_request_stop_lets_the_work_in_flight_finish() -> None:
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    opt = Optimizer({"instructions": "Answer."}, keyword_dataset(WORDS), max_metric_calls=100)
    first = opt.ask()
    assert first is not None
    opt.request_stop("user asked")
    opt.tell(first.id, do(first, adapter, lm))  # the seed validation completes
    assert opt.is_finished
    assert opt.ask() is None
    result = opt.result()
    assert result.stop_reason == "user asked"
    assert result.num_candidates == 1


def test_abort_drops_work_in_flight() -> None:
    opt = Optimizer({"instructions": "Answer."}, keyword_dataset(WORDS), max_metric_calls=100)
    task = opt.ask()
    assert task is not None
    opt.abort("stop now")
    assert opt.is_finished
    with pytest.raises(KeyError):
        opt.tell(task.id, None)


def test_stop_file_in_run_dir(tmp_path: Any) -> None:
    (tmp_path / "gepetto.stop").write_text("")
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=100,
        run_dir=tmp_path,
        display_progress_bar=False,
    )
    assert "stop file" in (result.stop_reason or "")
    assert result.num_iterations == 0


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (gepetto.NoImprovement(3), "no improvement for 3 iterations"),
        (gepetto.ScoreThreshold(0.5), "score threshold reached"),
        (gepetto.MaxCandidates(2), "max_candidates reached (2)"),
    ],
)
def test_stop_conditions_in_a_run(condition: Any, expected: str) -> None:
    lm = (
        FeedbackFollowingLM()
        if not isinstance(condition, gepetto.NoImprovement)
        else (lambda prompt: "no fence")
    )
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        max_metric_calls=500,
        stop_callbacks=[condition],
        display_progress_bar=False,
    )
    assert expected in (result.stop_reason or "")

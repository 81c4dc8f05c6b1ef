"""``reflection_history=N``: a reflection also sees the parent's earlier failures, for free."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import EvaluateTask, Optimizer, ReflectTask
from gepetto.errors import ConfigError
from gepetto.records import IterationRecord
from gepetto.storage import MemoryStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset

# The seed "Answer. a" scores, per example: 1, .5, 0, .5, 0, 1, 0, .5
NEEDS: list[list[str]] = [["a"], ["a", "b"], ["c"], ["a", "d"], ["e"], ["a"], ["g"], ["a", "h"]]
TRAIN = [{"needs": needs, "id": i} for i, needs in enumerate(NEEDS)]
SEED = {"instructions": "Answer. a"}
BATCHES = [(0, 1, 2), (3, 4, 5), (2, 6, 7), (0, 1, 3)]
CHILD = "Answer. a c g"
"""Proposed at the third reflection (iteration 2): it scores 1, 1, .5 on batch (2, 6, 7)."""


class FixedBatches:
    """The minibatches of ``BATCHES``, in turn (deterministic, so a resume replays it)."""

    minibatch_size = 3

    def __init__(self) -> None:
        self.calls = 0

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        batch = BATCHES[self.calls % len(BATCHES)]
        self.calls += 1
        return list(batch)


class Run:
    """What a driven run showed: its reflections and the evaluations it dispatched."""

    def __init__(self) -> None:
        self.reflections: dict[int, ReflectTask] = {}
        self.evaluations: list[tuple[str, str, tuple[int, ...]]] = []
        self.train_scores: dict[tuple[str, int], float] = {}
        """Every traced train score told, for an independent check of the history."""
        self.expected_extras: dict[int, list[int]] = {}


def new_optimizer(storage: Any = None, **options: Any) -> Optimizer:
    # 31 calls: five reflections (iterations 0-4), then the budget ends the run.
    options.setdefault("max_metric_calls", 31)
    return Optimizer(
        SEED,
        TRAIN,
        batch_sampler=FixedBatches(),
        candidate_selection_strategy="current_best",
        storage=storage,
        **options,
    )


def reply(task: ReflectTask) -> dict[str, str]:
    """The third reflection proposes CHILD; every other one returns the text unchanged."""
    if task.iteration == 2:
        return {"instructions": CHILD}
    return dict(task.candidate)


def drive(
    opt: Optimizer, limit: int | None = None, stop_after: int | None = None, run: Run | None = None
) -> Run:
    """Do the tasks one by one (after ``stop_after`` tasks, "crash" with one in flight)."""
    run = run or Run()
    adapter = KeywordAdapter()
    done = 0
    while not opt.is_finished:
        if stop_after is not None and done >= stop_after:
            opt.ask()
            return run
        task = opt.ask()
        if task is None:
            break
        result: Any
        if isinstance(task, EvaluateTask):
            result = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
            run.evaluations.append((task.candidate_hash, task.split, task.example_ids))
            if task.split == "train" and task.capture_traces:
                for example_id, score in zip(task.example_ids, result.scores, strict=True):
                    run.train_scores[(task.candidate_hash, example_id)] = score
        else:
            parent_hash = opt.state.candidates[task.parent_id].content_hash
            batch = minibatch(opt, task.iteration)
            earlier = sorted(
                (score, example_id)
                for (content_hash, example_id), score in run.train_scores.items()
                if content_hash == parent_hash and example_id not in batch and score < 1.0
            )
            run.expected_extras[task.iteration] = [i for _, i in earlier[:limit]]
            run.reflections[task.iteration] = task
            dataset = adapter.make_reflective_dataset(
                task.candidate, task.eval_batch, list(task.components)
            )
            assert len(dataset["instructions"]) == len(task.examples)
            result = reply(task)
        opt.tell(task.id, result)
        done += 1
    return run


def minibatch(opt: Optimizer, iteration: int) -> tuple[int, ...]:
    for record in opt.state.records:
        if isinstance(record, IterationRecord) and record.iteration == iteration:
            return record.minibatch
    raise AssertionError(f"no iteration record for {iteration}")


def ids(task: ReflectTask) -> list[int]:
    return [example["id"] for example in task.examples]


def test_with_zero_the_reflection_sees_exactly_the_minibatch() -> None:
    opt = new_optimizer(reflection_history=0)
    run = drive(opt)
    assert len(run.reflections) >= 4
    for iteration, task in run.reflections.items():
        assert ids(task) == list(minibatch(opt, iteration))
        assert len(task.eval_batch.scores) == len(task.examples) == 3
        assert task.eval_batch.trajectories is not None
        assert len(task.eval_batch.trajectories) == 3
    # The earlier failures were there to be shown: iteration 1 would have had two.
    assert run.expected_extras[1]


def test_earlier_failures_follow_the_minibatch_lowest_score_first() -> None:
    opt = new_optimizer(reflection_history=2)
    run = drive(opt, limit=2)
    extras = {i: ids(task)[3:] for i, task in run.reflections.items()}
    assert [run.reflections[i].parent_id for i in range(3)] == [0, 0, 0]
    assert extras[0] == []  # nothing evaluated before
    assert extras[1] == [2, 1]  # 2 scored 0, 1 scored .5; 0 was perfect
    # 4 (0) then 1 (.5, lower id than 3); 2 is in the batch; 3 is cut by the limit.
    assert extras[2] == [4, 1]
    for iteration, task in run.reflections.items():
        batch = list(minibatch(opt, iteration))
        assert ids(task)[:3] == batch, "the minibatch comes first, in order"
        assert extras[iteration] == run.expected_extras[iteration]
        assert len(extras[iteration]) <= 2
        assert not set(extras[iteration]) & set(batch)
        assert len(set(ids(task))) == len(task.examples)
        scores = task.eval_batch.scores[3:]
        assert all(score < 1.0 for score in scores)
        assert scores == sorted(scores)
        trajectories = task.eval_batch.trajectories
        assert trajectories is not None and len(trajectories) == len(task.examples)
        assert len(task.eval_batch.outputs) == len(task.examples)
        parent_hash = opt.state.candidates[task.parent_id].content_hash
        for position, example_id in enumerate(extras[iteration], start=3):
            assert trajectories[position]["example"]["id"] == example_id
            assert task.eval_batch.scores[position] == run.train_scores[(parent_hash, example_id)]


def test_the_limit_is_respected() -> None:
    run = drive(new_optimizer(reflection_history=1), limit=1)
    assert ids(run.reflections[1])[3:] == [2]
    assert ids(run.reflections[2])[3:] == [4]
    wide = drive(new_optimizer(reflection_history=5), limit=5)
    assert ids(wide.reflections[2])[3:] == [4, 1, 3]


def test_history_costs_no_metric_call() -> None:
    plain_opt = new_optimizer(reflection_history=0)
    plain = drive(plain_opt)
    history_opt = new_optimizer()  # the default: 3
    history = drive(history_opt, limit=3)
    assert any(len(task.examples) > 3 for task in history.reflections.values())
    assert history.evaluations == plain.evaluations
    total = history_opt.result().total_metric_calls
    assert total == plain_opt.result().total_metric_calls
    assert total == sum(len(example_ids) for _, _, example_ids in history.evaluations)


def test_a_new_child_reflects_on_the_failures_of_the_minibatch_that_accepted_it() -> None:
    opt = new_optimizer(reflection_history=2)
    run = drive(opt, limit=2)
    accepted = [d for d in opt.result().decisions if d["outcome"] == "accepted"]
    assert [d["iteration"] for d in accepted] == [2]
    child_id = accepted[0]["child_id"]
    assert opt.state.candidates[child_id].texts == {"instructions": CHILD}
    first = min(i for i, task in run.reflections.items() if task.parent_id == child_id)
    assert first == 3 and minibatch(opt, 3) == (0, 1, 3)
    # The child scored 1, 1, .5 on (2, 6, 7): only 7 failed, and it is not in (0, 1, 3).
    assert ids(run.reflections[3]) == [0, 1, 3, 7]
    assert run.reflections[3].eval_batch.scores[3] == 0.5


def test_nothing_is_added_without_the_cache() -> None:
    opt = new_optimizer(reflection_history=2, cache_evaluation=False)
    run = drive(opt)
    assert len(run.reflections) >= 3
    for iteration, task in run.reflections.items():
        assert ids(task) == list(minibatch(opt, iteration))


@pytest.mark.parametrize("bad", [-1, "3", 1.5, True])
def test_a_bad_value_is_refused_before_any_call(bad: object) -> None:
    lm = ScriptedLM(["```\nx\n```"], repeat_last=True)
    adapter = KeywordAdapter()
    with pytest.raises(ConfigError, match="reflection_history must be an int >= 0"):
        gepetto.optimize(
            SEED,
            TRAIN,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=20,
            reflection_history=bad,
            display_progress_bar=False,
        )
    assert lm.calls == 0 and adapter.evaluate_calls == 0


def test_a_run_resumed_with_another_history_is_refused_naming_it() -> None:
    # The history changes what later reflections are shown, hence which children the run
    # makes: like every reflection option it is checked on resume (fork=True starts anew).
    storage = MemoryStorage()
    first = drive(new_optimizer(storage), stop_after=3)
    with pytest.raises(ConfigError, match=r"reflection_history: 3 in the journal, 2 now"):
        new_optimizer(storage, reflection_history=2)
    resumed_opt = new_optimizer(storage)
    drive(resumed_opt, run=first)
    assert resumed_opt.result().total_metric_calls <= 31
    forked = new_optimizer(storage, reflection_history=2, fork=True)
    assert forked.run_id == "default-fork-1"


def straight_and_resumed(crash_at: int, **options: Any) -> tuple[Optimizer, Run, Optimizer, Run]:
    """The same run twice: uninterrupted, and crashed after ``crash_at`` tasks then resumed."""
    straight_opt = new_optimizer(MemoryStorage(), **options)
    straight = drive(straight_opt)
    storage = MemoryStorage()
    run = drive(new_optimizer(storage, **options), stop_after=crash_at)
    resumed_opt = new_optimizer(storage, **options)
    drive(resumed_opt, run=run)
    return straight_opt, straight, resumed_opt, run


@pytest.mark.parametrize("crash_at", range(1, 13))
def test_crash_and_resume_shows_the_same_history(crash_at: int) -> None:
    straight_opt, straight, resumed_opt, run = straight_and_resumed(crash_at, reflection_history=2)
    assert {i: ids(t) for i, t in run.reflections.items()} == {
        i: ids(t) for i, t in straight.reflections.items()
    }
    got, expected = resumed_opt.result(), straight_opt.result()
    assert got.candidates == expected.candidates
    assert got.total_metric_calls == expected.total_metric_calls


def test_a_run_dir_run_resumed_with_a_larger_budget_prompts_as_a_straight_run(
    tmp_path: Path,
) -> None:
    words = [f"w{i}" for i in range(8)]
    train = keyword_dataset(words, copies=2)
    val = keyword_dataset(words)

    def run(budget: int, run_dir: Path) -> tuple[gepetto.Result, list[Any]]:
        lm = ScriptedLM(FeedbackFollowingLM())
        result = gepetto.optimize(
            {"instructions": "Answer."},
            train,
            val,
            adapter=KeywordAdapter(),
            reflection_lm=lm,
            reflection_history=3,
            max_metric_calls=budget,
            run_dir=run_dir,
            display_progress_bar=False,
        )
        return result, lm.prompts

    first, first_prompts = run(50, tmp_path / "a")
    extended, resumed_prompts = run(150, tmp_path / "a")
    straight, straight_prompts = run(150, tmp_path / "b")
    assert first.total_metric_calls <= 50 < straight.total_metric_calls
    assert first_prompts + resumed_prompts == straight_prompts
    assert extended.candidates == straight.candidates
    assert extended.total_metric_calls == straight.total_metric_calls
    # The history reached the prompt: more examples than the minibatch's 3.
    assert any("Example 4" in prompt for prompt in straight_prompts)


@pytest.mark.parametrize("crash_at", range(1, 20))
def test_a_run_ended_by_the_stall_limit_ends_at_the_same_iteration_after_a_resume(
    crash_at: int,
) -> None:
    # Without a budget to end it, the run stops after STALL_LIMIT iterations that evaluate
    # nothing new. An iteration redone after a resume, whose evaluations were journaled
    # before the crash, paid for them: it must not count as stalled.
    straight_opt, straight, resumed_opt, run = straight_and_resumed(
        crash_at, max_metric_calls=100_000
    )
    assert "stalled" in (straight_opt.result().stop_reason or "")
    assert sorted(run.reflections) == sorted(straight.reflections)
    assert resumed_opt.result().num_iterations == straight_opt.result().num_iterations

"""Early rejection: a child is scored first where its parent failed, and no further when it
cannot be accepted any more."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

import gepetto
from gepetto.adapter import EvaluationBatch
from gepetto.errors import ConfigError
from gepetto.storage import MemoryStorage
from gepetto.strategies.acceptance import ImprovementOrEqual, StrictImprovement
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

KNOWN, NEW = ["a", "b", "c", "d", "e", "f"], ["g", "h", "i"]
TRAIN = keyword_dataset(KNOWN + NEW)
SEED = "Answer. a b c d e f"


class SolvedAndTwoNew:
    """Always samples one example the seed solves ("a") and two it misses ("g", "h")."""

    minibatch_size = 3

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return [0, 6, 7]


def fenced(text: str) -> str:
    return f"```\n{text}\n```"


@dataclass
class Run:
    result: gepetto.Result
    child_evaluations: list[tuple[int, ...]]
    """The example ids of each child minibatch evaluation, in order (from the journal)."""

    @property
    def decisions(self) -> list[dict[str, Any]]:
        return self.result.decisions


def child_evaluations(storage: MemoryStorage) -> list[tuple[int, ...]]:
    """The example ids of each child minibatch evaluation in the journal, in order."""
    return [
        tuple(record["example_ids"])
        for _, record in storage.read("default")
        if record["kind"] == "evaluation" and record["purpose"] == "child_minibatch"
    ]


def run(replies: Sequence[str], **options: Any) -> Run:
    """One iteration per reply, on the minibatch of :class:`SolvedAndTwoNew` (unless told
    otherwise)."""
    storage = MemoryStorage()
    options.setdefault("adapter", KeywordAdapter())
    options.setdefault("batch_sampler", SolvedAndTwoNew())
    result = gepetto.optimize(
        {"instructions": SEED},
        TRAIN,
        reflection_lm=ScriptedLM([fenced(r) for r in replies]),
        max_metric_calls=200,
        stop_callbacks=[lambda status: status.iterations >= len(replies)],
        display_progress_bar=False,
        storage=storage,
        **options,
    )
    return Run(result, child_evaluations(storage))


def test_a_child_that_misses_the_parents_failures_is_not_scored_on_the_rest() -> None:
    # Solves neither "g" nor "h": even a perfect "a" could not beat the parent's 1.
    early = run(["Answer. b c d e f x"])
    assert early.child_evaluations == [(6, 7)]
    decision = early.decisions[0]
    assert decision["outcome"] == "rejected"
    assert decision["reason"] == (
        "minibatch sum cannot improve (1 -> at most 1); stopped after the 2 minibatch "
        "examples the parent did not solve, 1 not evaluated"
    )
    assert decision["child_score"] is None
    full = run(["Answer. b c d e f x"], early_reject=False)
    assert full.child_evaluations == [(0, 6, 7)]
    assert full.decisions[0]["outcome"] == "rejected"
    assert full.result.metric_calls_train == early.result.metric_calls_train + 1


def test_a_child_that_gains_where_the_parent_failed_is_scored_on_the_rest() -> None:
    # Solves "g" but forgets "a": 1 on the failures, then 0 on "a": 1 -> 1, rejected.
    forgetful = run(["Answer. g"])
    assert forgetful.child_evaluations == [(6, 7), (0,)]
    assert forgetful.decisions[0]["reason"] == "minibatch sum did not improve (1 -> 1)"
    assert forgetful.decisions[0]["child_score"] == 1.0
    # Solves "g" and keeps "a": accepted with the sum of the whole minibatch.
    better = run(["Answer. a b c d e f g"])
    assert better.child_evaluations == [(6, 7), (0,)]
    assert better.decisions[0]["outcome"] == "accepted"
    assert better.decisions[0]["child_score"] == 2.0


def test_improvement_or_equal_rejects_early_only_below_the_parent() -> None:
    # 0 on the failures and at most 1 on "a": equal to the parent is still possible.
    equal_possible = run(["Answer. b c d e f x"], acceptance_criterion="improvement_or_equal")
    assert equal_possible.child_evaluations == [(6, 7), (0,)]
    assert equal_possible.decisions[0]["reason"] == "minibatch sum got worse (1 -> 0)"


class SampleEverything:
    """Samples three examples at random (the seed solves some, misses others)."""

    minibatch_size = 3

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return rng.sample(range(train_size), 3)


MIXED_REPLIES = [
    "Answer. a b c d e f g",  # gains
    "Answer. a b c",  # forgets
    "Answer. a b c d e f g h",  # gains
    "Answer. x",  # forgets everything
    "Answer. a b c d e f g h i",  # gains
    "Answer. b c d e f g h i",  # forgets one
    "Answer. a b c d e f g h i",  # a duplicate
    "Answer. q",
]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_every_decision_is_the_one_the_full_evaluation_gives(seed: int) -> None:
    early = run(MIXED_REPLIES, batch_sampler=SampleEverything(), seed=seed)
    full = run(MIXED_REPLIES, batch_sampler=SampleEverything(), seed=seed, early_reject=False)
    assert early.result.candidates == full.result.candidates
    assert [d["outcome"] for d in early.decisions] == [d["outcome"] for d in full.decisions]
    assert early.result.val_aggregate_scores == full.result.val_aggregate_scores
    stopped = [d for d in early.decisions if "not evaluated" in d["reason"]]
    assert stopped  # every seed has children rejected early, and those calls are saved
    assert early.result.metric_calls_train < full.result.metric_calls_train


class Rescored(KeywordAdapter):
    """Keyword scores passed through ``rescore(text, example, score)``."""

    def __init__(self, rescore: Callable[[str, Mapping[str, Any], float], float]) -> None:
        super().__init__()
        self.rescore = rescore

    def evaluate(
        self,
        batch: list[Mapping[str, Any]],
        candidate: dict[str, str],
        capture_traces: bool = False,
    ) -> EvaluationBatch[dict[str, Any], str]:
        scored = super().evaluate(batch, candidate, capture_traces)
        text = candidate["instructions"]
        scores = [self.rescore(text, ex, s) for ex, s in zip(batch, scored.scores, strict=True)]
        return EvaluationBatch(scored.outputs, scores, scored.trajectories)


def doubled(text: str, example: Mapping[str, Any], score: float) -> float:
    """Scores of 0 or 2: above the default ``perfect_score`` of 1."""
    return 2 * score


def odd_with_x(text: str, example: Mapping[str, Any], score: float) -> float:
    """Keyword scores, except for a text with "x": 1.5 on "g", -1.5 on "h", 2 on the rest."""
    if "x" not in text.split():
        return score
    return {"g": 1.5, "h": -1.5}.get(example["needs"], 2.0)


def test_no_early_rejection_once_a_score_above_perfect_was_seen() -> None:
    result = run(["Answer. b c d e f x"], adapter=Rescored(doubled))
    assert result.child_evaluations == [(0, 6, 7)]
    assert result.decisions[0]["reason"] == "minibatch sum did not improve (2 -> 0)"


def test_a_score_above_perfect_in_the_first_part_stops_the_early_rejection() -> None:
    # 1.5 - 1.5 on the parent's failures and at most 1 on "a" would rule the child out, but
    # 1.5 is above perfect_score: "a" is scored (2), and the child is accepted, 1 -> 2.
    result = run(["Answer. a b c d e f x"], adapter=Rescored(odd_with_x))
    assert result.child_evaluations == [(6, 7), (0,)]
    assert result.decisions[0]["reason"] == "minibatch sum improved 1 -> 2"


class SumsOnly:
    """A custom criterion without ``rules_out``: children are always scored in full."""

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        return sum(child_scores) > sum(parent_scores), "custom"


def test_a_criterion_without_rules_out_scores_the_whole_minibatch() -> None:
    result = run(["Answer. b c d e f x"], acceptance_criterion=SumsOnly())
    assert result.child_evaluations == [(0, 6, 7)]


def test_rules_out_of_the_built_in_criteria() -> None:
    assert StrictImprovement().rules_out(2.0, 2.0) == (
        "minibatch sum cannot improve (2 -> at most 2)"
    )
    assert StrictImprovement().rules_out(2.0, 2.5) is None
    assert ImprovementOrEqual().rules_out(2.0, 2.0) is None
    assert ImprovementOrEqual().rules_out(2.0, 1.5) == (
        "minibatch sum gets worse (2 -> at most 1.5)"
    )


def test_early_reject_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="early_reject must be True or False"):
        run(["Answer."], early_reject="yes")


def drive_until_validation(opt: gepetto.Optimizer, adapter: KeywordAdapter, reply: str) -> None:
    """Answer tasks until the first child's validation is dispatched, then "crash" (the task
    is never answered)."""
    while (task := opt.ask()) is not None:
        if isinstance(task, gepetto.EvaluateTask):
            if task.purpose == "validation":
                return
            result: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:
            result = gepetto.ProposalOutcome({"instructions": reply}, lm_calls=1)
        opt.tell(task.id, result)
    raise AssertionError("the run ended before a child was validated")


def test_a_run_interrupted_after_both_parts_pays_for_neither_again() -> None:
    reply = "Answer. a b c d e f g"  # gains on "g": its evaluation goes on to "a"

    def optimizer(storage: MemoryStorage) -> gepetto.Optimizer:
        return gepetto.Optimizer(
            {"instructions": SEED},
            TRAIN,
            max_metric_calls=30,
            batch_sampler=SolvedAndTwoNew(),
            storage=storage,
        )

    storage = MemoryStorage()
    adapter = KeywordAdapter()
    drive_until_validation(optimizer(storage), adapter, reply)
    resumed = optimizer(storage)
    first = resumed.ask()
    assert isinstance(first, gepetto.EvaluateTask)
    # Both journaled parts are taken (each for its own examples): the redo validates at once.
    assert (first.iteration, first.purpose) == (0, "validation")
    resumed.tell(first.id, adapter.evaluate(first.examples, first.candidate, False))
    assert child_evaluations(storage) == [(6, 7), (0,)]
    decisions = [r for _, r in storage.read("default") if r["kind"] == "decision"]
    assert decisions[0]["outcome"] == "accepted"
    assert decisions[0]["child_score"] == 2.0


def best_of(proposals: Sequence[str]) -> Run:
    """One best-of-n iteration on the minibatch of :class:`SolvedAndTwoNew`, driven by hand:
    the reflection returns ``proposals`` as its alternatives, in this order."""
    storage = MemoryStorage()
    adapter = KeywordAdapter()
    opt = gepetto.Optimizer(
        {"instructions": SEED},
        TRAIN,
        max_metric_calls=60,
        batch_sampler=SolvedAndTwoNew(),
        storage=storage,
        stop_callbacks=[lambda status: status.iterations >= 1],
    )
    options = tuple({"instructions": text} for text in proposals)
    while (task := opt.ask()) is not None:
        if isinstance(task, gepetto.EvaluateTask):
            result: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:
            result = gepetto.ProposalOutcome(
                options[0], lm_calls=len(options), alternatives=options
            )
        opt.tell(task.id, result)
    return Run(opt.result(), child_evaluations(storage))


def test_best_of_n_does_not_choose_a_proposal_that_cannot_be_accepted() -> None:
    run = best_of(["Answer. b c d e f x", "Answer. a b c d e f g"])
    assert run.child_evaluations == [(6, 7), (6, 7), (0,)]
    assert run.decisions[0]["outcome"] == "accepted"
    assert run.decisions[0]["reason"] == "best of 2 proposals; minibatch sum improved 1 -> 2"


def test_best_of_n_when_no_proposal_can_be_accepted() -> None:
    run = best_of(["Answer. b c d e f x", "Answer. c d e f y"])
    assert run.child_evaluations == [(6, 7), (6, 7)]
    decision = run.decisions[0]
    assert decision["outcome"] == "rejected"
    assert decision["reason"] == (
        "best of 2 proposals; minibatch sum cannot improve (1 -> at most 1); stopped after "
        "the 2 minibatch examples the parent did not solve, 1 not evaluated"
    )
    assert decision["child_score"] is None

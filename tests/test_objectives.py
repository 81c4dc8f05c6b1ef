"""Objective weights: acceptance and the best candidate follow the weighted objectives."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import Optimizer, ScoreThreshold
from gepetto.engine.config import build_config
from gepetto.engine.options import GEPAConfig
from gepetto.errors import ConfigError
from gepetto.objectives import ObjectiveWeights
from gepetto.records import CandidateRecord, EvaluationRecord
from gepetto.state import RunState
from gepetto.storage import MemoryStorage, SQLiteStorage
from gepetto.testing import FlakyAdapter, KeywordAdapter, ScriptedLM, keyword_dataset
from gepetto.types import EvaluationBatch
from tests.engine.test_resume import drive

TRAIN = keyword_dataset(["please"], copies=3)  # one minibatch: the whole trainset
VAL = keyword_dataset(["please"], copies=2)
BREVITY = {"accuracy": 1.0, "words": -1.0}
"""One point of accuracy is worth as much as one word less."""


class WordyAdapter(KeywordAdapter):
    """:class:`KeywordAdapter` that also reports objectives: ``accuracy`` (the score) and
    ``words`` (the length of the instructions); ``words`` is left out where ``drop`` says."""

    def __init__(self, drop: Callable[[Mapping[str, Any]], bool] = lambda example: False):
        super().__init__()
        self.drop = drop

    def _run(
        self, batch: list[Mapping[str, Any]], candidate: dict[str, str], capture_traces: bool
    ) -> EvaluationBatch[dict[str, Any], str]:
        result = super()._run(batch, candidate, capture_traces)
        words = float(len(candidate["instructions"].split()))
        result.objective_scores = [
            {"accuracy": score} if self.drop(example) else {"accuracy": score, "words": words}
            for example, score in zip(batch, result.scores, strict=True)
        ]
        return result


class AcceptAll:
    """An acceptance criterion that accepts every child and records what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[float], list[float]]] = []

    def accept(
        self, parent_scores: Sequence[float], child_scores: Sequence[float]
    ) -> tuple[bool, str]:
        self.calls.append((list(parent_scores), list(child_scores)))
        return True, "accepts everything"


def reply(text: str) -> str:
    return f"```\n{text}\n```"


def run(
    seed: str,
    children: Sequence[str],
    *,
    adapter: Any = None,
    lm: ScriptedLM | None = None,
    valset: Sequence[Any] = VAL,
    **options: Any,
) -> gepetto.Result:
    """Optimize ``seed``; the reflection LM proposes ``children`` in order, one per iteration,
    and the run stops after that many iterations (unless ``stop_callbacks`` say otherwise)."""
    options.setdefault("stop_callbacks", [lambda status: status.iterations >= len(children)])
    return gepetto.optimize(
        {"instructions": seed},
        TRAIN,
        valset,
        adapter=adapter or WordyAdapter(),
        reflection_lm=lm or ScriptedLM([reply(c) for c in children]),
        max_metric_calls=200,
        skip_perfect_score=False,  # a perfect parent may still get shorter
        display_progress_bar=False,
        **options,
    )


# ----- acceptance ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "child", "accepted_with_weights"),
    [
        # Adds the missing word but doubles the length: score 0 -> 1, weighted -4 -> -7 each.
        ("Answer politely and clearly", "Answer politely and clearly please thanks a lot", False),
        # Loses the word but is much shorter: score 1 -> 0, weighted -4 -> -1 each.
        ("Answer please politely and clearly", "Answer", True),
    ],
)
def test_acceptance_compares_weighted_objectives_not_scores(
    seed: str, child: str, accepted_with_weights: bool
) -> None:
    weighted = run(seed, [child], objective_weights=BREVITY).decisions[0]
    plain = run(seed, [child], early_reject=False).decisions[0]  # scored on every example
    assert weighted["outcome"] == ("accepted" if accepted_with_weights else "rejected")
    assert plain["outcome"] == ("rejected" if accepted_with_weights else "accepted")
    assert weighted["reason"].startswith("weighted objectives: minibatch sum")
    parent_sum, child_sum = (-12, -3) if accepted_with_weights else (-12, -21)
    assert f"{parent_sum:.4g} -> {child_sum:.4g}" in weighted["reason"]
    assert "weighted" not in plain["reason"]
    # The decision's scores stay the plain minibatch sums.
    assert (weighted["parent_score"], weighted["child_score"]) == (
        plain["parent_score"],
        plain["child_score"],
    )


def test_a_custom_criterion_receives_the_weighted_values_also_from_the_cache() -> None:
    criterion = AcceptAll()
    result = run(
        "Answer politely and clearly",
        ["Answer please", "please"],
        objective_weights=BREVITY,
        acceptance_criterion=criterion,
    )
    assert criterion.calls == [
        ([-4.0] * 3, [-1.0] * 3),
        # The second parent is the first child, on the same minibatch: its values come from
        # the evaluation cache, objectives included.
        ([-1.0] * 3, [0.0] * 3),
    ]
    assert result.metric_calls_train == 9, "the second parent minibatch was cached"
    assert [d["reason"] for d in result.decisions] == [
        "weighted objectives: accepts everything"
    ] * 2


# ----- the best candidate --------------------------------------------------------------------

WEIGHTS = {"accuracy": 1.0, "words": -0.5}
LONG_SEED = "Answer politely and clearly"  # accuracy 0, 4 words: weighted -2
CHILDREN = ["Answer politely and clearly please", "Hi"]  # weighted -1.5 (accuracy 1), -0.5


def test_the_best_candidate_follows_the_weights() -> None:
    weighted = run(LONG_SEED, CHILDREN, objective_weights=WEIGHTS, acceptance_criterion=AcceptAll())
    plain = run(LONG_SEED, CHILDREN, acceptance_criterion=AcceptAll())
    assert weighted.candidates == plain.candidates  # the same pool...
    assert weighted.val_aggregate_scores == plain.val_aggregate_scores == [0.0, 1.0, 0.0]
    assert plain.best_idx == 1  # ...the best accuracy without weights
    assert weighted.best_idx == 2  # the best weighted objectives with them
    assert weighted.weighted_scores == pytest.approx([-2.0, -1.5, -0.5])
    assert weighted.best_weighted_score == pytest.approx(-0.5)
    assert weighted.best_score == 0.0  # best_score stays the plain score of the best
    assert plain.weighted_scores is None and plain.best_weighted_score is None
    assert weighted.objective_weights == {"accuracy": 1.0, "words": -0.5}
    # The fronts are unchanged: the weights choose the best, they do not prune the front.
    assert weighted.pareto_front == plain.pareto_front
    assert weighted.per_objective_best_candidates == plain.per_objective_best_candidates


def test_stop_conditions_see_the_weighted_best_score() -> None:
    # Without weights the seed's score 0.0 would already reach the threshold.
    result = run(
        LONG_SEED, CHILDREN, objective_weights=WEIGHTS, stop_callbacks=[ScoreThreshold(-1.0)]
    )
    assert result.num_candidates == 3
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("score threshold reached (-0.5")


def test_run_state_ranks_by_weighted_means_and_counts_missing_objectives_as_zero() -> None:
    state = RunState(2, objective_weights=ObjectiveWeights({"a": 1.0, "b": 2.0}))
    for candidate_id, objectives in enumerate(
        [
            ({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0}),  # score 1.0, weighted 1.0
            ({"a": 0.0, "b": 1.0}, {"a": 0.0}),  # score 0.0, weighted (2 + 0) / 2
        ]
    ):
        content_hash = f"h{candidate_id}"
        scores = (1.0, 1.0) if candidate_id == 0 else (0.0, 0.0)
        state.append(
            EvaluationRecord(content_hash, "val", "validation", 0, (0, 1), scores, objectives, 2)
        )
        state.append(
            CandidateRecord(candidate_id, {"p": content_hash}, (), "seed", 0, 0, content_hash)
        )
    assert state.weighted_score(0) == 1.0 and state.weighted_score(1) == 1.0
    assert state.best_id == 0  # a tie: the older candidate
    state.append(EvaluationRecord("h1", "val", "validation", 0, (2,), (0.0,), ({"b": 1.0},), 1))
    assert state.weighted_score(1) == pytest.approx(4 / 3)
    assert state.best_id == 1 and state.rank_score(1) == pytest.approx(4 / 3)
    assert state.val_score(0) > state.val_score(1)
    plain = RunState(2)
    plain.append(CandidateRecord(0, {"p": "h0"}, (), "seed", 0, 0, "h0"))
    assert plain.weighted_score(0) is None


# ----- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "at least one objective"),
        ({"accuracy": float("nan")}, "finite"),
        ({"accuracy": float("inf")}, "finite"),
        ({"accuracy": 0, "words": 0.0}, "all zero"),
        ({"accuracy": "1"}, "must be a number"),
        ({"accuracy": True}, "must be a number"),
        ({"": 1.0}, "objective names"),
        ([("accuracy", 1.0)], "must be a dict"),
    ],
)
def test_invalid_weights_are_refused_before_any_call(weights: Any, message: str) -> None:
    adapter, lm = WordyAdapter(), ScriptedLM([reply("Answer please")])
    with pytest.raises(ConfigError, match=message):
        run("Answer", ["Answer please"], adapter=adapter, lm=lm, objective_weights=weights)
    assert adapter.evaluate_calls == 0 and lm.calls == 0


@pytest.mark.parametrize(
    ("adapter", "weights", "message"),
    [
        (WordyAdapter, {"accuracy": 1.0, "wrods": -1.0}, r"'wrods' \(missing on 3 of 3"),
        (KeywordAdapter, {"accuracy": 1.0}, "none: EvaluationBatch.objective_scores was None"),
        (
            lambda: WordyAdapter(drop=lambda example: example.get("short", False)),
            BREVITY,
            r"'words' \(missing on 1 of 3, e.g. example 2\)",
        ),
    ],
)
def test_weights_the_adapter_does_not_return_fail_at_the_seed_before_reflection(
    adapter: Callable[[], KeywordAdapter], weights: dict[str, float], message: str
) -> None:
    instance, lm = adapter(), ScriptedLM([reply("Answer please")])
    valset = [*VAL, {"needs": "please", "short": True}]
    with pytest.raises(ConfigError, match=message):
        run(
            "Answer",
            ["Answer please"],
            adapter=instance,
            lm=lm,
            valset=valset,
            objective_weights=weights,
        )
    assert instance.evaluate_calls >= 1  # the seed's validation is paid for...
    assert lm.calls == 0  # ...no reflection is


def test_examples_that_failed_on_the_seed_are_not_checked() -> None:
    adapter = FlakyAdapter(WordyAdapter(), fails=lambda example: example.get("flaky", False))
    valset = [*VAL, {"needs": "please", "flaky": True}]
    result = run("Answer", ["please"], adapter=adapter, valset=valset, objective_weights=BREVITY)
    # The failed example counts 0.0: the seed's weighted mean is (2 x (0 - 1) + 0) / 3.
    assert result.weighted_scores == pytest.approx([-2 / 3, 0.0])
    assert result.best_idx == 1


def test_a_run_without_weights_records_the_settings_it_recorded_before() -> None:
    def described(**options: Any) -> Mapping[str, Any]:
        config = GEPAConfig.from_options(max_metric_calls=5, **options)
        return build_config(config, valset_size=1).description

    assert "objective_weights" not in described()
    assert described(objective_weights={"b": 1, "a": 2})["objective_weights"] == {
        "a": 2.0,
        "b": 1.0,
    }


# ----- resume and results --------------------------------------------------------------------


def new_optimizer(storage: Any, weights: Mapping[str, float] | None, **options: Any) -> Optimizer:
    # The trainset is one minibatch: from the second iteration on, the parent's minibatch
    # comes from the evaluation cache (after a resume, from the journal).
    words = keyword_dataset(["w0", "w1", "w2"])
    return Optimizer(
        {"instructions": "Answer."},
        words,
        words,
        max_metric_calls=80,
        storage=storage,
        objective_weights=weights,
        **options,
    )


def test_resume_with_other_weights_is_refused_unless_forked(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    drive(new_optimizer(storage, WEIGHTS), WordyAdapter(), stop_after=3)
    for other in ({"accuracy": 1.0, "words": -0.25}, {"accuracy": 1.0}, None):
        with pytest.raises(ConfigError, match="different settings"):
            new_optimizer(storage, other)
    same = new_optimizer(storage, {"words": -0.5, "accuracy": 1})  # equal, in another order
    assert same.resumed_records > 0
    forked = new_optimizer(storage, None, fork=True)
    assert forked.run_id == "default-fork-1"
    storage.close()


def test_a_run_without_weights_refuses_weights_on_resume() -> None:
    storage = MemoryStorage()
    drive(new_optimizer(storage, None), WordyAdapter(), stop_after=3)
    with pytest.raises(ConfigError, match="different settings"):
        new_optimizer(storage, WEIGHTS)


def test_crash_and_resume_with_weights_gives_the_uninterrupted_run() -> None:
    weights = {"accuracy": 1.0, "words": -0.01}
    straight = new_optimizer(MemoryStorage(), weights)
    tasks = drive(straight, WordyAdapter())
    expected = straight.result()
    assert any(d["reason"].startswith("weighted objectives") for d in expected.decisions)
    for tasks_before_crash in range(1, tasks):
        storage = MemoryStorage()
        drive(new_optimizer(storage, weights), WordyAdapter(), stop_after=tasks_before_crash)
        resumed = new_optimizer(storage, weights)
        drive(resumed, WordyAdapter())
        got = resumed.result()
        assert got.candidates == expected.candidates
        assert got.weighted_scores == expected.weighted_scores
        assert [d["reason"] for d in got.decisions] == [d["reason"] for d in expected.decisions]
        assert got.total_metric_calls == expected.total_metric_calls


def test_result_round_trips_with_weights() -> None:
    result = run(LONG_SEED, CHILDREN, objective_weights=WEIGHTS, acceptance_criterion=AcceptAll())
    data = result.to_dict()
    assert data["schema_version"] == 1
    assert data["objective_weights"] == WEIGHTS and len(data["weighted_scores"]) == 3
    again = gepetto.Result.from_json(result.to_json())
    assert again == result and again.best_idx == 2
    assert "best by weighted objectives (accuracy x 1, words x -0.5): -0.5000" in repr(again)
    plain = gepetto.Result.example()
    assert "weighted_scores" not in plain.to_dict()  # an optional key: older readers are fine
    assert gepetto.Result.from_dict(plain.to_dict()).weighted_scores is None

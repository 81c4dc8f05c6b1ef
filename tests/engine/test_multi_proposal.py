"""Several proposals per iteration (gepa's sampling_strategy / selection_strategy)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gepetto
from gepetto import Optimizer
from gepetto.errors import ConfigError
from gepetto.records import (
    DecisionRecord,
    IterationRecord,
    ReflectionRecord,
    record_from_dict,
    record_to_dict,
)
from gepetto.storage import MemoryStorage
from gepetto.strategies.proposal_sampling import (
    IndependentSampling,
    PxNSampling,
    SameParentSampling,
    SingleMutationSampling,
)
from gepetto.strategies.proposal_selection import (
    AllImprovements,
    BestImprovement,
    TopKImprovements,
)
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from tests.engine.test_resume import drive

WORDS = [f"w{i}" for i in range(10)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def run(adapter: Any = None, budget: int = 200, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=adapter or KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget,
        display_progress_bar=False,
        **options,
    )


def decisions_by_iteration(result: gepetto.Result) -> dict[int, list[dict[str, Any]]]:
    by: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for decision in result.decisions:
        by[decision["iteration"]].append(decision)
    return by


class CountingAdapter(KeywordAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.examples_evaluated = 0

    def evaluate(self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False):  # type: ignore[no-untyped-def]
        self.examples_evaluated += len(batch)
        return super().evaluate(batch, candidate, capture_traces)


def test_each_iteration_makes_every_sampled_proposal_and_ends_once() -> None:
    adapter = CountingAdapter()
    result = run(adapter, sampling_strategy=PxNSampling(p=2, n=2))
    by = decisions_by_iteration(result)
    assert by, "no iteration ran"
    for iteration, decisions in by.items():
        closing = [d for d in decisions if d["task"] is None]
        proposals = [d for d in decisions if d["task"] is not None]
        if not closing:
            continue  # the last iteration, stopped by the budget
        assert len(closing) == 1, f"iteration {iteration} ended twice"
        assert sorted(d["task"] for d in proposals) == [0, 1, 2, 3]
        accepted = [d for d in proposals if d["outcome"] == "accepted"]
        assert (closing[0]["outcome"] == "accepted") == bool(accepted)
    # Every accepted proposal is a candidate; the budget is exact.
    accepted_ids = [d["child_id"] for d in result.decisions if d["task"] is not None]
    assert len(result.candidates) == 1 + sum(1 for i in accepted_ids if i is not None)
    assert result.total_metric_calls == adapter.examples_evaluated <= 200


def test_top_k_keeps_the_largest_margins_and_says_why_the_others_were_dropped() -> None:
    result = run(sampling_strategy=SameParentSampling(n=4), selection_strategy=TopKImprovements(2))
    dropped = 0
    for decisions in decisions_by_iteration(result).values():
        proposals = [d for d in decisions if d["task"] is not None]
        passed = [
            d
            for d in proposals
            if d["outcome"] == "accepted" or "not selected by the selection strategy" in d["reason"]
        ]
        kept = [d for d in passed if d["outcome"] == "accepted"]
        assert len(kept) <= 2
        margins = sorted((d["child_score"] - d["parent_score"] for d in passed), reverse=True)
        for d in passed:
            if d["outcome"] != "accepted":
                dropped += 1
                assert "TopKImprovements(k=2)" in d["reason"]
                assert d["child_score"] > d["parent_score"]
                assert d["child_score"] - d["parent_score"] <= margins[min(1, len(margins) - 1)]
    assert dropped, "the run never had more than two improving proposals to choose from"


def test_best_improvement_admits_at_most_one_child_per_iteration() -> None:
    result = run(sampling_strategy=IndependentSampling(3), selection_strategy=BestImprovement())
    for iteration, decisions in decisions_by_iteration(result).items():
        accepted = [d for d in decisions if d["task"] is not None and d["outcome"] == "accepted"]
        assert len(accepted) <= 1, iteration
    assert len(result.candidates) > 1


def test_gepa_defaults_are_the_one_proposal_run() -> None:
    plain = run(seed=3).to_dict()
    explicit = run(
        seed=3, sampling_strategy=SingleMutationSampling(), selection_strategy=AllImprovements()
    ).to_dict()
    assert explicit["candidates"] == plain["candidates"]
    assert explicit["decisions"] == plain["decisions"]


def test_same_seed_same_run() -> None:
    first = run(sampling_strategy=PxNSampling(2, 2), selection_strategy=TopKImprovements(2))
    second = run(sampling_strategy=PxNSampling(2, 2), selection_strategy=TopKImprovements(2))
    assert first.to_dict()["decisions"] == second.to_dict()["decisions"]
    assert first.candidates == second.candidates


def test_identical_children_of_one_iteration_are_scored_once() -> None:
    class SameText:
        def __call__(self, prompt: str) -> str:
            return "```\nAnswer with w0 w1 w2 w3 w4 w5 w6 w7 w8 w9.\n```"

    result = gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=KeywordAdapter(),
        reflection_lm=SameText(),
        max_metric_calls=120,
        sampling_strategy=SameParentSampling(n=3),
        display_progress_bar=False,
    )
    texts = [c["instructions"] for c in result.candidates]
    assert len(texts) == len(set(texts))
    reasons = [d["reason"] for d in result.decisions if d["task"] is not None]
    assert any(
        r.startswith("Duplicate of another candidate proposed this iteration") for r in reasons
    )


class BatchKeywordAdapter(KeywordAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.items_per_call: list[int] = []

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[Any]]]) -> list[Any]:
        self.items_per_call.append(len(items))
        return [self.evaluate(batch, candidate, capture_traces=True) for candidate, batch in items]


def test_selected_children_are_validated_in_one_batch_evaluate_call() -> None:
    adapter = BatchKeywordAdapter()
    result = run(adapter, budget=300, sampling_strategy=IndependentSampling(3))
    assert len(result.candidates) > 2
    assert any(n > 1 for n in adapter.items_per_call)
    assert result.total_metric_calls <= 300


def test_the_settings_are_journaled_and_a_resume_must_keep_them(tmp_path: Path) -> None:
    storage = MemoryStorage()
    opt = Optimizer(
        SEED,
        TRAIN,
        VAL,
        max_metric_calls=100,
        storage=storage,
        sampling_strategy=PxNSampling(p=2, n=3),
        selection_strategy=TopKImprovements(k=2),
    )
    assert opt.config.description["sampling_strategy"] == "PxNSampling(p=2, n=3)"
    assert opt.config.description["selection_strategy"] == "TopKImprovements(k=2)"
    drive(opt, KeywordAdapter(), stop_after=3)
    with pytest.raises(ConfigError, match="sampling_strategy"):
        Optimizer(SEED, TRAIN, VAL, max_metric_calls=100, storage=storage)
    plain = Optimizer(SEED, TRAIN, VAL, max_metric_calls=100)
    assert plain.config.description["sampling_strategy"] is None
    gepa_default = Optimizer(
        SEED, TRAIN, VAL, max_metric_calls=100, sampling_strategy=SingleMutationSampling()
    )
    assert gepa_default.config.description == plain.config.description


def test_subclasses_and_foreign_strategies_are_refused() -> None:
    class Mine(SameParentSampling):
        def sample_tasks(self, state: Any, selector: Any, sampler: Any, trainset: Any) -> list[Any]:
            return []

    with pytest.raises(ConfigError, match="sampling_strategy=Mine"):
        run(sampling_strategy=Mine(2))
    with pytest.raises(ConfigError, match=r"TopKImprovements\(k\) must be an int >= 1"):
        TopKImprovements(0)


def test_the_new_record_fields_survive_the_journal() -> None:
    iteration = IterationRecord(4, 1, (2, 3), tasks=((1, (2, 3)), (0, (5, 6))))
    reflection = ReflectionRecord(4, 0, ("a",), {"a": "x"}, {}, 1, task=1)
    decision = DecisionRecord(4, 0, None, "rejected", "why", 1.0, 2.0, "h", task=1)
    for record in (iteration, reflection, decision):
        assert record_from_dict(record_to_dict(record)) == record
    old = record_to_dict(IterationRecord(4, 1, (2, 3)))
    del old["tasks"]  # as a journal written before the field existed
    assert record_from_dict(old).tasks == ()


SAMPLING = {"sampling_strategy": PxNSampling(p=2, n=2), "selection_strategy": TopKImprovements(2)}


def summary(result: gepetto.Result) -> dict[str, Any]:
    data = result.to_dict()
    keys = ("candidates", "parents", "val_subscores", "total_metric_calls", "decisions")
    return {k: data[k] for k in keys}


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, Any]:
    opt = Optimizer(SEED, TRAIN, VAL, max_metric_calls=150, storage=MemoryStorage(), **SAMPLING)
    drive(opt, KeywordAdapter())
    return summary(opt.result())


@settings(max_examples=30, deadline=None)
@given(crashes=st.lists(st.integers(min_value=1, max_value=55), min_size=1, max_size=3))
def test_crash_and_resume_gives_the_uninterrupted_result(
    crashes: list[int], uninterrupted: dict[str, Any]
) -> None:
    storage = MemoryStorage()
    adapter = KeywordAdapter()

    def optimizer() -> Optimizer:
        return Optimizer(SEED, TRAIN, VAL, max_metric_calls=150, storage=storage, **SAMPLING)

    for tasks_before_crash in crashes:
        drive(optimizer(), adapter, stop_after=tasks_before_crash)
    final = optimizer()
    drive(final, adapter)
    assert summary(final.result()) == uninterrupted
    records = [record_from_dict(r) for _, r in storage.read("default")]
    evaluations = [r for r in records if r.kind == "evaluation"]
    assert sum(e.metric_calls for e in evaluations) == final.result().total_metric_calls
    decided = [(r.iteration, r.task) for r in records if isinstance(r, DecisionRecord)]
    assert len(decided) == len(set(decided)), "a proposal or an iteration was decided twice"


class GepaLog:
    """gepa's callback object (its method names), recording the events."""

    def __init__(self) -> None:
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def on_candidate_selected(self, event: dict[str, Any]) -> None:
        self.events["selected"].append(dict(event))

    def on_minibatch_sampled(self, event: dict[str, Any]) -> None:
        self.events["sampled"].append(dict(event))

    def on_candidate_accepted(self, event: dict[str, Any]) -> None:
        self.events["accepted"].append(dict(event))

    def on_candidate_rejected(self, event: dict[str, Any]) -> None:
        self.events["rejected"].append(dict(event))

    def on_iteration_end(self, event: dict[str, Any]) -> None:
        self.events["ended"].append(dict(event))


def test_gepa_callbacks_hear_of_every_proposal() -> None:
    log = GepaLog()
    result = run(
        sampling_strategy=PxNSampling(p=2, n=2),
        selection_strategy=TopKImprovements(1),
        callbacks=[log],
    )
    events = log.events
    iterations = {e["iteration"] for e in events["ended"]}
    assert iterations
    for number in iterations:
        assert len([e for e in events["selected"] if e["iteration"] == number]) == 4
        assert len([e for e in events["sampled"] if e["iteration"] == number]) == 4
    assert len(events["accepted"]) == len(result.candidates) - 1
    proposals = [d for d in result.decisions if d["task"] is not None]
    rejected = [d for d in proposals if d["outcome"] == "rejected"]
    assert len(events["rejected"]) >= len(rejected)
    dropped = [
        e for e in events["rejected"] if "not selected by the selection strategy" in e["reason"]
    ]
    assert all(e["new_score"] > e["old_score"] for e in dropped)


def test_the_selected_children_are_validated_side_by_side() -> None:
    """Through ask/tell: the validations of an iteration's selected children are all handed
    out before any of them is told."""
    opt = Optimizer(
        SEED, TRAIN, VAL, max_metric_calls=200, sampling_strategy=IndependentSampling(3)
    )
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    widest = 0
    while not opt.is_finished:
        outstanding = []
        while (task := opt.ask()) is not None:
            outstanding.append(task)
        validations = [
            t
            for t in outstanding
            if isinstance(t, gepetto.EvaluateTask) and t.purpose == "validation"
        ]
        widest = max(widest, len({t.candidate_hash for t in validations}))
        if not outstanding:
            break
        for task in outstanding:
            if isinstance(task, gepetto.EvaluateTask):
                result: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
            else:
                dataset = adapter.make_reflective_dataset(
                    task.candidate, task.eval_batch, list(task.components)
                )
                prompt = gepetto.proposers.render_reflection_prompt(
                    gepetto.DEFAULT_REFLECTION_TEMPLATE,
                    task.candidate["instructions"],
                    dataset["instructions"],
                )
                text = gepetto.proposers.extract_new_text(lm(prompt)).text
                result = gepetto.ProposalOutcome({"instructions": text} if text else {}, lm_calls=1)
            opt.tell(task.id, result)
    assert widest > 1
    assert len(opt.result().candidates) > 2


def test_a_run_dir_resumed_with_a_larger_budget_extends_the_run(tmp_path: Path) -> None:
    first = run(budget=70, run_dir=tmp_path / "a", **SAMPLING)
    extended = run(budget=150, run_dir=tmp_path / "a", **SAMPLING)
    straight = run(budget=150, run_dir=tmp_path / "b", **SAMPLING)
    assert first.total_metric_calls <= 70
    assert summary(extended) == summary(straight)


class EveryOtherCall:
    """gepa's AcceptanceCriterion shape, stateful: it must be asked once per proposal."""

    def __init__(self) -> None:
        self.calls = 0

    def should_accept(self, proposal: Any, state: Any) -> bool:
        self.calls += 1
        return self.calls % 2 == 1


def test_a_gepa_acceptance_criterion_is_asked_once_per_scored_proposal() -> None:
    criterion = EveryOtherCall()
    result = run(sampling_strategy=SameParentSampling(n=2), acceptance_criterion=criterion)
    scored = [d for d in result.decisions if d["task"] is not None and d["child_score"] is not None]
    assert criterion.calls == len(scored) > 0
    assert any(d["outcome"] == "accepted" for d in scored)


def test_gepa_batch_sampler_moves_on_within_an_iteration_and_resumes(tmp_path: Path) -> None:
    import random

    from gepetto.strategies.gepa_batch_sampler import EpochShuffledBatchSampler

    def sampled(budget: int, run_dir: Path) -> gepetto.Result:
        sampler = EpochShuffledBatchSampler(minibatch_size=2, rng=random.Random(0))
        return run(
            budget=budget,
            run_dir=run_dir,
            batch_sampler=sampler,
            sampling_strategy=SameParentSampling(n=3),
        )

    straight = sampled(150, tmp_path / "b")
    first = sampled(70, tmp_path / "a")
    extended = sampled(150, tmp_path / "a")
    assert first.total_metric_calls <= 70
    assert summary(extended) == summary(straight)

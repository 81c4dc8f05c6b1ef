"""parallel_proposals: the budget and the evaluation cache hold under random latencies,
evaluations in flight are shared (never paid twice, also across a crash), proposals whose
parent left the Pareto front meanwhile stop before their next paid step, and one proposal in
flight is exactly the sequential algorithm."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gepetto
from gepetto import EvaluateTask, Optimizer, ReflectTask
from gepetto.evaluation import ScoredBatch
from gepetto.lm.protocol import as_async_lm
from gepetto.proposers.reflective import ReflectiveProposer, resolve_templates
from gepetto.records import EvaluationRecord, record_from_dict
from gepetto.storage import MemoryStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter
from gepetto.types import candidate_hash

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"]
SEED = {"instructions": "Answer."}


def dataset(split: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Examples with a unique id (which names their split) and one or two required words."""
    rng = random.Random(f"{split}/{seed}")
    return [
        {"id": f"{split}{i}", "needs": rng.sample(WORDS, rng.choice((1, 2)))} for i in range(count)
    ]


class RandomLatencyAdapter(KeywordAdapter):
    """Async keyword adapter: sleeps 0-5 ms (seeded) per call; counts every evaluation of a
    (candidate texts, example id) pair, the example id naming the split."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.evaluated: Counter[tuple[str, str]] = Counter()

    async def evaluate(  # type: ignore[override]
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        for example in batch:  # counted when the call starts: reserved work, not finished work
            self.evaluated[(candidate["instructions"], example["id"])] += 1
        await asyncio.sleep(self.rng.uniform(0, 0.005))
        return self._run(batch, candidate, capture_traces)


class RandomLatencyLM(FeedbackFollowingLM):
    """FeedbackFollowingLM (one word per call) behind a random 0-5 ms await."""

    def __init__(self, seed: int) -> None:
        super().__init__(words_per_call=1)
        self.rng = random.Random(seed + 1000)

    async def __call__(self, prompt: Any) -> str:  # type: ignore[override]
        await asyncio.sleep(self.rng.uniform(0, 0.005))
        return super().__call__(prompt)


class ModeCountingAdapter(RandomLatencyAdapter):
    """Also counts (texts, example id, capture_traces): the cache reuses traced results only."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.by_mode: Counter[tuple[str, str, bool]] = Counter()

    async def evaluate(  # type: ignore[override]
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        for example in batch:
            self.by_mode[(candidate["instructions"], example["id"], capture_traces)] += 1
        return await super().evaluate(batch, candidate, capture_traces)


def _run_k8(adapter: RandomLatencyAdapter, seed: int, budget: int, **options: Any) -> Any:
    return gepetto.optimize(
        SEED,
        options.pop("trainset", None) or dataset("train", 24, seed),
        dataset("val", 8, seed),
        adapter=adapter,
        reflection_lm=RandomLatencyLM(seed),
        max_metric_calls=budget,
        parallel_proposals=8,
        max_concurrency=16,
        seed=seed,
        display_progress_bar=False,
        **options,
    )


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("budget", [57, 160])
def test_k8_random_latencies_respect_budget_and_never_revalidate(seed: int, budget: int) -> None:
    adapter = RandomLatencyAdapter(seed)
    result = _run_k8(adapter, seed, budget)
    assert sum(adapter.evaluated.values()) == result.total_metric_calls <= budget
    validated_twice = {
        pair: n for pair, n in adapter.evaluated.items() if n > 1 and pair[1].startswith("val")
    }
    assert not validated_twice, f"validated more than once: {validated_twice}"
    assert result.num_reflection_calls >= 8  # 8 proposals really ran side by side
    assert result.stop_reason is not None


def test_k8_concurrent_parent_evaluations_are_shared() -> None:
    # All 8 first proposals evaluate the seed on the same 3 examples at once: one pays.
    adapter = ModeCountingAdapter(0)
    result = _run_k8(adapter, 0, 60, trainset=dataset("train", 3, 0))
    assert sum(adapter.evaluated.values()) == result.total_metric_calls <= 60
    twice = {key: n for key, n in adapter.by_mode.items() if n > 1}
    assert not twice, f"evaluated more than once in the same mode: {twice}"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=10_000),
    budget=st.integers(min_value=10, max_value=140),
    train_size=st.integers(min_value=1, max_value=8),
    minibatch=st.integers(min_value=1, max_value=4),
)
def test_k8_random_latencies_evaluate_no_candidate_example_split_twice(
    seed: int, budget: int, train_size: int, minibatch: int
) -> None:
    # Small trainsets: proposals in flight at once keep needing the same (parent, example).
    adapter = RandomLatencyAdapter(seed)
    result = _run_k8(
        adapter,
        seed,
        budget,
        trainset=dataset("train", train_size, seed),
        reflection_minibatch_size=minibatch,
    )
    assert sum(adapter.evaluated.values()) == result.total_metric_calls <= budget
    twice = {pair: n for pair, n in adapter.evaluated.items() if n > 1}
    assert not twice, f"evaluated more than once: {twice}"


def test_a_shared_evaluation_that_fails_is_a_failure_for_every_waiter() -> None:
    trainset, valset = dataset("train", 3, 0), dataset("val", 4, 0)
    opt = Optimizer(SEED, trainset, valset, max_metric_calls=50, parallel_proposals=3)
    seed_validation = opt.ask()
    assert isinstance(seed_validation, EvaluateTask)
    opt.tell(seed_validation.id, KeywordAdapter().evaluate(seed_validation.examples, SEED))
    first = opt.ask()  # iteration 0 evaluates the seed on the whole trainset...
    assert isinstance(first, EvaluateTask) and first.purpose == "parent_minibatch"
    assert opt.ask() is None  # ...iterations 1 and 2 wait for it instead of paying again
    batch = KeywordAdapter().evaluate(first.examples, SEED, capture_traces=True)
    opt.tell(first.id, ScoredBatch(batch, (False, True, False)))  # example 1 raised
    reflections = [opt.ask() for _ in range(3)]
    assert all(isinstance(task, ReflectTask) for task in reflections)
    assert all(len(task.examples) == 2 for task in reflections)  # type: ignore[union-attr]
    parents = [
        r for r in opt.state.records if isinstance(r, EvaluationRecord) and r.split == "train"
    ]
    assert [r.iteration for r in parents] == [0, 1, 2]
    assert [r.failed_examples for r in parents] == [(first.example_ids[1],)] * 3
    assert [r.metric_calls for r in parents] == [3, 0, 0]
    assert opt.state.total_metric_calls == len(valset) + 3


def _drive_in_parallel(
    opt: Optimizer, adapter: KeywordAdapter, rng: random.Random, crash_after: int | None
) -> None:
    """Hand out every task, tell them back in a random order; "crash" (stop telling, tasks
    still out) after ``crash_after`` tells."""
    lm = FeedbackFollowingLM()
    outstanding: list[Any] = []
    told = 0
    while not opt.is_finished:
        while (task := opt.ask()) is not None:
            outstanding.append(task)
        if not outstanding or told == crash_after:
            return
        task = outstanding.pop(rng.randrange(len(outstanding)))
        if isinstance(task, EvaluateTask):
            outcome: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:
            data = adapter.make_reflective_dataset(
                task.candidate, task.eval_batch, list(task.components)
            )
            prompt = gepetto.proposers.render_reflection_prompt(
                gepetto.DEFAULT_REFLECTION_TEMPLATE,
                task.candidate["instructions"],
                data["instructions"],
            )
            text = gepetto.proposers.extract_new_text(lm(prompt)).text
            outcome = gepetto.ProposalOutcome({"instructions": text} if text else {}, lm_calls=1)
        opt.tell(task.id, outcome)
        told += 1


class CountingKeywordAdapter(KeywordAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.evaluated: Counter[tuple[str, str, bool]] = Counter()

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        for example in batch:
            self.evaluated[(candidate["instructions"], example["id"], capture_traces)] += 1
        return super().evaluate(batch, candidate, capture_traces)


@settings(max_examples=25, deadline=None)
@given(
    order=st.integers(min_value=0, max_value=10_000),
    crashes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=3),
)
def test_k4_crash_and_resume_pays_for_nothing_twice(order: int, crashes: list[int]) -> None:
    storage = MemoryStorage()
    adapter = CountingKeywordAdapter()
    trainset, valset = dataset("train", 4, 1), dataset("val", 6, 1)
    rng = random.Random(order)

    def optimizer() -> Optimizer:
        return Optimizer(
            SEED, trainset, valset, max_metric_calls=90, parallel_proposals=4, storage=storage
        )

    for tells in crashes:
        _drive_in_parallel(optimizer(), adapter, rng, crash_after=tells)
    final = optimizer()
    _drive_in_parallel(final, adapter, rng, crash_after=None)
    result = final.result()
    assert result.stop_reason is not None
    assert sum(adapter.evaluated.values()) == result.total_metric_calls <= 90
    twice = {key: n for key, n in adapter.evaluated.items() if n > 1}
    assert not twice, f"evaluated more than once: {twice}"
    records = [record_from_dict(r) for _, r in storage.read("default")]
    keys = [
        (r.iteration, r.purpose, r.candidate_hash, example_id)
        for r in records
        if r.kind == "evaluation"
        for example_id in r.example_ids
    ]
    assert len(keys) == len(set(keys)), "an evaluation was journaled twice"


def test_k1_evaluates_no_candidate_example_split_twice() -> None:
    # Every minibatch is the whole trainset: an accepted child becomes a parent on the very
    # examples it was scored on as a child, which must come from the cache.
    adapter = RandomLatencyAdapter(0)
    gepetto.optimize(
        SEED,
        dataset("train", 3, 0),
        dataset("val", 8, 0),
        adapter=adapter,
        reflection_lm=RandomLatencyLM(0),
        max_metric_calls=80,
        parallel_proposals=1,
        max_concurrency=16,
        display_progress_bar=False,
    )
    twice = {pair: n for pair, n in adapter.evaluated.items() if n > 1}
    assert not twice, f"evaluated more than once: {twice}"


def _run_sequentially(trainset: list[Any], valset: list[Any], budget: int) -> gepetto.Result:
    """Drive ``Optimizer`` by ask/tell, one task at a time, with gepetto's own proposer."""
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    optimizer = Optimizer(SEED, trainset, valset, max_metric_calls=budget, seed=0)
    proposer = ReflectiveProposer(as_async_lm(lm), resolve_templates(None, ["instructions"]))
    while not optimizer.is_finished:
        task = optimizer.ask()
        if task is None:  # finished: nothing is outstanding in a strictly sequential run
            assert not optimizer.has_outstanding_tasks
            break
        assert optimizer.ask() is None  # one proposal in flight: one task at a time
        if isinstance(task, EvaluateTask):
            outcome: Any = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:
            assert isinstance(task, ReflectTask)
            data = adapter.make_reflective_dataset(
                task.candidate, task.eval_batch, list(task.components)
            )
            outcome = asyncio.run(
                proposer.propose(
                    task.candidate, data, list(task.components), task.rejected, tried=task.tried
                )
            )
        optimizer.tell(task.id, outcome)
    assert optimizer.is_finished
    return optimizer.result()


def test_k1_matches_the_sequential_ask_tell_trace() -> None:
    trainset, valset, budget = dataset("train", 24, 7), dataset("val", 8, 7), 200
    sequential = _run_sequentially(trainset, valset, budget).to_dict()
    runs = [
        gepetto.optimize(
            SEED,
            trainset,
            valset,
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=budget,
            parallel_proposals=1,
            max_concurrency=concurrency,
            seed=0,
            display_progress_bar=False,
        ).to_dict()
        for adapter, lm, concurrency in [
            (KeywordAdapter(), FeedbackFollowingLM(), 1),
            (RandomLatencyAdapter(3), RandomLatencyLM(3), 16),
        ]
    ]
    assert sequential["num_iterations"] > 5 and len(sequential["candidates"]) > 2
    assert runs[0] == sequential
    assert runs[1] == sequential


class PeakAdapter(KeywordAdapter):
    """Sync adapter that records how many of its evaluate calls run at once."""

    def __init__(self, expected: int = 40) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        # Every call waits until `expected` calls are in flight together (or 10 s pass), so
        # the peak does not depend on how fast threads start on a loaded machine.
        self._all_in = threading.Barrier(expected, timeout=10)

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        with contextlib.suppress(threading.BrokenBarrierError):
            self._all_in.wait()
        with self._lock:
            self.in_flight -= 1
        return self._run(batch, candidate, capture_traces)


def test_sync_adapter_reaches_max_concurrency() -> None:
    # Sync evaluations run in the run's own pool, not the loop's default executor (which has
    # min(32, cpus + 4) threads and would cap them below max_concurrency).
    adapter = PeakAdapter()
    valset = [{"needs": "alpha"}] * 40
    gepetto.optimize(
        SEED,
        valset[:3],
        valset,
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,  # only the seed's validation: 40 chunks of one example
        max_concurrency=40,
        display_progress_bar=False,
    )
    assert adapter.peak == 40


ALL_WORDS = {"instructions": "Answer. " + " ".join(WORDS)}
ALL_WORDS_TOO = {"instructions": "Answer with " + " ".join(reversed(WORDS))}


def _tell_evaluation(opt: Optimizer, task: Any) -> None:
    assert isinstance(task, EvaluateTask)
    opt.tell(task.id, KeywordAdapter().evaluate(task.examples, task.candidate, True))


def _two_proposals_from_the_seed() -> tuple[Optimizer, list[Any]]:
    """K=2 after the seed's validation: both proposals start from the seed (the only
    candidate); returns their parent minibatch evaluations, in iteration order."""
    trainset, valset = dataset("train", 6, 0), dataset("val", 4, 0)
    opt = Optimizer(SEED, trainset, valset, max_metric_calls=200, parallel_proposals=2)
    _tell_evaluation(opt, opt.ask())  # the seed's validation
    parents = [opt.ask(), opt.ask()]
    assert [(t.iteration, t.purpose) for t in parents] == [  # type: ignore[union-attr]
        (0, "parent_minibatch"),
        (1, "parent_minibatch"),
    ]
    return opt, parents


def _decisions(opt: Optimizer) -> dict[int, tuple[str, str]]:
    return {d.iteration: (d.outcome, d.reason) for d in opt.state.decisions}


def test_a_sibling_accepted_on_the_minibatch_waits_and_skips_a_stale_parent() -> None:
    opt, parents = _two_proposals_from_the_seed()
    for task in parents:
        _tell_evaluation(opt, task)
    reflections = [opt.ask(), opt.ask()]
    assert all(isinstance(task, ReflectTask) for task in reflections)
    opt.tell(reflections[0].id, ALL_WORDS)  # type: ignore[union-attr]
    opt.tell(reflections[1].id, ALL_WORDS_TOO)  # type: ignore[union-attr]
    children = [opt.ask(), opt.ask()]
    for task in children:
        _tell_evaluation(opt, task)  # both children beat the seed on their minibatch...
    validation = opt.ask()
    assert isinstance(validation, EvaluateTask) and validation.purpose == "validation"
    assert validation.iteration == 0
    assert opt.ask() is None  # ...the second waits for the verdict on the first
    _tell_evaluation(opt, validation)  # candidate 1 dominates the seed: the seed leaves the front
    outcome, reason = _decisions(opt)[1]
    assert outcome == "skipped" and reason.startswith("stale: parent 0 left the Pareto front")
    assert _decisions(opt)[0][0] == "accepted"
    validated = {
        r.candidate_hash
        for r in opt.state.records
        if isinstance(r, EvaluationRecord) and r.split == "val"
    }
    assert candidate_hash(ALL_WORDS_TOO) not in validated  # no budget spent validating it
    following = opt.ask()  # the next proposals start from the new front
    assert isinstance(following, EvaluateTask) and following.candidate == ALL_WORDS


def test_a_proposal_whose_parent_left_the_front_does_not_reflect() -> None:
    opt, (first, second) = _two_proposals_from_the_seed()
    _tell_evaluation(opt, first)
    reflection = opt.ask()
    assert isinstance(reflection, ReflectTask) and reflection.iteration == 0
    opt.tell(reflection.id, ALL_WORDS)
    _tell_evaluation(opt, opt.ask())  # iteration 0's child on its minibatch
    _tell_evaluation(opt, opt.ask())  # its validation: admitted, the seed is dominated
    assert _decisions(opt)[0][0] == "accepted"
    _tell_evaluation(opt, second)  # iteration 1's parent evaluation comes back late
    outcome, reason = _decisions(opt)[1]
    assert outcome == "skipped" and reason.startswith("stale: parent 0")
    assert [r.iteration for r in opt.state.reflections] == [0]


def test_one_proposal_in_flight_never_judges_its_parent_stale() -> None:
    # K=1 with epsilon_greedy: parents are often dominated when chosen; that is the strategy.
    result = gepetto.optimize(
        SEED,
        dataset("train", 12, 4),
        dataset("val", 6, 4),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        candidate_selection_strategy=gepetto.strategies.EpsilonGreedySelector(0.5),
        max_metric_calls=150,
        display_progress_bar=False,
    )
    assert not [d for d in result.decisions if d["reason"].startswith("stale")]

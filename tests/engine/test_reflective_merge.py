"""The reflective merge inside real runs: where gepa's merge cannot act, the reflection model
writes one text from two complementary candidates; journaled, resumed without a second call,
refused where no reflection model writes the proposals."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import EvaluateTask, MergeTask, Optimizer, ReflectTask
from gepetto.engine.context import MergeSchedule
from gepetto.errors import ConfigError
from gepetto.proposers import extract_new_text, render_reflection_prompt
from gepetto.proposers.merging import render_merge_prompt
from gepetto.records import record_from_dict
from gepetto.state import RunState
from gepetto.storage import MemoryStorage, SQLiteStorage
from gepetto.strategies import ParetoSelector
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter
from tests.engine.test_gepa_callbacks import RecordingCallback

SEED = {"instructions": "Be brief."}
A_WORDS, B_WORDS = ["a1", "a2", "a3"], ["b1", "b2", "b3"]
DATA = [{"needs": word} for word in A_WORDS + B_WORDS]


class SeedFirst:
    """Picks the seed as parent until it has two children (two branches), then Pareto; it
    keeps no state, so a resumed run picks as the uninterrupted one did."""

    pareto = ParetoSelector()

    def select(self, state: RunState, rng: random.Random) -> int:
        return 0 if len(state.candidates) < 3 else self.pareto.select(state, rng)


class Branches:
    """The first minibatch asks only for the a-words, the second only for the b-words: the
    two branches off the seed each learn one half, and each wins where the other fails."""

    minibatch_size = 3

    def next_batch(self, train_size: int, rng: random.Random) -> list[int]:
        return sorted(rng.sample(range(train_size), self.minibatch_size))

    def next_batch_at(self, iteration: int, train_size: int, rng: random.Random) -> list[int]:
        if iteration in (0, 1):
            return [3 * iteration, 3 * iteration + 1, 3 * iteration + 2]
        return self.next_batch(train_size, rng)


def run(lm: FeedbackFollowingLM, **options: Any) -> gepetto.Result:
    options.setdefault("merge_strategy", "reflective")
    return gepetto.optimize(
        SEED,
        DATA,
        DATA,
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        candidate_selection_strategy=SeedFirst(),
        batch_sampler=Branches(),
        max_metric_calls=60,
        use_merge=True,
        merge_val_overlap_floor=3,
        display_progress_bar=False,
        **options,
    )


def merged_ids(result: gepetto.Result) -> list[int]:
    return [i for i, parents in enumerate(result.parents) if len(parents) == 2]


def test_one_component_changed_by_both_branches_is_merged_by_the_reflection_model() -> None:
    lm = FeedbackFollowingLM(3)
    result = run(lm)
    assert result.candidates[1]["instructions"] == "Be brief. a1 a2 a3"
    assert result.candidates[2]["instructions"] == "Be brief. b1 b2 b3"
    (child,) = merged_ids(result)
    assert sorted(result.parents[child]) == [1, 2]
    assert result.candidates[child]["instructions"] == "Be brief. a1 a2 a3 b1 b2 b3"
    assert result.val_aggregate_scores[child] == 1.0 == result.best_score
    assert lm.merges == 1
    reasons = [d["reason"] for d in result.decisions if "merge of" in d["reason"]]
    assert any("matched the better parent" in r for r in reasons)


def test_gepas_merge_cannot_act_when_both_branches_changed_the_one_component() -> None:
    lm = FeedbackFollowingLM(3)
    result = run(lm, merge_strategy="components")
    assert merged_ids(result) == []
    assert lm.merges == 0
    assert result.candidates[1]["instructions"] == "Be brief. a1 a2 a3"  # the same branches


def test_the_merge_reflection_is_journaled_and_counted(tmp_path: Path) -> None:
    lm = FeedbackFollowingLM(3)
    result = run(lm, run_dir=tmp_path)
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    records = [record_from_dict(body) for _, body in storage.read("default")]
    storage.close()
    merge = next(r for r in records if r.kind == "iteration" and r.operation == "merge")
    assert merge.merge_parents == (1, 2) and merge.merge_ancestor == 0
    (written,) = [r for r in records if r.kind == "reflection" and r.iteration == merge.iteration]
    assert written.proposed == {"instructions": "Be brief. a1 a2 a3 b1 b2 b3"}
    assert written.lm_calls == 1
    assert result.num_reflection_calls == lm.calls
    again = run(FeedbackFollowingLM(3), run_dir=tmp_path)  # resumed: nothing new to do
    assert again.candidates == result.candidates


def test_an_unusable_merge_reply_fails_the_iteration_and_the_run_goes_on() -> None:
    class RepeatsVersionA(FeedbackFollowingLM):
        def __call__(self, prompt: Any) -> str:
            reply = super().__call__(prompt)
            if "Version B:" in str(prompt):
                return "```\nBe brief. a1 a2 a3\n```"
            return reply

    lm = RepeatsVersionA(3)
    result = run(lm)
    first_merge = next(d for d in result.decisions if "merge" in d["reason"])
    assert first_merge["outcome"] == "failed"
    assert "repeats version A unchanged (after 2 attempts)" in first_merge["reason"]
    assert lm.merges >= 2  # the reply, and the one asked for again with a note
    later = [d for d in result.decisions if d["iteration"] > first_merge["iteration"]]
    assert any(d["outcome"] == "accepted" for d in later)  # the run went on


@pytest.mark.parametrize(
    "source",
    [
        {"custom_candidate_proposer": lambda candidate, dataset, components: {}},
        {"reflection_lm": None, "custom_candidate_proposer": lambda c, d, n: {}},
    ],
)
def test_refused_before_any_call_where_no_reflection_model_writes(source: dict[str, Any]) -> None:
    lm = FeedbackFollowingLM(3)
    options = {"reflection_lm": lm, **source}
    adapter = KeywordAdapter()
    with pytest.raises(ConfigError, match="merge_strategy='reflective'"):
        gepetto.optimize(
            SEED,
            DATA,
            adapter=adapter,
            max_metric_calls=30,
            use_merge=True,
            merge_strategy="reflective",
            **options,
        )
    assert adapter.evaluate_calls == 0 and lm.calls == 0


def test_an_unknown_strategy_is_refused_with_the_choices() -> None:
    with pytest.raises(ConfigError, match="merge_strategy must be one of 'components', 'reflect"):
        run(FeedbackFollowingLM(3), merge_strategy="genetic")


# ----- ask/tell: an interruption at every task gives the uninterrupted result ---------------


TWO_COMPONENTS = {"system": "Be brief.", "tools": "No tools."}
DATA_TWO = [{"needs": w, "component": "system"} for w in A_WORDS] + [
    {"needs": w, "component": "tools"} for w in B_WORDS
]


def do(task: Any, adapter: KeywordAdapter, lm: FeedbackFollowingLM) -> Any:
    """What gepetto's driver does with a task, written out for an ask/tell caller."""
    if isinstance(task, EvaluateTask):
        return adapter.evaluate(task.examples, task.candidate, task.capture_traces)
    if isinstance(task, MergeTask):
        texts = {}
        for name in task.components:
            prompt = render_merge_prompt(task.first[name], task.second[name], task.wins)
            texts[name] = extract_new_text(lm(prompt)).text
        return gepetto.ProposalOutcome(texts, lm_calls=len(task.components))
    assert isinstance(task, ReflectTask)
    components = list(task.components)
    dataset = adapter.make_reflective_dataset(task.candidate, task.eval_batch, components)
    texts = {}
    for name in components:
        prompt = render_reflection_prompt(
            gepetto.DEFAULT_REFLECTION_TEMPLATE, task.candidate[name], dataset[name]
        )
        texts[name] = extract_new_text(lm(prompt)).text or ""
    return gepetto.ProposalOutcome(texts, lm_calls=len(components))


def drive(
    storage: MemoryStorage, lm: FeedbackFollowingLM, strategy: str, stop_after: int | None = None
) -> Any:
    """Run tasks one by one; after ``stop_after`` tasks, "crash" with one task in flight."""
    seed, data = (SEED, DATA) if strategy == "reflective" else (TWO_COMPONENTS, DATA_TWO)
    opt = Optimizer(
        seed,
        data,
        data,
        storage=storage,
        max_metric_calls=60,
        candidate_selection_strategy=SeedFirst(),
        batch_sampler=Branches(),
        use_merge=True,
        merge_val_overlap_floor=3,
        merge_strategy=strategy,
    )
    adapter, done = KeywordAdapter(), 0
    while (task := opt.ask()) is not None:
        if stop_after is not None and done >= stop_after:
            return None  # the task went out and never comes back: the process "died"
        opt.tell(task.id, do(task, adapter, lm))
        done += 1
    return opt.result()


@pytest.mark.parametrize("strategy", ["reflective", "components"])
def test_a_run_interrupted_at_any_task_resumes_to_the_same_merges(strategy: str) -> None:
    lm = FeedbackFollowingLM(2)
    whole = drive(MemoryStorage(), lm, strategy)
    assert merged_ids(whole), whole.decisions
    tried = [d for d in whole.decisions if "merge" in d["reason"]]
    assert len(tried) >= 2  # the schedule itself is replayed, not only one merge
    for stop_after in range(1, 60):
        storage, first, second = MemoryStorage(), FeedbackFollowingLM(2), FeedbackFollowingLM(2)
        if drive(storage, first, strategy, stop_after) is not None:
            break  # the run finished before this many tasks: every point was covered
        resumed = drive(storage, second, strategy)
        where = f"interrupted after {stop_after} tasks"
        assert resumed.candidates == whole.candidates, where
        assert resumed.decisions == whole.decisions, where
        assert resumed.total_metric_calls == whole.total_metric_calls, where
        if first.merges == 1:  # told before the interruption: journaled, not asked again
            assert second.merges == 0, where
    else:
        pytest.fail("the run needs more than 60 tasks: widen the range")


def test_the_merge_schedule_is_gepas() -> None:
    schedule = MergeSchedule(limit=2)
    assert not schedule.is_due()
    schedule.child_accepted()
    assert schedule.is_due()
    schedule.tried()  # no pair found, or the merge was rejected: nothing is used up
    assert not schedule.is_due() and schedule.due == 1
    schedule.child_accepted()
    assert schedule.is_due() and schedule.due == 2
    schedule.tried()
    schedule.merge_accepted()
    schedule.child_accepted()
    schedule.tried()
    schedule.merge_accepted()  # the second accepted merge reaches the limit
    schedule.child_accepted()
    assert not schedule.is_due() and schedule.accepted == 2
    replayed = MergeSchedule(limit=2)
    replayed.replay(["child", "tried", "child", "tried", "merged", "child", "tried", "merged"])
    replayed.child_accepted()
    assert replayed == schedule


def test_gepa_callbacks_see_the_written_text_as_the_merged_candidate() -> None:
    callback = RecordingCallback()
    result = run(FeedbackFollowingLM(3), callbacks=[callback])
    (child,) = merged_ids(result)
    (attempt,) = [e for name, e in callback.events if name == "on_merge_attempted"]
    assert attempt["parent_ids"] == [1, 2]
    assert attempt["merged_candidate"] == result.candidates[child]
    merge_iteration = attempt["iteration"]
    proposals = [e for name, e in callback.events if name == "on_proposal_start"]
    assert all(e["iteration"] != merge_iteration for e in proposals)  # as in gepa's merges
    accepted = [e for name, e in callback.events if name == "on_merge_accepted"]
    assert accepted == [{"iteration": merge_iteration, "new_candidate_idx": child,
                         "parent_ids": [1, 2]}]  # fmt: skip

"""Resume from the journal: same candidates as an uninterrupted run, nothing paid twice."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gepetto
from gepetto import EvaluateTask, Optimizer
from gepetto.errors import ConfigError
from gepetto.records import record_from_dict
from gepetto.storage import MemoryStorage, SQLiteStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(10)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def drive(opt: Optimizer, adapter: KeywordAdapter, stop_after: int | None = None) -> int:
    """Run tasks one by one; after ``stop_after`` tasks, "crash" with one task in flight."""
    lm = FeedbackFollowingLM()
    done = 0
    while not opt.is_finished:
        if stop_after is not None and done >= stop_after:
            opt.ask()  # a task goes out and never comes back: the process "dies" mid-task
            return done
        task = opt.ask()
        if task is None:
            break
        if isinstance(task, EvaluateTask):
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
        done += 1
    return done


def new_optimizer(storage: Any, budget: int = 150, **options: Any) -> Optimizer:
    return Optimizer(SEED, TRAIN, VAL, max_metric_calls=budget, storage=storage, **options)


def summary(result: gepetto.Result) -> dict[str, Any]:
    data = result.to_dict()
    return {k: data[k] for k in ("candidates", "parents", "val_subscores", "total_metric_calls")}


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, Any]:
    opt = new_optimizer(MemoryStorage())
    drive(opt, KeywordAdapter())
    return summary(opt.result())


@settings(max_examples=30, deadline=None)
@given(crashes=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=4))
def test_crash_and_resume_gives_the_uninterrupted_result(
    crashes: list[int], uninterrupted: dict[str, Any]
) -> None:
    storage = MemoryStorage()
    adapter = KeywordAdapter()
    for tasks_before_crash in crashes:
        drive(new_optimizer(storage), adapter, stop_after=tasks_before_crash)
    final = new_optimizer(storage)
    drive(final, adapter)
    assert summary(final.result()) == uninterrupted
    # Nothing finished was evaluated again: the adapter saw exactly the metric calls recorded.
    records = [record_from_dict(r) for _, r in storage.read("default")]
    evaluations = [r for r in records if r.kind == "evaluation"]
    assert sum(e.metric_calls for e in evaluations) == final.result().total_metric_calls
    keys = [
        (e.iteration, e.purpose, e.candidate_hash, example_id)
        for e in evaluations
        for example_id in e.example_ids
    ]
    assert len(keys) == len(set(keys)), "an evaluation was journaled twice"
    decided = [r.iteration for r in records if r.kind == "decision"]
    assert len(decided) == len(set(decided)), "an iteration was decided twice"


def test_resume_with_a_larger_budget_extends_the_run(tmp_path: Path) -> None:
    def run(budget: int, run_dir: Path) -> gepetto.Result:
        return gepetto.optimize(
            SEED,
            TRAIN,
            VAL,
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=budget,
            run_dir=run_dir,
            display_progress_bar=False,
        )

    first = run(60, tmp_path / "a")
    extended = run(150, tmp_path / "a")
    straight = run(150, tmp_path / "b")
    assert first.total_metric_calls <= 60
    assert summary(extended) == summary(straight)
    again = run(150, tmp_path / "b")  # nothing left to do: nothing is paid again
    assert again.total_metric_calls == straight.total_metric_calls


def test_seed_validation_is_not_paid_twice(tmp_path: Path) -> None:
    adapter = KeywordAdapter()
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    drive(new_optimizer(storage), adapter, stop_after=1)  # the seed's validation finished
    calls_before = adapter.evaluate_calls
    opt = new_optimizer(storage)
    task = opt.ask()
    assert isinstance(task, EvaluateTask)
    assert task.purpose == "parent_minibatch", "the seed must not be validated again"
    assert adapter.evaluate_calls == calls_before
    storage.close()


def test_different_inputs_are_refused_unless_forked(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    drive(new_optimizer(storage), KeywordAdapter(), stop_after=3)
    with pytest.raises(ConfigError, match="different seed_candidate"):
        Optimizer({"instructions": "Other."}, TRAIN, VAL, max_metric_calls=150, storage=storage)
    with pytest.raises(ConfigError, match="different trainset"):
        Optimizer(SEED, TRAIN[:-1], VAL, max_metric_calls=150, storage=storage)
    with pytest.raises(ConfigError, match="different settings"):
        new_optimizer(storage, candidate_selection_strategy="current_best")
    forked = Optimizer(
        {"instructions": "Other."}, TRAIN, VAL, max_metric_calls=150, storage=storage, fork=True
    )
    assert forked.run_id == "default-fork-1"
    assert storage.header("default") is not None
    storage.close()


def test_journal_survives_reopening_and_sampler_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    adapter = KeywordAdapter()
    rng = random.Random(7)
    for _ in range(5):
        storage = SQLiteStorage(path)
        drive(new_optimizer(storage, budget=400), adapter, stop_after=rng.randint(1, 20))
        storage.close()
    storage = SQLiteStorage(path)
    final = new_optimizer(storage, budget=400)
    drive(final, adapter)
    reference = new_optimizer(MemoryStorage(), budget=400)
    drive(reference, KeywordAdapter())
    assert summary(final.result()) == summary(reference.result())
    storage.close()


def test_a_refused_resume_names_each_setting_with_its_old_and_new_value() -> None:
    storage = MemoryStorage()
    adapter = KeywordAdapter()
    drive(new_optimizer(storage), adapter, stop_after=3)
    paid = adapter.evaluate_calls
    with pytest.raises(ConfigError) as caught:
        new_optimizer(storage, seed=1, candidate_selection_strategy="current_best", budget=300)
    message = str(caught.value)
    assert "different settings (" in message
    assert "candidate_selection_strategy: 'pareto' in the journal, 'current_best' now" in message
    assert "seed: 0 in the journal, 1 now" in message
    assert "max_metric_calls" not in message  # a resume may change the budget
    assert adapter.evaluate_calls == paid


def run_with_options(run_dir: Path, adapter: KeywordAdapter, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        run_dir=run_dir,
        display_progress_bar=False,
        **options,
    )


@pytest.mark.parametrize(
    ("option", "value", "shown"),
    [
        ("reflection_edit", "append", "reflection_edit: 'rewrite' in the journal, 'append' now"),
        ("reflection_retries", 0, "reflection_retries: 1 in the journal, 0 now"),
        ("proposal_guards", "reject", "proposal_guards: 'flag' in the journal, 'reject' now"),
        ("drop_wrong_examples", True, "drop_wrong_examples: False in the journal, True now"),
        (
            "reflection_prompt_template",
            "Improve: <curr_param>\n<side_info>",
            "reflection_prompt_template: None in the journal, 'Improve: <curr_param>",
        ),
        ("reflection_history", 0, "reflection_history: 3 in the journal, 0 now"),
    ],
)
def test_resuming_with_other_reflection_options_is_refused(
    tmp_path: Path, option: str, value: Any, shown: str
) -> None:
    adapter = KeywordAdapter()
    run_with_options(tmp_path, adapter)
    paid = adapter.evaluate_calls
    with pytest.raises(ConfigError, match="different settings") as caught:
        run_with_options(tmp_path, adapter, **{option: value})
    assert shown in str(caught.value)
    assert adapter.evaluate_calls == paid
    # Started with that option, the run resumes with it (and only with it).
    run_with_options(tmp_path / "other", adapter, **{option: value})
    paid = adapter.evaluate_calls
    run_with_options(tmp_path / "other", adapter, **{option: value})
    assert adapter.evaluate_calls == paid
    with pytest.raises(ConfigError, match=f"{option}: "):
        run_with_options(tmp_path / "other", adapter)


def test_every_optimize_option_is_checked_on_resume_or_listed_as_changeable() -> None:
    import inspect

    from gepetto.engine.options import (
        DEFAULTS,
        INPUTS,
        RESUMABLE,
        GEPAConfig,
        describe,
        setting_fields,
    )

    parameters = inspect.signature(gepetto.aoptimize).parameters
    keywords = {p for p in parameters if parameters[p].kind is not inspect.Parameter.VAR_KEYWORD}
    keywords |= set(gepetto.GepettoOptions.__annotations__)
    assert keywords - {"config"} == INPUTS | set(setting_fields()) | {"use_merge"}
    assert not (INPUTS & set(RESUMABLE)) and not (set(RESUMABLE) & set(DEFAULTS))
    assert set(setting_fields()) | {"use_merge", "objective_weights"} == (
        set(RESUMABLE) | set(DEFAULTS) | {"objective_weights"}
    )
    # What a run with every default records is DEFAULTS: a journal that predates a setting
    # ran with its default.
    recorded = dict(describe(GEPAConfig()))
    recorded.setdefault("objective_weights", None)  # recorded only when set
    fingerprinted = {name: value for name, value in recorded.items() if name not in RESUMABLE}
    assert fingerprinted == DEFAULTS

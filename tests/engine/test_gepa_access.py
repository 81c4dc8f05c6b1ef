"""A gepa DataLoader valset that grows during the run, read by a gepa evaluation policy."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pytest

import gepetto
from gepetto.gepa_state import GEPAStateView
from gepetto.records import ValsetGrowthRecord, record_from_dict
from gepetto.storage import MemoryStorage
from gepetto.strategies.gepa_eval_policy import FullEvaluationPolicy
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

SEED = {"instructions": "Answer."}
TRAIN = keyword_dataset(["alpha", "beta", "gamma", "delta"])


class ReleasingLoader:
    """A gepa DataLoader with string ids that shows its examples a few at a time; it can
    fetch every one of them (as a loader over a database could)."""

    def __init__(self, words: Sequence[str], shown: int) -> None:
        self.examples = {f"v-{word}": {"needs": word} for word in words}
        self.shown = shown

    def all_ids(self) -> list[str]:
        return list(self.examples)[: self.shown]

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        return [self.examples[i] for i in ids]

    def __len__(self) -> int:
        return self.shown


class GrowingAdapter(KeywordAdapter):
    """Shows one more validation example after its ``after``-th evaluation call."""

    def __init__(self, loader: ReleasingLoader, after: int = 3) -> None:
        super().__init__()
        self.loader, self.after = loader, after

    def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
        result = super().evaluate(batch, candidate, capture_traces)
        if self.evaluate_calls == self.after:
            self.loader.shown += 1
        return result


class SeenIdsPolicy(FullEvaluationPolicy[Any, Any]):
    """gepa's full policy that also keeps what gepa's state showed it."""

    def __init__(self) -> None:
        self.views: list[dict[Any, list[int]]] = []

    def get_eval_batch(self, loader: Any, state: Any, target_program_idx: Any = None) -> Any:
        assert isinstance(state, GEPAStateView)
        self.views.append(state.valset_evaluations)
        return super().get_eval_batch(loader, state, target_program_idx)


def run(loader: ReleasingLoader, storage: Any, budget: int = 40) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        loader,
        adapter=GrowingAdapter(loader),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget,
        display_progress_bar=False,
        storage=storage,
        val_evaluation_policy=SeenIdsPolicy(),
    )


def test_new_ids_become_validation_examples_keyed_by_the_loaders_ids() -> None:
    loader = ReleasingLoader(["alpha", "beta", "gamma", "delta"], shown=2)
    storage = MemoryStorage()
    result = run(loader, storage)
    records = [record_from_dict(data) for _, data in storage.read("default")]
    growth = [r for r in records if isinstance(r, ValsetGrowthRecord)]
    assert [r.loader_ids for r in growth] == [("v-gamma",)]
    assert sorted(result.val_subscores[0]) == [0, 1]  # the seed saw two examples
    assert any(2 in scores for scores in result.val_subscores[1:])
    view = GEPAStateView(gepetto.state.RunState(1))
    assert view.valset_evaluations == {}


def test_the_view_names_validation_examples_by_loader_id() -> None:
    loader = ReleasingLoader(["alpha", "beta", "gamma"], shown=2)
    policy = SeenIdsPolicy()
    gepetto.optimize(
        SEED,
        TRAIN,
        loader,
        adapter=GrowingAdapter(loader),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,
        display_progress_bar=False,
        val_evaluation_policy=policy,
    )
    assert policy.views and set(policy.views[0]) == {"v-alpha", "v-beta"}
    assert "v-gamma" in set().union(*policy.views[1:])


def test_a_resume_fetches_the_grown_examples_again() -> None:
    whole = run(ReleasingLoader(["alpha", "beta", "gamma"], shown=2), MemoryStorage(), 60)
    storage = MemoryStorage()
    run(ReleasingLoader(["alpha", "beta", "gamma"], shown=2), storage, budget=30)
    with pytest.warns(UserWarning, match="SeenIdsPolicy"):
        resumed = run(ReleasingLoader(["alpha", "beta", "gamma"], shown=2), storage, 60)
    assert resumed.val_subscores == whole.val_subscores
    assert resumed.candidates == whole.candidates


def test_a_resume_is_refused_when_the_loader_cannot_fetch_the_grown_ids() -> None:
    storage = MemoryStorage()
    run(ReleasingLoader(["alpha", "beta", "gamma"], shown=2), storage, budget=30)
    smaller = ReleasingLoader(["alpha", "beta"], shown=2)
    with pytest.raises(gepetto.ConfigError, match=r"cannot resume: the valset grew .*'v-gamma'"):
        run(smaller, storage, budget=60)


def test_a_resume_is_refused_when_the_grown_ids_hold_other_examples() -> None:
    storage = MemoryStorage()
    run(ReleasingLoader(["alpha", "beta", "gamma"], shown=2), storage, budget=30)
    changed = ReleasingLoader(["alpha", "beta", "gamma"], shown=2)
    changed.examples["v-gamma"] = {"needs": "other"}
    with pytest.raises(gepetto.ConfigError, match="gives other examples for the ids"):
        run(changed, storage, budget=60)


def test_a_shared_run_refuses_a_gepa_policy_over_a_loader_valset(tmp_path: Any) -> None:
    from gepetto.storage import SQLiteStorage

    loader = ReleasingLoader(["alpha", "beta"], shown=2)
    with pytest.raises(gepetto.ConfigError, match="may grow in one worker only"):
        gepetto.Optimizer(
            SEED,
            TRAIN,
            loader,
            max_metric_calls=40,
            storage=SQLiteStorage(tmp_path / "journal.sqlite"),
            worker="a",
            val_evaluation_policy=SeenIdsPolicy(),
        )


def test_a_grown_valset_resumes_from_a_run_dir(tmp_path: Any) -> None:
    def run_in_dir(budget: int) -> gepetto.Result:
        loader = ReleasingLoader(["alpha", "beta", "gamma"], shown=2)
        return gepetto.optimize(
            SEED,
            TRAIN,
            loader,
            adapter=GrowingAdapter(loader),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=budget,
            display_progress_bar=False,
            run_dir=tmp_path,
            val_evaluation_policy=FullEvaluationPolicy(),
        )

    first = run_in_dir(30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gepa's FullEvaluationPolicy is known to be stateless
        resumed = run_in_dir(60)
    assert resumed.candidates[: len(first.candidates)] == first.candidates
    assert any(2 in scores for scores in resumed.val_subscores)

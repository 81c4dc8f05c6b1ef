"""gepa 0.1.4's callback objects receive gepa's 22 methods with gepa's dicts.

The callbacks below are written as a gepa user writes them: plain classes with gepa's
method names, each receiving one dict (``gepa.core.callbacks``). They run in real runs
that accept, reject, fail, merge (accepted and rejected) and skip perfect parents.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import gepetto
from gepetto.engine.gepa_callbacks import GEPA_CALLBACK_METHODS, is_gepa_callback
from gepetto.events import Inline
from gepetto.state import RunState
from gepetto.strategies import ParetoSelector
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter
from gepetto.types import EvaluationBatch

SEED = {"system": "Be brief.", "tools": "No tools."}
A_WORDS, B_WORDS = ["a1", "a2", "a3"], ["b1", "b2", "b3"]
DATA = [{"needs": w, "component": "system"} for w in A_WORDS] + [
    {"needs": w, "component": "tools"} for w in B_WORDS
]
_FENCE = re.compile(r"```\n?(.*?)```", re.DOTALL)

# gepa 0.1.4's keys for each method (gepa/core/callbacks.py), with the type of each value.
KEYS: dict[str, dict[str, Any]] = {
    "on_optimization_start": {
        "seed_candidate": dict,
        "trainset_size": int,
        "valset_size": int,
        "config": dict,
    },
    "on_optimization_end": {
        "best_candidate_idx": int,
        "total_iterations": int,
        "total_metric_calls": int,
        "final_state": object,
    },
    "on_iteration_start": {"iteration": int, "state": object, "trainset_loader": object},
    "on_iteration_end": {"iteration": int, "state": object, "proposal_accepted": bool},
    "on_candidate_selected": {
        "iteration": int,
        "candidate_idx": int,
        "candidate": dict,
        "score": float,
    },
    "on_minibatch_sampled": {"iteration": int, "minibatch_ids": list, "trainset_size": int},
    "on_evaluation_start": {
        "iteration": int,
        "candidate_idx": (int, type(None)),
        "batch_size": int,
        "capture_traces": bool,
        "parent_ids": list,
        "inputs": list,
        "is_seed_candidate": bool,
    },
    "on_evaluation_end": {
        "iteration": int,
        "candidate_idx": (int, type(None)),
        "scores": list,
        "has_trajectories": bool,
        "parent_ids": list,
        "outputs": list,
        "trajectories": (list, type(None)),
        "objective_scores": (list, type(None)),
        "is_seed_candidate": bool,
    },
    "on_evaluation_skipped": {
        "iteration": int,
        "candidate_idx": int,
        "reason": str,
        "scores": (list, type(None)),
        "is_seed_candidate": bool,
    },
    "on_valset_evaluated": {
        "iteration": int,
        "candidate_idx": int,
        "candidate": dict,
        "scores_by_val_id": dict,
        "average_score": float,
        "num_examples_evaluated": int,
        "total_valset_size": int,
        "parent_ids": list,
        "is_best_program": bool,
        "outputs_by_val_id": (dict, type(None)),
    },
    "on_reflective_dataset_built": {
        "iteration": int,
        "candidate_idx": int,
        "components": list,
        "dataset": dict,
    },
    "on_proposal_start": {
        "iteration": int,
        "parent_candidate": dict,
        "components": list,
        "reflective_dataset": dict,
    },
    "on_proposal_end": {
        "iteration": int,
        "new_instructions": dict,
        "prompts": dict,
        "raw_lm_outputs": dict,
    },
    "on_candidate_accepted": {
        "iteration": int,
        "new_candidate_idx": int,
        "new_score": float,
        "parent_ids": list,
    },
    "on_candidate_rejected": {
        "iteration": int,
        "old_score": float,
        "new_score": float,
        "reason": str,
    },
    "on_merge_attempted": {"iteration": int, "parent_ids": list, "merged_candidate": dict},
    "on_merge_accepted": {"iteration": int, "new_candidate_idx": int, "parent_ids": list},
    "on_merge_rejected": {"iteration": int, "parent_ids": list, "reason": str},
    "on_pareto_front_updated": {
        "iteration": int,
        "new_front": list,
        "displaced_candidates": list,
    },
    "on_state_saved": {"iteration": int, "run_dir": (str, type(None))},
    "on_budget_updated": {
        "iteration": int,
        "metric_calls_used": int,
        "metric_calls_delta": int,
        "metric_calls_remaining": (int, type(None)),
    },
    "on_error": {"iteration": int, "exception": Exception, "will_continue": bool},
}

# ---- user code, written for gepa -----------------------------------------------------------


class RecordingCallback:
    """A gepa callback implementing all 22 methods; it records (method, event)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _seen(self, name: str, event: dict[str, Any]) -> None:
        self.events.append((name, event))

    def on_optimization_start(self, event: dict[str, Any]) -> None:
        self._seen("on_optimization_start", event)

    def on_optimization_end(self, event: dict[str, Any]) -> None:
        self._seen("on_optimization_end", event)

    def on_iteration_start(self, event: dict[str, Any]) -> None:
        # gepa passes its live state: read it now, as a gepa callback would.
        self._seen("on_iteration_start", {**event, "i": event["state"].i})

    def on_iteration_end(self, event: dict[str, Any]) -> None:
        self._seen("on_iteration_end", event)

    def on_candidate_selected(self, event: dict[str, Any]) -> None:
        self._seen("on_candidate_selected", event)

    def on_minibatch_sampled(self, event: dict[str, Any]) -> None:
        self._seen("on_minibatch_sampled", event)

    def on_evaluation_start(self, event: dict[str, Any]) -> None:
        self._seen("on_evaluation_start", event)

    def on_evaluation_end(self, event: dict[str, Any]) -> None:
        self._seen("on_evaluation_end", event)

    def on_evaluation_skipped(self, event: dict[str, Any]) -> None:
        self._seen("on_evaluation_skipped", event)

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        self._seen("on_valset_evaluated", event)

    def on_reflective_dataset_built(self, event: dict[str, Any]) -> None:
        self._seen("on_reflective_dataset_built", event)

    def on_proposal_start(self, event: dict[str, Any]) -> None:
        self._seen("on_proposal_start", event)

    def on_proposal_end(self, event: dict[str, Any]) -> None:
        self._seen("on_proposal_end", event)

    def on_candidate_accepted(self, event: dict[str, Any]) -> None:
        self._seen("on_candidate_accepted", event)

    def on_candidate_rejected(self, event: dict[str, Any]) -> None:
        self._seen("on_candidate_rejected", event)

    def on_merge_attempted(self, event: dict[str, Any]) -> None:
        self._seen("on_merge_attempted", event)

    def on_merge_accepted(self, event: dict[str, Any]) -> None:
        self._seen("on_merge_accepted", event)

    def on_merge_rejected(self, event: dict[str, Any]) -> None:
        self._seen("on_merge_rejected", event)

    def on_pareto_front_updated(self, event: dict[str, Any]) -> None:
        self._seen("on_pareto_front_updated", event)

    def on_state_saved(self, event: dict[str, Any]) -> None:
        self._seen("on_state_saved", event)

    def on_budget_updated(self, event: dict[str, Any]) -> None:
        self._seen("on_budget_updated", event)

    def on_error(self, event: dict[str, Any]) -> None:
        self._seen("on_error", event)


class AcceptedScores:
    """A gepa callback with one method, indexing the dict as gepa users do."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    def on_valset_evaluated(self, event: dict[str, Any]) -> None:
        self.scores.append(event["average_score"])


# ---- end of user code ----------------------------------------------------------------------


class SeedFirst:
    """Picks the seed as parent for the first ``n`` proposals, then Pareto (two branches for
    a merge)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.pareto = ParetoSelector()

    def select(self, state: RunState, rng: random.Random) -> int:
        self.calls += 1
        return 0 if self.calls <= self.n else self.pareto.select(state, rng)


class PlannedLM:
    """Follows the feedback, except on chosen calls: ``"reject"`` adds a useless word (the
    child is no better), ``"fail"`` answers without any usable text."""

    def __init__(self, plan: Mapping[int, str]) -> None:
        self.plan = plan
        self.follow = FeedbackFollowingLM(3)
        self.calls = 0

    def __call__(self, prompt: Any) -> str:
        self.calls += 1
        kind = self.plan.get(self.calls)
        if kind == "fail":
            return "I would rather not."
        if kind == "reject":
            match = _FENCE.search(str(prompt))
            current = match.group(1).strip() if match else ""
            return f"```\n{current} zzz\n```"
        return self.follow(prompt)


class BothChangedIsWorse(KeywordAdapter):
    """Scores 0 for a candidate that changed both components: every merge is rejected."""

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[Any, Any]:
        result = super().evaluate(batch, candidate, capture_traces)
        if all(candidate[name] != SEED[name] for name in SEED):
            result = EvaluationBatch(
                result.outputs, [0.0] * len(batch), result.trajectories, result.objective_scores
            )
        return result


def run(callbacks: Sequence[object], **options: Any) -> gepetto.Result:
    options.setdefault("adapter", KeywordAdapter())
    options.setdefault("reflection_lm", PlannedLM({1: "reject", 2: "fail"}))
    options.setdefault("candidate_selection_strategy", SeedFirst(4))
    return gepetto.optimize(
        SEED,
        DATA,
        DATA,
        reflection_minibatch_size=6,
        max_metric_calls=120,
        use_merge=True,
        reflection_retries=0,
        display_progress_bar=False,
        callbacks=list(callbacks),
        stop_callbacks=[gepetto.MaxCandidateProposalsStopper(9)],
        **options,
    )


@pytest.fixture(scope="module")
def recorded() -> list[tuple[str, dict[str, Any]]]:
    """Events of a run that rejects, fails, accepts, merges and skips perfect parents, then
    of one whose merge is rejected."""
    first = RecordingCallback()
    run([first])
    second = RecordingCallback()
    run([second], adapter=BothChangedIsWorse(), reflection_lm=FeedbackFollowingLM(3))
    return first.events + second.events


def test_every_gepa_method_fires_with_gepas_keys_and_types(
    recorded: list[tuple[str, dict[str, Any]]],
) -> None:
    fired = {name for name, _ in recorded}
    assert fired == set(GEPA_CALLBACK_METHODS), set(GEPA_CALLBACK_METHODS) - fired
    for name, event in recorded:
        assert type(event) is dict, name
        expected = KEYS[name]
        assert set(event) - {"i"} == set(expected), name
        for key, kind in expected.items():
            assert isinstance(event[key], kind), (name, key, event[key])


def test_values_follow_gepa(recorded: list[tuple[str, dict[str, Any]]]) -> None:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for name, event in recorded:
        by_name.setdefault(name, []).append(event)
    start = by_name["on_optimization_start"][0]
    assert start["seed_candidate"] == SEED
    assert set(start["config"]) == {"perfect_score", "seed", "track_best_outputs"}
    seed_valset = by_name["on_valset_evaluated"][0]
    assert (seed_valset["iteration"], seed_valset["candidate_idx"]) == (0, 0)
    assert seed_valset["parent_ids"] == [] and seed_valset["is_best_program"] is True
    # gepa's numbering: iteration k has state.i == k - 1 while it runs.
    for event in by_name["on_iteration_start"]:
        assert event["i"] == event["iteration"] - 1
        assert event["trainset_loader"].all_ids() == list(range(len(DATA)))
    assert by_name["on_state_saved"][0]["iteration"] == 0
    skipped = by_name["on_evaluation_skipped"][0]
    assert skipped["reason"] == "all_scores_perfect"
    assert all(score == 1.0 for score in skipped["scores"])
    rejected = by_name["on_candidate_rejected"][0]
    assert rejected["new_score"] <= rejected["old_score"]
    assert "zzz" in by_name["on_proposal_end"][0]["new_instructions"]["system"]
    error = by_name["on_error"][0]
    assert error["will_continue"] is True and str(error["exception"])
    merged = by_name["on_merge_attempted"][0]
    assert len(merged["parent_ids"]) == 2 and set(merged["merged_candidate"]) == set(SEED)
    accepted_merge = by_name["on_merge_accepted"][0]
    merge_idx = accepted_merge["new_candidate_idx"]
    assert any(e["new_candidate_idx"] == merge_idx for e in by_name["on_candidate_accepted"])
    validated = next(e for e in by_name["on_valset_evaluated"] if e["candidate_idx"] == merge_idx)
    attempt = next(
        e for e in by_name["on_merge_attempted"] if e["iteration"] == accepted_merge["iteration"]
    )
    assert attempt["merged_candidate"] == validated["candidate"]
    assert by_name["on_merge_rejected"][0]["reason"]
    parent_ends = [e for e in by_name["on_evaluation_end"] if e["candidate_idx"] is not None]
    assert parent_ends and all(
        e["has_trajectories"] and len(e["outputs"]) == len(e["trajectories"]) == len(e["scores"])
        for e in parent_ends
    )
    budget = by_name["on_budget_updated"]
    assert all(e["metric_calls_remaining"] == 120 - e["metric_calls_used"] for e in budget)
    end = by_name["on_optimization_end"][0]
    assert end["total_iterations"] == end["final_state"].i == 8  # gepa's: iterations - 1
    assert end["final_state"].total_num_evals == end["total_metric_calls"]


def test_reflection_events_carry_the_dataset_prompts_and_replies(
    recorded: list[tuple[str, dict[str, Any]]],
) -> None:
    """gepa passes the reflective dataset it built, and per proposed component the prompt
    sent to the reflection model and its raw reply."""
    built = [e for name, e in recorded if name == "on_reflective_dataset_built"]
    assert built and all(e["dataset"] for e in built)
    for event in built:
        assert set(event["dataset"]) <= set(event["components"])
        for records in event["dataset"].values():
            assert records and all(isinstance(r, dict) for r in records)
    starts = [e for name, e in recorded if name == "on_proposal_start"]
    assert [e["reflective_dataset"] for e in starts] == [e["dataset"] for e in built]
    ends = [e for name, e in recorded if name == "on_proposal_end"]
    assert ends
    for event in ends:
        proposed = set(event["new_instructions"])
        assert set(event["prompts"]) == set(event["raw_lm_outputs"]) == proposed
        for component, text in event["new_instructions"].items():
            assert isinstance(event["prompts"][component], str)
            assert text in event["raw_lm_outputs"][component]  # the reply the text came from


def test_one_accepted_iteration_follows_gepas_order() -> None:
    callback = RecordingCallback()
    run([callback], reflection_lm=FeedbackFollowingLM(3))
    names = [name for name, _ in callback.events]
    assert names[:4] == [
        "on_optimization_start",
        "on_valset_evaluated",
        "on_state_saved",
        "on_iteration_start",
    ]
    first_end = names.index("on_iteration_end")
    # gepa 0.1.4's observed order for one accepted reflective iteration (the reference).
    assert names[2 : first_end + 1] == [
        "on_state_saved",
        "on_iteration_start",
        "on_candidate_selected",
        "on_minibatch_sampled",
        "on_evaluation_start",
        "on_evaluation_end",
        "on_budget_updated",
        "on_reflective_dataset_built",
        "on_proposal_start",
        "on_proposal_end",
        "on_evaluation_start",
        "on_evaluation_end",
        "on_budget_updated",
        "on_budget_updated",
        "on_pareto_front_updated",
        "on_valset_evaluated",
        "on_candidate_accepted",
        "on_iteration_end",
    ]
    assert names[-1] == "on_optimization_end"


def test_a_one_method_gepa_callback_indexes_its_dict() -> None:
    callback = AcceptedScores()
    result = run([callback], reflection_lm=FeedbackFollowingLM(3))
    assert callback.scores == result.val_aggregate_scores


def test_a_failing_gepa_callback_is_logged_and_the_run_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def on_iteration_start(self, event: dict[str, Any]) -> None:
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="gepetto.gepa_callbacks"):
        broken = run([Broken()], reflection_lm=FeedbackFollowingLM(3))
    plain = run([], reflection_lm=FeedbackFollowingLM(3))
    assert broken.candidates == plain.candidates
    assert any("failed on on_iteration_start: boom" in r.getMessage() for r in caplog.records)


def test_gepetto_observers_are_told_apart_and_keep_their_events() -> None:
    class GepettoObserver:
        def __init__(self) -> None:
            self.accepted: list[gepetto.events.CandidateAccepted] = []

        def on_candidate_accepted(self, event: gepetto.events.CandidateAccepted) -> None:
            self.accepted.append(event)

    observer, gepa_style = GepettoObserver(), RecordingCallback()
    assert not is_gepa_callback(observer)
    assert is_gepa_callback(gepa_style) and is_gepa_callback(Inline(gepa_style))
    run([observer, gepa_style], reflection_lm=FeedbackFollowingLM(3))
    assert observer.accepted and all(
        isinstance(e, gepetto.events.CandidateAccepted) for e in observer.accepted
    )
    gepa_accepted = [e for name, e in gepa_style.events if name == "on_candidate_accepted"]
    assert gepa_accepted and all(not math.isnan(e["new_score"]) for e in gepa_accepted)


def test_a_catch_all_observer_stays_a_gepetto_observer() -> None:
    class CatchAll:
        def __getattr__(self, name: str) -> Any:
            if name.startswith("on_"):
                return lambda event: None
            raise AttributeError(name)

    assert not is_gepa_callback(CatchAll())


def test_parallel_proposals_pair_every_iteration_start_with_its_end() -> None:
    callback = RecordingCallback()
    run([callback], reflection_lm=FeedbackFollowingLM(1), parallel_proposals=2)
    starts = [e["iteration"] for name, e in callback.events if name == "on_iteration_start"]
    ends = [e["iteration"] for name, e in callback.events if name == "on_iteration_end"]
    assert starts and sorted(starts) == sorted(ends) == sorted(set(starts))
    for name, event in callback.events:
        if "iteration" in event and name != "on_state_saved":
            assert event["iteration"] in starts or event["iteration"] == 0, (name, event)

"""gepa's GEPAState names, read from a real run's state: values as gepa computes them."""

from __future__ import annotations

import pytest

import gepetto
from gepetto.gepa_state import GEPA_STATE_ATTRIBUTES, GEPAStateView, GEPAStatus
from gepetto.state import RunState
from gepetto.testing import KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]


def test_a_finished_run_reads_as_gepas_state() -> None:
    optimizer = gepetto.Optimizer(
        {"instructions": "Answer."}, keyword_dataset(WORDS), max_metric_calls=40
    )
    adapter = KeywordAdapter()
    while not optimizer.is_finished:
        task = optimizer.ask()
        if task is None:
            continue
        if isinstance(task, gepetto.EvaluateTask):
            reply: object = adapter.evaluate(task.examples, task.candidate, task.capture_traces)
        else:  # a reflection that adds the next missing word
            text = task.candidate["instructions"]
            missing = [word for word in WORDS if word not in text.split()]
            reply = {"instructions": f"{text} {missing[0]}"}
        optimizer.tell(task.id, reply)
    result = optimizer.result()
    view = optimizer.gepa_state
    assert view.i == result.num_iterations - 1
    assert view.total_num_evals == result.total_metric_calls
    assert view.program_candidates == result.candidates
    assert view.program_full_scores_val_set == result.val_aggregate_scores
    assert view.per_program_tracked_scores == result.val_aggregate_scores
    assert view.prog_candidate_val_subscores == result.val_subscores
    assert view.program_at_pareto_front_valset == result.per_val_instance_best_candidates
    assert view.num_metric_calls_by_discovery == result.discovery_eval_counts
    assert view.parent_program_for_candidate[0] == [None]
    assert view.parent_program_for_candidate[1:] == result.parents[1:]
    assert view.num_full_ds_evals == result.num_candidates  # full_eval policy
    assert view.pareto_front_valset == {
        val_id: max(scores[val_id] for scores in result.val_subscores)
        for val_id in range(len(WORDS))
    }
    assert view.list_of_named_predictors == ["instructions"]
    assert view.get_program_average_val_subset(0) == (result.val_aggregate_scores[0], 4)
    assert view.valset_evaluations[0] == list(range(result.num_candidates))
    assert view.is_consistent()
    # The status of stop conditions answers both gepetto's and gepa's names.
    status = optimizer.status()
    assert isinstance(status, GEPAStatus)
    assert (status.metric_calls_used, status.total_num_evals) == (view.total_num_evals,) * 2


def test_the_view_is_read_only_and_names_are_checked() -> None:
    view = GEPAStateView(RunState(valset_size=2))
    assert view.i == -1 and view.program_candidates == [] and view.objective_pareto_front == {}
    view.program_candidates.append({"x": "y"})
    assert view.program_candidates == []
    with pytest.raises(AttributeError):
        view.i = 3  # type: ignore[misc]
    status = GEPAStatus(gepa_state=view)
    assert {"i", "total_num_evals", "program_candidates"} <= GEPA_STATE_ATTRIBUTES
    with pytest.raises(AttributeError, match="no_such_name"):
        status.no_such_name  # noqa: B018
    with pytest.raises(AttributeError):
        GEPAStatus().i  # noqa: B018  # no run behind it


def test_a_loader_valset_is_named_by_its_ids_and_i_can_be_fixed() -> None:
    from gepetto.records import CandidateRecord, EvaluationRecord
    from gepetto.types import LoadedExamples

    state = RunState(valset_size=2)
    state.append(EvaluationRecord("h0", "val", "seed_validation", -1, (0, 1), (1.0, 0.0), None, 2))
    state.append(CandidateRecord(0, {"a": "x", "b": "y"}, (), "seed", -1, 2, "h0"))
    view = GEPAStateView(state, LoadedExamples([{}, {}], ["q1", "q2"]))
    assert view.prog_candidate_val_subscores == [{"q1": 1.0, "q2": 0.0}]
    assert view.valset_evaluations == {"q1": [0], "q2": [0]}
    assert view.program_at_pareto_front_valset == {"q1": {0}, "q2": {0}}
    assert view.pareto_front_valset == {"q1": 1.0, "q2": 0.0}
    assert view.named_predictor_id_to_update_next_for_program_candidate == [0]
    assert view.i == -1 and view.at_iteration(4).i == 4

"""Tests of RunState: the views derived from the append-only records."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gepetto.frontier import BestTable
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationRecord,
    Record,
    ReflectionRecord,
)
from gepetto.state import CandidateView, RunState

# ----- record builders -----------------------------------------------------------------------

PURPOSES = {"val": "validation", "train": "child_minibatch", "test": "test"}


def candidate(candidate_id: int, content_hash: str | None = None, cursor: int = 0):
    content_hash = content_hash or f"h{candidate_id}"
    return CandidateRecord(
        id=candidate_id,
        texts={"prompt": content_hash},
        parents=() if candidate_id == 0 else (0,),
        origin="seed" if candidate_id == 0 else "reflection",
        iteration=candidate_id - 1,
        metric_calls_at_discovery=0,
        content_hash=content_hash,
        component_cursor=cursor,
    )


def evaluation(
    content_hash: str,
    scores: Sequence[float],
    example_ids: Sequence[int] | None = None,
    *,
    split: str = "val",
    objectives: Sequence[Mapping[str, float]] | None = None,
    metric_calls: int | None = None,
) -> EvaluationRecord:
    ids = tuple(range(len(scores))) if example_ids is None else tuple(example_ids)
    return EvaluationRecord(
        candidate_hash=content_hash,
        split=split,  # type: ignore[arg-type]
        purpose=PURPOSES[split],  # type: ignore[arg-type]
        iteration=0,
        example_ids=ids,
        scores=tuple(scores),
        objective_scores=None if objectives is None else tuple(objectives),
        metric_calls=len(ids) if metric_calls is None else metric_calls,
    )


def reflection(parent_id: int, iteration: int = 0, lm_calls: int = 1) -> ReflectionRecord:
    return ReflectionRecord(iteration, parent_id, ("prompt",), {"prompt": "x"}, {}, lm_calls)


def decision(iteration: int = 0) -> DecisionRecord:
    return DecisionRecord(iteration, 0, None, "rejected", "test")


def state_of(*records: Record, valset_size: int = 3, frontier_type="instance") -> RunState:
    state = RunState(valset_size, frontier_type)
    for record in records:
        state.append(record)
    return state


# ----- scores, means, counters ---------------------------------------------------------------


def test_val_scores_and_means():
    state = state_of(
        evaluation("h0", [1.0, 0.0, 0.5]), candidate(0), evaluation("h1", [1.0, 1.0]), candidate(1)
    )
    assert state.val_scores(0) == {0: 1.0, 1: 0.0, 2: 0.5}
    assert state.val_score(0) == pytest.approx(0.5)
    assert state.val_coverage(0) == 3
    assert state.val_scores(1) == {0: 1.0, 1: 1.0}
    assert state.val_coverage(1) == 2
    assert state.val_scores_all() == {0: pytest.approx(0.5), 1: 1.0}
    assert state.id_of("h1") == 1
    assert state.id_of("nope") is None
    views = list(state.views())
    assert [v.record.id for v in views] == [0, 1]
    assert views[1] == CandidateView(state.candidates[1], {0: 1.0, 1: 1.0}, 1.0)
    state.val_scores(1)[5] = 9.0  # a copy
    assert state.val_scores(1) == {0: 1.0, 1: 1.0}


def test_known_val_scores_for_texts_outside_the_pool():
    state = state_of(evaluation("outsider", [0.5], [2]))
    assert state.known_val_scores("outsider") == {2: 0.5}
    assert state.known_val_scores("unknown") == {}
    assert state.instance_fronts() == {}


def test_a_known_score_never_changes():
    state = state_of(evaluation("h0", [0.5, 0.5]), candidate(0), evaluation("h0", [1.0], [0]))
    assert state.val_scores(0) == {0: 0.5, 1: 0.5}
    assert state.val_coverage(0) == 2
    assert state.metric_calls["val"] == 3  # the calls were still paid for


def test_metric_calls_by_split():
    state = state_of(
        evaluation("h0", [1.0, 1.0], split="val"),
        candidate(0),
        evaluation("h0", [0.0, 0.0, 0.0], split="train"),
        evaluation("h0", [0.0] * 4, split="test"),
        evaluation("h0", [0.0], [2], split="train", metric_calls=0),  # cache hit: free
    )
    assert state.metric_calls == {"train": 3, "val": 2, "test": 4}
    assert state.total_metric_calls == 5  # test calls are reported apart
    # train and test scores never reach validation views
    assert state.val_scores(0) == {0: 1.0, 1: 1.0}
    assert state.instance_fronts() == {0: {0}, 1: {0}}


def test_reflection_and_decision_counters():
    state = state_of(
        evaluation("h0", [0.0]),
        candidate(0),
        reflection(0, lm_calls=2),
        reflection(0, lm_calls=3),
        decision(0),
    )
    assert state.reflections_on(0) == 2
    assert state.reflections_on(1) == 0
    assert state.reflection_lm_calls == 5
    assert state.iterations_finished == 1
    assert len(state.decisions) == 1
    assert len(state.reflections) == 2
    assert len(state.records) == 5


def test_candidate_ids_must_be_in_order():
    state = state_of(candidate(0))
    with pytest.raises(ValueError, match="out of order"):
        state.append(candidate(2))


# ----- instance fronts -----------------------------------------------------------------------


def test_instance_fronts_update_incrementally():
    state = state_of(evaluation("h0", [1.0, 0.0, 0.5]), candidate(0))
    assert state.instance_fronts() == {0: {0}, 1: {0}, 2: {0}}
    state.append(evaluation("h1", [1.0, 0.5, 0.0]))
    assert state.instance_fronts() == {0: {0}, 1: {0}, 2: {0}}  # not admitted yet
    state.append(candidate(1))
    assert state.instance_fronts() == {0: {0, 1}, 1: {1}, 2: {0}}
    state.append(evaluation("h2", [1.0, 1.0, 1.0]))
    state.append(candidate(2))
    assert state.instance_fronts() == {0: {0, 1, 2}, 1: {2}, 2: {2}}


def test_candidate_admitted_after_its_validation_record():
    state = state_of(evaluation("h0", [0.5, 0.5]), candidate(0), evaluation("h1", [1.0, 0.0]))
    assert state.known_val_scores("h1") == {0: 1.0, 1: 0.0}
    assert len(state.candidates) == 1
    state.append(candidate(1))
    assert state.val_scores(1) == {0: 1.0, 1: 0.0}
    assert state.val_coverage(1) == 2
    assert state.instance_fronts() == {0: {1}, 1: {0}}


def test_validation_arriving_after_admission_in_pieces():
    state = state_of(evaluation("h0", [0.5, 0.5, 0.5]), candidate(0), candidate(1))
    assert state.val_coverage(1) == 0
    assert state.val_score(1) == 0.0
    state.append(evaluation("h1", [0.5], [2]))
    assert state.instance_fronts() == {0: {0}, 1: {0}, 2: {0, 1}}
    state.append(evaluation("h1", [1.0, 0.0], [0, 1]))
    assert state.instance_fronts() == {0: {1}, 1: {0}, 2: {0, 1}}
    assert state.val_coverage(1) == 3


# ----- objectives ----------------------------------------------------------------------------


def objective_state(frontier_type="instance") -> RunState:
    return state_of(
        evaluation("h0", [1.0, 0.0], objectives=[{"acc": 1.0, "len": 0.0}, {"acc": 0.0}]),
        candidate(0),
        evaluation("h1", [0.5, 0.5], objectives=[{"acc": 0.5, "len": 1.0}, {"acc": 0.5}]),
        candidate(1),
        valset_size=2,
        frontier_type=frontier_type,
    )


def test_objective_scores_are_means_per_objective():
    state = objective_state()
    assert state.objective_scores(0) == {"acc": 0.5, "len": 0.0}
    assert state.objective_scores(1) == {"acc": 0.5, "len": 1.0}
    assert list(state.objective_scores(0)) == ["acc", "len"]  # sorted names


def test_objective_scores_without_objectives():
    state = state_of(evaluation("h0", [1.0]), candidate(0))
    assert state.objective_scores(0) == {}
    assert state.objective_fronts() == {}
    assert state.fronts("cartesian") == {}


def test_objective_cartesian_and_hybrid_fronts():
    state = objective_state()
    assert state.objective_fronts() == {"acc": {0, 1}, "len": {1}}
    assert state.fronts("objective") == state.objective_fronts()
    assert state.fronts("cartesian") == {(0, "acc"): {0}, (0, "len"): {1}, (1, "acc"): {1}}
    assert state.fronts("hybrid") == {
        ("example", 0): {0},
        ("example", 1): {1},
        ("objective", "acc"): {0, 1},
        ("objective", "len"): {1},
    }


def test_front_members_are_the_candidates_best_somewhere():
    state = state_of(evaluation("h0", [1.0, 0.0, 0.5]), candidate(0))
    state.append(evaluation("h1", [1.0, 0.5, 0.0]))
    state.append(candidate(1))
    assert state.front_members() == [0, 1]
    state.append(evaluation("h2", [1.0, 1.0, 1.0]))
    state.append(candidate(2))
    assert state.front_members() == [0, 1, 2]  # 0 and 1 tie on example 0
    state.append(evaluation("h3", [2.0, 1.0, 1.0]))
    state.append(candidate(3))
    assert state.front_members() == [2, 3]  # 0 and 1 left every front


@pytest.mark.parametrize("frontier_type", ["instance", "objective", "hybrid", "cartesian"])
def test_front_members_match_the_fronts(frontier_type):
    state = objective_state(frontier_type)
    assert state.front_members() == sorted({c for ids in state.fronts().values() for c in ids})


@pytest.mark.parametrize("frontier_type", ["instance", "objective", "hybrid", "cartesian"])
def test_fronts_default_to_the_run_frontier_type(frontier_type):
    state = objective_state(frontier_type)
    assert state.fronts() == state.fronts(frontier_type)
    assert state.fronts("instance") == state.instance_fronts()


# ----- best candidate ------------------------------------------------------------------------


def test_best_id_follows_the_higher_mean():
    state = state_of(evaluation("h0", [0.5, 0.5]), candidate(0), decision(0), decision(1))
    assert state.best_id == 0
    state.append(evaluation("h1", [1.0, 0.5]))
    state.append(candidate(1))
    assert state.best_id == 1
    assert state.best_changed_at_iteration == 2
    state.append(decision(2))
    assert state.iterations_since_best_changed() == 1
    state.append(evaluation("h2", [0.5, 0.0]))
    state.append(candidate(2))
    assert state.best_id == 1


def test_best_id_tie_with_identical_scores_keeps_the_earlier_candidate():
    state = state_of(
        evaluation("h0", [0.5, 1.0]), candidate(0), evaluation("h1", [0.5, 1.0]), candidate(1)
    )
    assert state.val_score(0) == state.val_score(1)
    assert state.best_id == 0


@pytest.mark.parametrize(
    "challenger",
    [
        pytest.param([1.0, 0.0, 0.5], id="equal-mean"),
        pytest.param([1.0, 0.0, 0.0], id="lower-mean"),
    ],
)
def test_best_id_uses_the_final_mean(challenger):
    state = state_of(
        evaluation("h0", [0.5, 0.5, 0.5]), candidate(0), evaluation("h1", challenger), candidate(1)
    )
    assert state.val_score(1) <= state.val_score(0)
    assert state.best_id == 0


# ----- replay and reference (property) -------------------------------------------------------

VALUES = [0.0, 0.5, 1.0]
OBJECTIVE_SETS = [("acc",), ("acc", "len")]


@st.composite
def record_sequences(draw: st.DrawFn) -> tuple[int, list[Record]]:
    valset_size = draw(st.integers(1, 4))
    n_hashes = draw(st.integers(1, 4))
    records: list[Record] = []
    admitted = 0
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["eval", "eval", "eval", "admit", "reflect", "decide"]))
        if kind == "admit" and admitted < n_hashes:
            records.append(candidate(admitted))
            admitted += 1
        elif kind == "eval":
            content_hash = f"h{draw(st.integers(0, n_hashes))}"  # h{n_hashes} is never admitted
            ids = draw(st.lists(st.integers(0, valset_size - 1), max_size=valset_size + 1))
            scores = draw(st.lists(st.sampled_from(VALUES), min_size=len(ids), max_size=len(ids)))
            objectives = None
            if draw(st.booleans()):
                names = draw(st.sampled_from(OBJECTIVE_SETS))
                objectives = [{n: draw(st.sampled_from(VALUES)) for n in names} for _ in ids]
            split = draw(st.sampled_from(["val", "val", "train", "test"]))
            records.append(
                evaluation(content_hash, scores, ids, split=split, objectives=objectives)
            )
        elif kind == "reflect" and admitted:
            records.append(reflection(draw(st.integers(0, admitted - 1))))
        elif kind == "decide":
            records.append(decision())
    return valset_size, records


def reference_views(records: Sequence[Record]) -> dict[str, object]:
    """Every view recomputed from scratch, straight from the definitions."""
    val: dict[str, dict[int, float]] = {}
    objectives: dict[str, dict[int, Mapping[str, float]]] = {}
    calls = {"train": 0, "val": 0, "test": 0}
    pool = [r for r in records if isinstance(r, CandidateRecord)]
    for r in records:
        if isinstance(r, EvaluationRecord):
            calls[r.split] += r.metric_calls
            if r.split != "val":
                continue
            for pos, (example_id, score) in enumerate(zip(r.example_ids, r.scores, strict=True)):
                if example_id not in val.setdefault(r.candidate_hash, {}):
                    val[r.candidate_hash][example_id] = score
                    if r.objective_scores is not None:
                        objectives.setdefault(r.candidate_hash, {})[example_id] = (
                            r.objective_scores[pos]
                        )
    instance, cartesian, by_objective = BestTable(), BestTable(), BestTable()
    means, objective_means = {}, {}
    for c in pool:
        scores = val.get(c.content_hash, {})
        means[c.id] = sum(scores.values()) / len(scores) if scores else 0.0
        for example_id, score in scores.items():
            instance.offer(example_id, c.id, score)
        per_name: dict[str, list[float]] = {}
        for example_id, values in objectives.get(c.content_hash, {}).items():
            for name, value in values.items():
                cartesian.offer((example_id, name), c.id, value)
                per_name.setdefault(name, []).append(value)
        objective_means[c.id] = {n: sum(v) / len(v) for n, v in sorted(per_name.items())}
        for name, mean in objective_means[c.id].items():
            by_objective.offer(name, c.id, mean)
    hybrid: dict[Hashable, set[int]] = {("example", k): v for k, v in instance.fronts().items()}
    hybrid.update({("objective", k): v for k, v in by_objective.fronts().items()})
    return {
        "val_scores": {c.id: val.get(c.content_hash, {}) for c in pool},
        "means": means,
        "coverage": {c.id: len(val.get(c.content_hash, {})) for c in pool},
        "objective_scores": objective_means,
        "instance": instance.fronts(),
        "objective": by_objective.fronts(),
        "cartesian": cartesian.fronts(),
        "hybrid": hybrid,
        "metric_calls": calls,
    }


def views_of(state: RunState) -> dict[str, object]:
    ids = [c.id for c in state.candidates]
    return {
        "val_scores": {i: state.val_scores(i) for i in ids},
        "means": state.val_scores_all(),
        "coverage": {i: state.val_coverage(i) for i in ids},
        "objective_scores": {i: state.objective_scores(i) for i in ids},
        "instance": state.instance_fronts(),
        "objective": state.fronts("objective"),
        "cartesian": state.fronts("cartesian"),
        "hybrid": state.fronts("hybrid"),
        "metric_calls": dict(state.metric_calls),
    }


def all_views_of(state: RunState) -> dict[str, object]:
    views = views_of(state)
    views.update(
        best_id=state.best_id,
        best_changed_at_iteration=state.best_changed_at_iteration,
        iterations_finished=state.iterations_finished,
        reflection_lm_calls=state.reflection_lm_calls,
        reflections_on={c.id: state.reflections_on(c.id) for c in state.candidates},
        known={f"h{i}": dict(state.known_val_scores(f"h{i}")) for i in range(5)},
        candidates=list(state.candidates),
    )
    return views


@settings(max_examples=200, deadline=None)
@given(record_sequences())
def test_incremental_views_match_a_recomputation(case):
    valset_size, records = case
    state = RunState(valset_size)
    for n, record in enumerate(records, start=1):
        state.append(record)
        assert views_of(state) == reference_views(records[:n])
        if state.candidates:
            assert 0 <= state.best_id < len(state.candidates)


@settings(max_examples=200, deadline=None)
@given(record_sequences(), st.sampled_from(["instance", "objective", "hybrid", "cartesian"]))
def test_replaying_records_gives_identical_views(case, frontier_type):
    valset_size, records = case
    original = RunState(valset_size, frontier_type)
    for record in records:
        original.append(record)
    replayed = RunState(valset_size, frontier_type)
    for record in original.records:
        replayed.append(record)
    assert replayed.records == original.records
    assert all_views_of(replayed) == all_views_of(original)
    assert replayed.fronts() == original.fronts()

"""The data of each view of a run, computed from a :class:`~gepetto.runview.RunView`.

Every function here is pure over the view (it reads, never refreshes or writes) and returns
a frozen dataclass whose ``to_json()`` gives plain JSON data: dicts, lists, strings, ints,
floats and ``None`` (a non-finite float, such as the score of a candidate with no score
yet, becomes ``None``, which browsers' ``JSON.parse`` accepts). Renderers (the report, the
dashboard, the ``gepetto`` command) draw these and compute nothing of their own.

The ``after=`` argument of :func:`progress` and :func:`lineage` keeps only the points,
candidates and decisions whose record has a store sequence number greater than ``after``:
a live viewer passes the ``last_seq`` of its previous answer and receives only what is new.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from gepetto.records import DecisionRecord, ReflectionRecord
from gepetto.runview._store import RunStore
from gepetto.runview._view import RunView
from gepetto.visualization import lineage_info

__all__ = [
    "CandidateDetail",
    "Lineage",
    "ProgressSeries",
    "RunListing",
    "RunStatus",
    "RunSummary",
    "ScoreMatrix",
    "candidate_detail",
    "component_diff",
    "lineage",
    "list_runs",
    "progress",
    "run_status",
    "score_matrix",
    "summary",
]

RunStatus: TypeAlias = Literal["live", "finished", "interrupted", "stopped", "unknown"]
"""``live``: a process runs it now; ``finished``: its last session ended by a stop condition
(budget, stalled, perfect score, ...); ``interrupted``: its last session was stopped by a
signal or died without finishing (resume it); ``stopped``: no process runs it and there is no
event log to say how it ended; ``unknown``: the store cannot tell whether it runs
(PostgreSQL without an event log)."""


def _num(value: float | None) -> float | None:
    """A JSON-safe float: ``None`` for ``None``, NaN and infinities."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class RunListing:
    """One run of a store, as :func:`list_runs` names it."""

    run_id: str
    created_at: float
    live: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "created_at": self.created_at, "live": self.live}


def list_runs(store: RunStore) -> list[RunListing]:
    """Every run in the store, in the store's order (no record is read)."""
    listings = []
    for run_id in store.run_ids():
        header = store.storage.header(run_id)
        if header is not None:
            listings.append(RunListing(run_id, header.created_at, store.is_live(run_id)))
    return listings


def run_status(view: RunView) -> tuple[RunStatus, str | None]:
    """The run's status and the stop reason of its last session (``None`` if unknown)."""
    live = view.store.is_live(view.run_id)
    sessions = view.events.sessions if view.events is not None else []
    last = sessions[-1] if sessions else None
    reason = last.stop_reason if last is not None else None
    if live:
        return "live", None
    if reason is not None:
        return ("interrupted" if reason.startswith("interrupted") else "finished"), reason
    if last is not None and live is False:
        return "interrupted", "the process ended without finishing (killed or crashed)"
    return ("stopped" if live is False else "unknown"), None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run is at: status, budget, cost, best candidate and front."""

    run_id: str
    source: str
    status: RunStatus
    stop_reason: str | None
    created_at: float
    updated_at: float | None
    """The last event's time (``None`` without an event log)."""
    components: tuple[str, ...]
    budget_used: int
    budget_total: int | None
    iterations: int
    pool_size: int
    valset_size: int
    """Validation examples scored so far (by any candidate)."""
    best_id: int | None
    best_score: float | None
    best_texts: Mapping[str, str]
    front: tuple[int, ...]
    """The non-dominated candidates (the ones parent selection samples from)."""
    front_mean: float | None
    """The front's aggregate score: the mean over validation examples of the best score any
    candidate has on it (gepa's "valset Pareto front aggregate score")."""
    cost_usd: float
    unpriced_lm_calls: int
    lm_calls: Mapping[str, int]
    outcomes: Mapping[str, int]
    """Iterations by how they ended: accepted, rejected, skipped, failed."""
    last_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "source": self.source,
            "status": self.status,
            "stop_reason": self.stop_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "components": list(self.components),
            "budget_used": self.budget_used,
            "budget_total": self.budget_total,
            "iterations": self.iterations,
            "pool_size": self.pool_size,
            "valset_size": self.valset_size,
            "best_id": self.best_id,
            "best_score": _num(self.best_score),
            "best_texts": dict(self.best_texts),
            "front": list(self.front),
            "front_mean": _num(self.front_mean),
            "cost_usd": self.cost_usd,
            "unpriced_lm_calls": self.unpriced_lm_calls,
            "lm_calls": dict(self.lm_calls),
            "outcomes": dict(self.outcomes),
            "last_seq": self.last_seq,
        }


def summary(view: RunView) -> RunSummary:
    """The run's summary (see :class:`RunSummary`)."""
    state = view.state
    status, reason = run_status(view)
    sessions = view.events.sessions if view.events is not None else []
    budget = sessions[-1].max_metric_calls if sessions else None
    if budget is None:
        configured = view.header.config.get("max_metric_calls")
        budget = configured if isinstance(configured, int) else None
    front = view.front_ids()
    has_best = bool(state.candidates)
    outcomes: dict[str, int] = {}
    for entry in view.decisions:
        if entry.record.task is None:
            outcomes[entry.record.outcome] = outcomes.get(entry.record.outcome, 0) + 1
    examples: set[Any] = set()
    for candidate in state.candidates:
        examples.update(state.known_val_scores(candidate.content_hash))
    return RunSummary(
        run_id=view.run_id,
        source=view.store.source,
        status=status,
        stop_reason=reason,
        created_at=view.header.created_at,
        updated_at=view.events.last_event_at if view.events is not None else None,
        components=tuple(state.candidates[0].texts) if has_best else (),
        budget_used=state.total_metric_calls,
        budget_total=budget,
        iterations=state.iterations_finished,
        pool_size=len(state.candidates),
        valset_size=len(examples),
        best_id=state.best_id if has_best else None,
        best_score=state.val_score(state.best_id) if has_best else None,
        best_texts=dict(state.candidates[state.best_id].texts) if has_best else {},
        front=tuple(front),
        front_mean=state.front_aggregate_score() if has_best else None,
        cost_usd=state.cost_usd,
        unpriced_lm_calls=sum(t.unpriced_calls for t in state.lm_usage.values()),
        lm_calls={role: totals.calls for role, totals in sorted(state.lm_usage.items())},
        outcomes=outcomes,
        last_seq=view.last_seq,
    )


@dataclass(frozen=True, slots=True)
class ProgressSeries:
    """Best and front-mean validation score after the seed and each finished iteration,
    against metric calls, wall time and cost.

    Each point (a dict in ``to_json``): ``seq``, ``iteration`` (-1 for the seed),
    ``metric_calls``, ``at`` (epoch seconds, ``None`` without an event log), ``elapsed_s``
    (since the run was created), ``cost_usd``, ``best_id``, ``best_score``, ``front_mean``
    (the front's aggregate score: the mean over validation examples of the best score any
    candidate has on it), ``front_size`` (candidates best or tied best on at least one
    example), ``pool_size``, ``candidate_id`` (the candidate the step added, or ``None``).
    """

    run_id: str
    created_at: float
    points: tuple[Mapping[str, Any], ...]
    last_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "created_at": self.created_at,
            "points": [dict(point) for point in self.points],
            "last_seq": self.last_seq,
        }


def progress(view: RunView, *, after: int = 0) -> ProgressSeries:
    """The progress points with ``seq > after`` (see :class:`ProgressSeries`)."""
    created = view.header.created_at
    points = []
    for point in _points_after(view, after):
        at = view.point_time(point)
        points.append(
            {
                "seq": point.seq,
                "iteration": point.iteration,
                "metric_calls": point.metric_calls,
                "at": at,
                "elapsed_s": None if at is None else max(0.0, at - created),
                "cost_usd": point.cost_usd,
                "best_id": point.best_id,
                "best_score": _num(point.best_score),
                "front_mean": _num(point.front_mean),
                "front_size": point.front_size,
                "pool_size": point.pool_size,
                "candidate_id": point.candidate_id,
            }
        )
    return ProgressSeries(view.run_id, created, tuple(points), view.last_seq)


def _points_after(view: RunView, after: int) -> Sequence[Any]:
    points = view.points
    if after <= 0:
        return points
    low, high = 0, len(points)  # points are in seq order: bisect
    while low < high:
        middle = (low + high) // 2
        if points[middle].seq <= after:
            low = middle + 1
        else:
            high = middle
    return points[low:]


@dataclass(frozen=True, slots=True)
class ScoreMatrix:
    """Validation scores, candidates × examples.

    ``scores[i][j]`` is candidate ``candidate_ids[i]``'s score on example ``example_ids[j]``
    (``None`` where it was not evaluated); ``means[i]`` its mean over the examples it has;
    ``example_best[j]`` the best score any candidate has on example ``j``.
    """

    run_id: str
    example_ids: tuple[Any, ...]
    candidate_ids: tuple[int, ...]
    scores: tuple[tuple[float | None, ...], ...]
    means: tuple[float | None, ...]
    example_best: tuple[float | None, ...]
    best_id: int | None
    front: tuple[int, ...]
    last_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "example_ids": list(self.example_ids),
            "candidate_ids": list(self.candidate_ids),
            "scores": [list(row) for row in self.scores],
            "means": list(self.means),
            "example_best": list(self.example_best),
            "best_id": self.best_id,
            "front": list(self.front),
            "last_seq": self.last_seq,
        }


def _sorted_ids(ids: set[Any]) -> list[Any]:
    try:
        return sorted(ids)
    except TypeError:  # mixed id types
        return sorted(ids, key=repr)


def score_matrix(view: RunView) -> ScoreMatrix:
    """Every candidate's validation score on every example (see :class:`ScoreMatrix`)."""
    state = view.state
    per_candidate = [state.known_val_scores(c.content_hash) for c in state.candidates]
    example_ids = _sorted_ids({e for scores in per_candidate for e in scores})
    rows = tuple(tuple(_num(scores.get(e)) for e in example_ids) for scores in per_candidate)
    best = []
    for column in range(len(example_ids)):
        values = [row[column] for row in rows if row[column] is not None]
        best.append(max(v for v in values if v is not None) if values else None)
    return ScoreMatrix(
        run_id=view.run_id,
        example_ids=tuple(example_ids),
        candidate_ids=tuple(c.id for c in state.candidates),
        scores=rows,
        means=tuple(
            _num(state.val_score(c.id)) if state.val_coverage(c.id) else None
            for c in state.candidates
        ),
        example_best=tuple(best),
        best_id=state.best_id if state.candidates else None,
        front=tuple(view.front_ids()),
        last_seq=view.last_seq,
    )


def decision_json(seq: int, record: DecisionRecord) -> dict[str, Any]:
    """One accept/reject decision as plain JSON data (non-finite scores become ``None``)."""
    return {
        "seq": seq,
        "iteration": record.iteration,
        "parent_id": record.parent_id,
        "child_id": record.child_id,
        "outcome": record.outcome,
        "reason": record.reason,
        "parent_score": _num(record.parent_score),
        "child_score": _num(record.child_score),
        "task": record.task,
    }


@dataclass(frozen=True, slots=True)
class Lineage:
    """The candidate tree and every accept/reject decision with its reason.

    Nodes (dicts): ``id``, ``parents``, ``score``, ``role`` (``"best"``, ``"front"`` or
    ``""``), ``generation``, ``origin``, ``iteration``, ``metric_calls`` (spent when it was
    admitted), ``seq``. Decisions (dicts): ``seq``, ``iteration``, ``parent_id``,
    ``child_id``, ``outcome``, ``reason``, ``parent_score``, ``child_score`` (minibatch
    sums), ``task``. With ``after``, only newer nodes and decisions are listed, but
    ``best_id``, ``front`` and ``scores`` (every candidate's mean score) are always whole, as
    roles and scores of older nodes change.
    """

    run_id: str
    nodes: tuple[Mapping[str, Any], ...]
    decisions: tuple[Mapping[str, Any], ...]
    best_id: int | None
    front: tuple[int, ...]
    scores: tuple[float | None, ...]
    last_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "nodes": [dict(node) for node in self.nodes],
            "decisions": [dict(decision) for decision in self.decisions],
            "best_id": self.best_id,
            "front": list(self.front),
            "scores": list(self.scores),
            "last_seq": self.last_seq,
        }


def lineage(view: RunView, *, after: int = 0) -> Lineage:
    """The lineage tree and the decision log (see :class:`Lineage`)."""
    state = view.state
    front = view.front_ids()
    scores = [state.val_score(c.id) for c in state.candidates]
    nodes = lineage_info(
        [c.texts for c in state.candidates],
        [c.parents for c in state.candidates],
        scores,
        front,
        best_idx=state.best_id if state.candidates else None,
    )
    listed = []
    for node, candidate, seq in zip(nodes, state.candidates, view.candidate_seqs, strict=True):
        if seq <= after:
            continue
        listed.append(
            {
                "id": node.idx,
                "parents": list(node.parents),
                "score": _num(node.score),
                "role": node.role,
                "generation": node.generation,
                "origin": candidate.origin,
                "iteration": candidate.iteration,
                "metric_calls": candidate.metric_calls_at_discovery,
                "seq": seq,
            }
        )
    decisions = [decision_json(e.seq, e.record) for e in view.decisions if e.seq > after]
    return Lineage(
        run_id=view.run_id,
        nodes=tuple(listed),
        decisions=tuple(decisions),
        best_id=state.best_id if state.candidates else None,
        front=tuple(front),
        scores=tuple(_num(s) for s in scores),
        last_seq=view.last_seq,
    )


def component_diff(before: str, after: str, *, old_name: str, new_name: str) -> str:
    """A unified diff of two texts (empty when they are equal)."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), old_name, new_name, lineterm=""
    )
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class CandidateDetail:
    """One candidate: its texts and scores, where it came from and what made it.

    ``diffs`` maps each parent id to a unified diff per component (components that did not
    change are left out). ``reflection`` (``None`` for the seed, a merge, or a run whose
    store keeps no reflection) holds ``components``, ``proposed``, ``failures``, ``flags``
    from the journal and, from the event log when there is one, ``prompts`` and ``replies``
    per component (the last prompt sent to the reflection model and its reply).
    ``decision`` is the decision that accepted it.
    """

    id: int
    origin: str
    iteration: int
    parents: tuple[int, ...]
    children: tuple[int, ...]
    texts: Mapping[str, str]
    score: float | None
    coverage: int
    val_scores: Mapping[str, float | None]
    """Example id (as text, for JSON) -> score."""
    objective_scores: Mapping[str, float]
    role: str
    metric_calls: int
    components_updated: tuple[str, ...]
    diffs: Mapping[int, Mapping[str, str]]
    decision: Mapping[str, Any] | None
    reflection: Mapping[str, Any] | None
    seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origin": self.origin,
            "iteration": self.iteration,
            "parents": list(self.parents),
            "children": list(self.children),
            "texts": dict(self.texts),
            "score": _num(self.score),
            "coverage": self.coverage,
            "val_scores": dict(self.val_scores),
            "objective_scores": {k: _num(v) for k, v in self.objective_scores.items()},
            "role": self.role,
            "metric_calls": self.metric_calls,
            "components_updated": list(self.components_updated),
            "diffs": {str(p): dict(d) for p, d in self.diffs.items()},
            "decision": None if self.decision is None else dict(self.decision),
            "reflection": None if self.reflection is None else dict(self.reflection),
            "seq": self.seq,
        }


def candidate_detail(view: RunView, candidate_id: int) -> CandidateDetail:
    """One candidate's detail (see :class:`CandidateDetail`).

    Raises:
        KeyError: the run has no such candidate (the message says how many it has).
    """
    state = view.state
    if not 0 <= candidate_id < len(state.candidates):
        raise KeyError(
            f"run {view.run_id!r} has no candidate {candidate_id}; its candidates are "
            f"0 to {len(state.candidates) - 1}"
            if state.candidates
            else f"run {view.run_id!r} has no candidate yet"
        )
    record = state.candidates[candidate_id]
    diffs: dict[int, dict[str, str]] = {}
    for parent_id in record.parents:
        parent = state.candidates[parent_id].texts
        changed = {}
        for name, text in record.texts.items():
            diff = component_diff(
                parent.get(name, ""),
                text,
                old_name=f"candidate {parent_id}: {name}",
                new_name=f"candidate {candidate_id}: {name}",
            )
            if diff:
                changed[name] = diff
        diffs[parent_id] = changed
    front = set(view.front_ids())
    role = "best" if candidate_id == state.best_id else ("front" if candidate_id in front else "")
    decision = next(
        (
            decision_json(e.seq, e.record)
            for e in view.decisions
            if e.record.child_id == candidate_id and e.record.outcome == "accepted"
        ),
        None,
    )
    coverage = state.val_coverage(candidate_id)
    return CandidateDetail(
        id=candidate_id,
        origin=record.origin,
        iteration=record.iteration,
        parents=tuple(record.parents),
        children=tuple(c.id for c in state.candidates if candidate_id in c.parents),
        texts=dict(record.texts),
        score=state.val_score(candidate_id) if coverage else None,
        coverage=coverage,
        val_scores={
            str(e): _num(s)
            for e, s in sorted(state.val_scores(candidate_id).items(), key=lambda i: repr(i[0]))
        },
        objective_scores=state.objective_scores(candidate_id),
        role=role,
        metric_calls=record.metric_calls_at_discovery,
        components_updated=tuple(record.components_updated),
        diffs=diffs,
        decision=decision,
        reflection=_reflection(view, record.iteration, record.parents, record.texts),
        seq=view.candidate_seqs[candidate_id],
    )


def _reflection(
    view: RunView, iteration: int, parents: Sequence[int], texts: Mapping[str, str]
) -> dict[str, Any] | None:
    """The reflection that proposed ``texts`` in ``iteration`` (journal and event log)."""
    if len(parents) != 1:
        return None

    def made_it(proposed: Mapping[str, str]) -> bool:
        return bool(proposed) and all(texts.get(k) == v for k, v in proposed.items())

    records: list[ReflectionRecord] = [
        r for r in view.state.reflections if r.iteration == iteration and r.parent_id == parents[0]
    ]
    chosen = next((r for r in records if made_it(r.proposed)), records[0] if records else None)
    events = view.events.reflection_events(iteration, parents[0]) if view.events is not None else []
    event = next(
        (e for e in events if isinstance(e.get("proposed"), dict) and made_it(e["proposed"])),
        events[0] if events else None,
    )
    if chosen is None and event is None:
        return None
    data: dict[str, Any] = {"prompts": {}, "replies": {}}
    if chosen is not None:
        data.update(
            components=list(chosen.components),
            proposed=dict(chosen.proposed),
            failures=dict(chosen.failures),
            flags=dict(chosen.flags),
        )
    if event is not None:
        data["prompts"] = dict(event.get("prompts") or {})
        data["replies"] = dict(event.get("replies") or {})
        data.setdefault("components", list(event.get("components") or []))
        data.setdefault("proposed", dict(event.get("proposed") or {}))
        data.setdefault("failures", dict(event.get("failures") or {}))
        data.setdefault("flags", dict(event.get("flags") or {}))
    return data

"""The run state: an append-only list of records and the views derived from it.

:class:`RunState` is the single source of truth of a run. The engine appends records
(:mod:`gepetto.records`); everything else (the candidate pool, validation scores, Pareto
fronts, the best candidate, metric-call counters) is a view kept up to date as records
arrive. Replaying the same records into a fresh ``RunState`` gives the same views.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gepetto.frontier import BestTable, FrontierType, selection_weights
from gepetto.objectives import ObjectiveWeights
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationRecord,
    IterationRecord,
    LMCallRecord,
    Record,
    ReflectionRecord,
    ReflectionStreamed,
    ValsetGrowthRecord,
)
from gepetto.totals import RunningMean, mean
from gepetto.types import CandidateId, ExampleId

__all__ = ["CandidateView", "LMUsageTotals", "RunState"]


class _Aggregate:
    """Running means of one candidate's validation scores (and weighted values); they never
    overflow (:mod:`gepetto.totals`)."""

    __slots__ = ("scores", "weighted")

    def __init__(self) -> None:
        self.scores = RunningMean()
        self.weighted = RunningMean()

    @property
    def count(self) -> int:
        return self.scores.count

    @property
    def mean(self) -> float:
        return self.scores.mean

    @property
    def weighted_mean(self) -> float:
        return self.weighted.mean


@dataclass(slots=True)
class LMUsageTotals:
    """Totals of the LM calls of one role.

    ``cost_usd`` sums the calls whose price is known; ``unpriced_calls`` counts the others,
    so a total is only complete when it is 0.
    """

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    faults: dict[str, int] = field(default_factory=dict)

    def add(self, record: LMCallRecord) -> None:
        self.calls += 1
        self.cached_calls += record.cached
        self.failed_calls += record.error is not None
        self.input_tokens += record.input_tokens
        self.output_tokens += record.output_tokens
        if record.cost_usd is None:
            self.unpriced_calls += record.error is None and not record.cached
        else:
            self.cost_usd += record.cost_usd
        for name, count in record.faults.items():
            self.faults[name] = self.faults.get(name, 0) + count


@dataclass(frozen=True, slots=True)
class CandidateView:
    """A pool member with its derived validation numbers (read-only snapshot)."""

    record: CandidateRecord
    val_scores: Mapping[ExampleId, float]
    val_score: float


class RunState:
    """Records of one run plus incrementally maintained views.

    Args:
        valset_size: number of validation examples (for coverage checks).
        frontier_type: which fronts :meth:`fronts` returns.
        objective_weights: if given, the best candidate is the one with the highest
            :meth:`weighted_score` instead of the highest mean validation score.
    """

    def __init__(
        self,
        valset_size: int,
        frontier_type: FrontierType = "instance",
        objective_weights: ObjectiveWeights | None = None,
    ) -> None:
        self.valset_size = valset_size
        self.frontier_type: FrontierType = frontier_type
        self.objective_weights = objective_weights
        self.records: list[Record] = []
        self.candidates: list[CandidateRecord] = []
        self.decisions: list[DecisionRecord] = []
        self.tried_hashes: set[str] = set()
        """Content hashes of every candidate tried: each pool member and each child a
        decision names (accepted or not)."""
        self.reflections: list[ReflectionRecord] = []
        self._id_by_hash: dict[str, CandidateId] = {}
        self._val_by_hash: dict[str, dict[ExampleId, float]] = {}
        self._test_by_hash: dict[str, dict[ExampleId, float]] = {}
        self._val_objectives_by_hash: dict[str, dict[ExampleId, Mapping[str, float]]] = {}
        self._val_outputs_by_hash: dict[str, dict[ExampleId, Any]] = {}
        self._aggregates: list[_Aggregate] = []
        self._instance_front = BestTable()
        self._cartesian_front = BestTable()
        self._reflections_on: dict[CandidateId, int] = {}
        self._views_version = 0
        self._weights_cache: tuple[int, tuple[list[int], list[int]]] | None = None
        self.metric_calls = {"train": 0, "val": 0, "test": 0}
        self.reflection_lm_calls = 0
        self.lm_usage: dict[str, LMUsageTotals] = {}
        self.iterations_started = 0
        self.iterations_finished = 0
        self.best_id: CandidateId = 0
        self.best_changed_at_iteration = -1
        self.max_search_score = float("-inf")
        """The highest score any train or validation evaluation of the run has returned."""

    # ----- appending -------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Append a record and update every view (a :class:`ReflectionStreamed` is progress,
        not state: ignored)."""
        if isinstance(record, ReflectionStreamed):
            return
        self.records.append(record)
        if isinstance(record, EvaluationRecord):
            self._on_evaluation(record)
        elif isinstance(record, CandidateRecord):
            self._on_candidate(record)
        elif isinstance(record, ReflectionRecord):
            self.reflections.append(record)
            self.reflection_lm_calls += record.lm_calls
            self._reflections_on[record.parent_id] = (
                self._reflections_on.get(record.parent_id, 0) + 1
            )
        elif isinstance(record, IterationRecord):
            self.iterations_started += 1
        elif isinstance(record, LMCallRecord):
            self.lm_usage.setdefault(record.role, LMUsageTotals()).add(record)
        elif isinstance(record, ValsetGrowthRecord):
            self.valset_size += len(record.loader_ids)
        else:
            self.decisions.append(record)
            if record.child_hash is not None:
                self.tried_hashes.add(record.child_hash)
            if record.task is None:  # a proposal's decision within an iteration ends none
                self.iterations_finished += 1

    def _on_evaluation(self, record: EvaluationRecord) -> None:
        self.metric_calls[record.split] += record.metric_calls
        if record.split != "test" and record.scores:
            self.max_search_score = max(self.max_search_score, *record.scores)
        if record.split == "test":
            known = self._test_by_hash.setdefault(record.candidate_hash, {})
            for example_id, score in zip(record.example_ids, record.scores, strict=True):
                known.setdefault(example_id, score)
            return
        if record.split != "val":
            return
        scores = self._val_by_hash.setdefault(record.candidate_hash, {})
        objectives = self._val_objectives_by_hash.setdefault(record.candidate_hash, {})
        candidate_id = self._id_by_hash.get(record.candidate_hash)
        offered = False
        for position, (example_id, score) in enumerate(
            zip(record.example_ids, record.scores, strict=True)
        ):
            if example_id in scores:
                continue  # a score, once known, never changes
            scores[example_id] = score
            if record.outputs is not None and record.outputs[position] is not None:
                outputs = self._val_outputs_by_hash.setdefault(record.candidate_hash, {})
                outputs[example_id] = record.outputs[position]
            if record.objective_scores is not None:
                objectives[example_id] = record.objective_scores[position]
            if candidate_id is not None:
                self._offer(candidate_id, example_id)
                offered = True
        if offered and candidate_id is not None:
            self._refresh_best(candidate_id)

    def _on_candidate(self, record: CandidateRecord) -> None:
        if record.id != len(self.candidates):
            raise ValueError(f"candidate id {record.id} is out of order")
        self.candidates.append(record)
        self._views_version += 1
        self._id_by_hash[record.content_hash] = record.id
        self.tried_hashes.add(record.content_hash)
        self._aggregates.append(_Aggregate())
        for example_id in self._val_by_hash.get(record.content_hash, {}):
            self._offer(record.id, example_id)
        self._refresh_best(record.id)

    def _offer(self, candidate_id: CandidateId, example_id: ExampleId) -> None:
        self._views_version += 1
        content_hash = self.candidates[candidate_id].content_hash
        score = self._val_by_hash[content_hash][example_id]
        aggregate = self._aggregates[candidate_id]
        aggregate.scores.add(score)
        self._instance_front.offer(example_id, candidate_id, score)
        objectives = self._val_objectives_by_hash[content_hash].get(example_id, {})
        if self.objective_weights is not None:
            aggregate.weighted.add(self.objective_weights.value(objectives))
        for objective, value in objectives.items():
            self._cartesian_front.offer((example_id, objective), candidate_id, value)

    def _rank(self, candidate_id: CandidateId) -> tuple[float, int, int]:
        """Best-candidate order: higher mean (weighted, with objective weights), then more
        evidence, then the older one."""
        aggregate = self._aggregates[candidate_id]
        score = aggregate.mean if self.objective_weights is None else aggregate.weighted_mean
        return (score, aggregate.count, -candidate_id)

    def _refresh_best(self, changed_id: CandidateId) -> None:
        """Re-rank after ``changed_id``'s scores changed (all of a record at once)."""
        if changed_id == self.best_id:
            # The best's own mean may have dropped: look at everyone again.
            best = max(range(len(self.candidates)), key=self._rank)
        else:
            best = max((self.best_id, changed_id), key=self._rank)
        if best != self.best_id:
            self.best_id = best
            self.best_changed_at_iteration = self.iterations_finished

    # ----- views -----------------------------------------------------------------------------

    def best_outputs(self) -> dict[ExampleId, list[tuple[CandidateId, Any]]]:
        """gepa's ``best_outputs_valset``: per validation example, ``(candidate id, output)``
        for each candidate of its instance front whose output was kept (JSON outputs of
        validation evaluations, with ``track_best_outputs``), in id order."""
        best: dict[ExampleId, list[tuple[CandidateId, Any]]] = {}
        for example_id, front in sorted(self.instance_fronts().items()):
            pairs = []
            for candidate_id in sorted(front):
                outputs = self._val_outputs_by_hash.get(self.candidates[candidate_id].content_hash)
                if outputs is not None and example_id in outputs:
                    pairs.append((candidate_id, outputs[example_id]))
            if pairs:
                best[int(example_id)] = pairs  # type: ignore[call-overload]
        return best

    @property
    def total_metric_calls(self) -> int:
        """Metric calls spent on train and validation (test calls are reported apart)."""
        return self.metric_calls["train"] + self.metric_calls["val"]

    @property
    def cost_usd(self) -> float:
        """Dollars spent on LM calls whose price is known, over every role."""
        return sum(totals.cost_usd for totals in self.lm_usage.values())

    def id_of(self, content_hash: str) -> CandidateId | None:
        """The pool id of a candidate with these texts, if it is in the pool."""
        return self._id_by_hash.get(content_hash)

    def val_scores(self, candidate_id: CandidateId) -> dict[ExampleId, float]:
        """Validation scores known for a pool member, by example id."""
        return dict(self._val_by_hash.get(self.candidates[candidate_id].content_hash, {}))

    def known_test_scores(self, content_hash: str) -> Mapping[ExampleId, float]:
        """Held-out test scores known for some candidate texts (only set at the end)."""
        return self._test_by_hash.get(content_hash, {})

    def known_val_scores(self, content_hash: str) -> Mapping[ExampleId, float]:
        """Validation scores already known for any candidate texts (pool member or not)."""
        return self._val_by_hash.get(content_hash, {})

    def val_score(self, candidate_id: CandidateId) -> float:
        """Mean validation score of a pool member over the examples it was evaluated on."""
        return self._aggregates[candidate_id].mean

    def weighted_score(self, candidate_id: CandidateId) -> float | None:
        """Mean over a pool member's validation examples of the weighted sum of their
        objectives (a missing objective counts 0.0); ``None`` without objective weights."""
        if self.objective_weights is None:
            return None
        return self._aggregates[candidate_id].weighted_mean

    def rank_score(self, candidate_id: CandidateId) -> float:
        """What the best candidate is chosen by: :meth:`weighted_score` with objective
        weights, else :meth:`val_score`."""
        aggregate = self._aggregates[candidate_id]
        return aggregate.weighted_mean if self.objective_weights is not None else aggregate.mean

    def val_coverage(self, candidate_id: CandidateId) -> int:
        """Number of validation examples a pool member was evaluated on."""
        return self._aggregates[candidate_id].count

    def val_scores_all(self) -> dict[CandidateId, float]:
        """Mean validation score of every pool member."""
        return {c.id: agg.mean for c, agg in zip(self.candidates, self._aggregates, strict=True)}

    def objective_scores(self, candidate_id: CandidateId) -> dict[str, float]:
        """Mean of each objective over the validation examples of a pool member."""
        per_example = self._val_objectives_by_hash.get(
            self.candidates[candidate_id].content_hash, {}
        )
        values: dict[str, list[float]] = {}
        for objectives in per_example.values():
            for name, value in objectives.items():
                values.setdefault(name, []).append(value)
        return {name: mean(values[name]) for name in sorted(values)}

    def front_best_score(self, example_id: ExampleId) -> float:
        """The best validation score any pool member has on an example (-inf if none)."""
        return self._instance_front.best.get(example_id, float("-inf"))

    def instance_fronts(self) -> dict[Hashable, set[CandidateId]]:
        """Per validation example, the pool members with the best score on it."""
        return self._instance_front.fronts()

    def objective_fronts(self) -> dict[Hashable, set[CandidateId]]:
        """Per objective, the pool members with the best mean score on it."""
        table = BestTable()
        for candidate in self.candidates:
            for name, value in self.objective_scores(candidate.id).items():
                table.offer(name, candidate.id, value)
        return table.fronts()

    def fronts(self, frontier_type: FrontierType | None = None) -> dict[Hashable, set[int]]:
        """The fronts of the given type (default: the run's ``frontier_type``)."""
        kind = frontier_type or self.frontier_type
        if kind == "instance":
            return self.instance_fronts()
        if kind == "objective":
            return self.objective_fronts()
        if kind == "cartesian":
            return self._cartesian_front.fronts()
        hybrid: dict[Hashable, set[int]] = {
            ("example", key): ids for key, ids in self.instance_fronts().items()
        }
        hybrid.update({("objective", key): ids for key, ids in self.objective_fronts().items()})
        return hybrid

    def front_members(self) -> list[CandidateId]:
        """The pool members on at least one front of the run's type (best on some key), in id
        order: gepa's ``pareto_front_programs`` flattened, dominated members included (see
        :meth:`selection_weights` for the non-dominated ones). O(pool size) for the
        instance and cartesian fronts, which are kept up to date as scores arrive."""
        table = {"instance": self._instance_front, "cartesian": self._cartesian_front}.get(
            self.frontier_type
        )
        if table is not None:
            return sorted(c for c, keys in table.keys_of.items() if keys)
        return sorted({c for ids in self.fronts().values() for c in ids})

    def front_aggregate_score(self) -> float:
        """The mean over validation examples of the best score any pool member has on it
        (gepa's "valset Pareto front aggregate score": the score of the front taken as an
        ensemble); NaN before any score. O(examples scored)."""
        best = self._instance_front.best
        return mean(list(best.values())) if best else float("nan")

    def selection_weights(self) -> tuple[list[CandidateId], list[int]]:
        """Non-dominated pool members and how many fronts each is on (GEPA's sampling weights).

        Cached until the next validation score or candidate arrives, so parent selection
        costs O(1) in the iterations that add nothing to the pool.
        """
        cached = self._weights_cache
        if cached is not None and cached[0] == self._views_version:
            return cached[1]
        table = {"instance": self._instance_front, "cartesian": self._cartesian_front}.get(
            self.frontier_type
        )
        if table is not None:
            fronts: Mapping[Hashable, set[int]] = table.members
            keys_of: Mapping[int, set[Hashable]] = table.keys_of
        else:
            fronts = self.fronts()
            built: dict[int, set[Hashable]] = {}
            for key, ids in fronts.items():
                for candidate_id in ids:
                    built.setdefault(candidate_id, set()).add(key)
            keys_of = built
        weights = selection_weights(fronts, keys_of, self.val_scores_all())
        self._weights_cache = (self._views_version, weights)
        return weights

    def reflections_on(self, candidate_id: CandidateId) -> int:
        """How many reflection steps used this candidate as parent."""
        return self._reflections_on.get(candidate_id, 0)

    def iterations_since_best_changed(self) -> int:
        """Finished iterations since the best candidate last changed."""
        return self.iterations_finished - max(self.best_changed_at_iteration, 0)

    def views(self) -> Iterator[CandidateView]:
        """Every pool member with its validation numbers, in id order."""
        for candidate in self.candidates:
            yield CandidateView(
                candidate, self.val_scores(candidate.id), self.val_score(candidate.id)
            )

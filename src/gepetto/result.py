"""The result of a run: candidates, lineage, scores, fronts, counters; JSON round-trip.

:class:`Result` keeps the attribute names of gepa's ``GEPAResult`` (``candidates``,
``parents``, ``val_aggregate_scores``, ``val_subscores``, ``per_val_instance_best_candidates``,
``discovery_eval_counts``, ``total_metric_calls``, ``best_idx``, ``best_candidate``; it is
gepa's ``GEPAResult`` too, see :data:`GEPAResult`), and adds
what gepa leaves out: metric calls split by train and validation, reflection calls, the
non-dominated front, the stop reason and the decision log. With ``objective_weights``, the
best candidate is the one with the highest :attr:`Result.weighted_scores` entry, while
``val_aggregate_scores`` stay the plain mean scores.

A result is always readable, also when the run stopped before the seed's validation finished
(a 401 on the first call, for example): it then has no candidates, ``best_candidate`` is the
seed candidate's texts (unscored: what to keep using), ``best_score`` and ``seed_score`` are
``None`` (no score is known; ``None`` prints, and is ``null`` in JSON), and ``repr()``,
:meth:`Result.summary_lines`, :meth:`Result.to_json` and :meth:`Result.from_json` work as
usual. Every float in a result is finite, and :meth:`Result.to_json` writes standard JSON.

Example:
    >>> r = Result.from_dict(Result.example().to_dict())
    >>> r.best_idx, r.best_score
    (1, 0.75)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import GenericAlias
from typing import TYPE_CHECKING, Any, ClassVar

from gepetto.frontier import non_dominated
from gepetto.records import record_to_dict
from gepetto.totals import mean
from gepetto.types import jsonable
from gepetto.visualization import candidate_tree_dot_from_data, candidate_tree_html_from_data

if TYPE_CHECKING:
    from gepetto.state import RunState

__all__ = ["RESULT_SCHEMA_VERSION", "GEPAResult", "Result"]

RESULT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Result:
    """Everything a finished (or stopped) run found. Candidate ids index every list.

    ``best_idx`` is the highest mean validation score (ties: more validation evidence, then
    the older candidate), or with ``objective_weights`` the highest weighted score. A result
    built by hand with gepa's ``GEPAResult`` arguments (no ``best_idx``) takes the first
    highest ``val_aggregate_scores`` entry, as gepa does; ``total_metric_calls`` is then 0.

    With no candidates (the run stopped before the seed was scored; see :attr:`stop_reason`),
    ``best_idx`` is 0 but indexes nothing, :attr:`best_candidate` is ``seed_candidate``, and
    :attr:`best_score`, :attr:`seed_score` and :attr:`best_weighted_score` are ``None``.
    """

    candidates: list[dict[str, str]]
    parents: list[list[int]]
    val_aggregate_scores: list[float]
    val_subscores: list[dict[int, float]]
    per_val_instance_best_candidates: dict[int, set[int]]
    discovery_eval_counts: list[int]
    best_idx: int = -1
    total_metric_calls: int = 0
    metric_calls_train: int = 0
    metric_calls_val: int = 0
    num_reflection_calls: int = 0
    num_iterations: int = 0
    pareto_front: list[int] = field(default_factory=list)
    objective_scores: list[dict[str, float]] | None = None
    per_objective_best_candidates: dict[str, set[int]] | None = None
    stop_reason: str | None = None
    seed: int | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)
    lm_usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    test_scores: dict[int, float] = field(default_factory=dict)
    """Mean held-out test score by candidate id (only the candidates scored on it)."""
    metric_calls_test: int = 0
    objective_weights: dict[str, float] | None = None
    """The run's objective weights (``None``: the best is chosen by the plain score)."""
    weighted_scores: list[float] | None = None
    """With ``objective_weights``: per candidate, the mean over its validation examples of
    the weighted sum of their objectives (a missing objective counts 0.0)."""
    seed_candidate: dict[str, str] | None = None
    """The texts the run started from (``candidates[0]`` once the seed was scored); ``None``
    in results written before gepetto recorded it."""
    best_outputs_valset: dict[int, list[tuple[int, Any]]] | None = None
    """gepa's field: per validation example id, ``(candidate id, output)`` for each candidate
    of that example's front (ties kept), with ``track_best_outputs`` (``None`` without it).
    Only outputs that are plain JSON are kept (they are journaled, so a resume keeps them)."""
    num_full_val_evals: int | None = None
    """gepa's field: how many candidates were scored on the whole validation set (the seed
    counts as one)."""
    objective_pareto_front: dict[str, float] | None = None
    """gepa's field: per objective, the best mean objective score of any candidate (``None``
    when the adapter returns no ``objective_scores``)."""
    run_dir: str | None = None
    """The run's folder (``None`` for a run without one)."""

    # gepa's GEPAResult is Generic[RolloutOutput, DataId]: GEPAResult[X, Y] works at run time.
    __class_getitem__: ClassVar[Any] = classmethod(GenericAlias)

    _VALIDATION_SCHEMA_VERSION: ClassVar[int] = 2
    """gepa's ``GEPAResult`` layout that :meth:`to_dict` also satisfies (its
    ``validation_schema_version``): validation ids as keys, fronts as lists."""

    def __post_init__(self) -> None:
        if self.best_idx == -1:  # built with gepa's arguments: gepa's rule, first maximum
            scores = self.val_aggregate_scores
            best = max(range(len(scores)), key=scores.__getitem__) if scores else 0
            object.__setattr__(self, "best_idx", best)

    @property
    def val_aggregate_subscores(self) -> list[dict[str, float]] | None:
        """gepa's name for :attr:`objective_scores` (per candidate, mean objective scores)."""
        return self.objective_scores

    # ----- convenience -----------------------------------------------------------------------

    @property
    def best_candidate(self) -> dict[str, str]:
        """The texts of the best candidate (see ``best_idx``); with no candidates, the seed
        candidate's texts (unscored), or ``{}`` if the result does not know them."""
        if not self.candidates:
            return dict(self.seed_candidate or {})
        return self.candidates[self.best_idx]

    @property
    def best_score(self) -> float | None:
        """Mean validation score of the best candidate (the plain score, also with
        ``objective_weights``: see :attr:`best_weighted_score`); ``None`` with no candidates."""
        if not self.candidates:
            return None
        return self.val_aggregate_scores[self.best_idx]

    @property
    def best_weighted_score(self) -> float | None:
        """The best candidate's weighted score, if the run had ``objective_weights`` (and a
        scored candidate)."""
        if self.weighted_scores is None or not self.candidates:
            return None
        return self.weighted_scores[self.best_idx]

    @property
    def seed_score(self) -> float | None:
        """Mean validation score of the seed candidate; ``None`` if it was never scored."""
        return self.val_aggregate_scores[0] if self.candidates else None

    @property
    def best_test_score(self) -> float | None:
        """The best candidate's held-out test score, if a ``testset`` was given."""
        return self.test_scores.get(self.best_idx)

    @property
    def seed_test_score(self) -> float | None:
        """The seed's held-out test score, if a ``testset`` was given."""
        return self.test_scores.get(0)

    @property
    def total_cost_usd(self) -> float | None:
        """Dollars spent on LM calls (task and reflection); ``None`` if any call of the run
        had an unknown price, so the total would be an underestimate."""
        if any(u.get("unpriced_calls", 0) for u in self.lm_usage.values()):
            return None
        return sum(float(u.get("cost_usd", 0.0)) for u in self.lm_usage.values())

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def num_val_instances(self) -> int:
        return len(self.per_val_instance_best_candidates)

    def lineage(self, candidate_id: int) -> list[int]:
        """Ids from the seed down to ``candidate_id`` (first parent at each step); empty for a
        result without candidates."""
        if not self.candidates:
            return []
        chain = [candidate_id]
        while self.parents[chain[-1]]:
            chain.append(self.parents[chain[-1]][0])
        return chain[::-1]

    # ----- the lineage tree ------------------------------------------------------------------

    def candidate_tree_dot(self) -> str:
        """The lineage tree as Graphviz DOT text (gepa's ``candidate_tree_dot``): a node per
        candidate with its mean validation score, cyan for the best, orange for the rest of
        the Pareto front; an edge from each parent to its child."""
        return candidate_tree_dot_from_data(
            self.candidates,
            self.parents,
            self.val_aggregate_scores,
            self.pareto_front,
            best_idx=self.best_idx,
        )

    def candidate_tree_html(self) -> str:
        """The lineage tree as a self-contained HTML page (gepa's ``candidate_tree_html``):
        an inline SVG drawing, a table of every candidate's texts, the DOT text and the nodes'
        data as JSON; nothing is loaded from the network (no CDN)."""
        return candidate_tree_html_from_data(
            self.candidates,
            self.parents,
            self.val_aggregate_scores,
            self.pareto_front,
            best_idx=self.best_idx,
        )

    def lineage_dot(self) -> str:
        """Same as :meth:`candidate_tree_dot`."""
        return self.candidate_tree_dot()

    def write_lineage_html(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`candidate_tree_html` to ``path`` (UTF-8); return the path."""
        target = Path(path)
        target.write_text(self.candidate_tree_html(), encoding="utf-8")
        return target

    # ----- building --------------------------------------------------------------------------

    @classmethod
    def from_state(
        cls,
        state: RunState,
        *,
        stop_reason: str | None,
        seed: int | None,
        seed_candidate: dict[str, str] | None = None,
        run_dir: str | None = None,
        track_best_outputs: bool = False,
    ) -> Result:
        """Derive a result from a run state (``seed_candidate``: the texts the run started
        from, kept when the seed was never scored)."""
        ids = [c.id for c in state.candidates]
        fronts = state.instance_fronts()
        objective_scores = [state.objective_scores(i) for i in ids]
        has_objectives = any(objective_scores)
        objective_fronts = state.objective_fronts() if has_objectives else None
        weights = state.objective_weights
        return cls(
            candidates=[dict(c.texts) for c in state.candidates],
            parents=[list(c.parents) for c in state.candidates],
            val_aggregate_scores=[state.val_score(i) for i in ids],
            val_subscores=[state.val_scores(i) for i in ids],
            per_val_instance_best_candidates={int(k): set(v) for k, v in fronts.items()},  # type: ignore[call-overload]
            discovery_eval_counts=[c.metric_calls_at_discovery for c in state.candidates],
            best_idx=state.best_id if ids else 0,
            total_metric_calls=state.total_metric_calls,
            metric_calls_train=state.metric_calls["train"],
            metric_calls_val=state.metric_calls["val"],
            num_reflection_calls=state.reflection_lm_calls,
            num_iterations=state.iterations_finished,
            pareto_front=sorted(non_dominated(state.fronts(), state.val_scores_all())),
            objective_scores=objective_scores if has_objectives else None,
            per_objective_best_candidates={str(k): set(v) for k, v in objective_fronts.items()}
            if objective_fronts is not None
            else None,
            stop_reason=stop_reason,
            seed=seed,
            decisions=[record_to_dict(d) for d in state.decisions],
            lm_usage={role: asdict(totals) for role, totals in sorted(state.lm_usage.items())},
            test_scores=_test_scores(state),
            metric_calls_test=state.metric_calls["test"],
            objective_weights=weights.weights if weights is not None else None,
            weighted_scores=[state.rank_score(i) for i in ids] if weights is not None else None,
            seed_candidate=dict(seed_candidate) if seed_candidate is not None else None,
            best_outputs_valset=state.best_outputs() if track_best_outputs else None,
            num_full_val_evals=sum(
                1 for i in ids if state.valset_size and state.val_coverage(i) >= state.valset_size
            ),
            objective_pareto_front=_best_by_objective(objective_scores) if has_objectives else None,
            run_dir=run_dir,
        )

    # ----- serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with a ``schema_version`` (sets become sorted lists).

        ``objective_weights`` and ``weighted_scores`` are optional keys, present only for a
        run with objective weights; ``seed_candidate`` is ``null`` when it is not known.
        """
        data: dict[str, Any] = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "candidates": self.candidates,
            "parents": self.parents,
            "val_aggregate_scores": self.val_aggregate_scores,
            "val_subscores": [{str(k): v for k, v in s.items()} for s in self.val_subscores],
            "per_val_instance_best_candidates": {
                str(k): sorted(v) for k, v in self.per_val_instance_best_candidates.items()
            },
            "discovery_eval_counts": self.discovery_eval_counts,
            "best_idx": self.best_idx,
            "total_metric_calls": self.total_metric_calls,
            "metric_calls_train": self.metric_calls_train,
            "metric_calls_val": self.metric_calls_val,
            "num_reflection_calls": self.num_reflection_calls,
            "num_iterations": self.num_iterations,
            "pareto_front": self.pareto_front,
            "objective_scores": self.objective_scores,
            "per_objective_best_candidates": {
                k: sorted(v) for k, v in self.per_objective_best_candidates.items()
            }
            if self.per_objective_best_candidates is not None
            else None,
            "stop_reason": self.stop_reason,
            "seed": self.seed,
            "decisions": jsonable(self.decisions),
            "lm_usage": jsonable(self.lm_usage),
            "test_scores": {str(k): v for k, v in self.test_scores.items()},
            "metric_calls_test": self.metric_calls_test,
            "seed_candidate": self.seed_candidate,
            "best_outputs_valset": {
                str(k): [[i, output] for i, output in pairs]
                for k, pairs in self.best_outputs_valset.items()
            }
            if self.best_outputs_valset is not None
            else None,
            "num_full_val_evals": self.num_full_val_evals,
            "objective_pareto_front": self.objective_pareto_front,
            "run_dir": self.run_dir,
            "validation_schema_version": self._VALIDATION_SCHEMA_VERSION,
        }
        if self.weighted_scores is not None:
            data["objective_weights"] = self.objective_weights
            data["weighted_scores"] = self.weighted_scores
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Rebuild a result from :meth:`to_dict` output, or from gepa's
        ``GEPAResult.to_dict()`` (a dict without ``schema_version``: gepa's version 2 layout,
        or its older list layout when ``validation_schema_version`` is missing or below 2).

        Raises:
            ValueError: for a newer ``schema_version`` (or gepa ``validation_schema_version``).
        """
        if "schema_version" not in data:
            return cls._from_gepa_dict(data)
        version = data.get("schema_version")
        if not isinstance(version, int) or version > RESULT_SCHEMA_VERSION:
            raise ValueError(
                f"unsupported Result schema_version {version!r}; this gepetto reads up to "
                f"{RESULT_SCHEMA_VERSION} (upgrade gepetto to read newer results)"
            )
        objective_fronts = data.get("per_objective_best_candidates")
        return cls(
            candidates=[dict(c) for c in data["candidates"]],
            parents=[list(p) for p in data["parents"]],
            val_aggregate_scores=[float(s) for s in data["val_aggregate_scores"]],
            val_subscores=[{int(k): float(v) for k, v in s.items()} for s in data["val_subscores"]],
            per_val_instance_best_candidates={
                int(k): set(v) for k, v in data["per_val_instance_best_candidates"].items()
            },
            discovery_eval_counts=list(data["discovery_eval_counts"]),
            best_idx=int(data["best_idx"]),
            total_metric_calls=int(data["total_metric_calls"]),
            metric_calls_train=int(data.get("metric_calls_train", 0)),
            metric_calls_val=int(data.get("metric_calls_val", 0)),
            num_reflection_calls=int(data.get("num_reflection_calls", 0)),
            num_iterations=int(data.get("num_iterations", 0)),
            pareto_front=list(data.get("pareto_front", [])),
            objective_scores=data.get("objective_scores"),
            per_objective_best_candidates={k: set(v) for k, v in objective_fronts.items()}
            if objective_fronts is not None
            else None,
            stop_reason=data.get("stop_reason"),
            seed=data.get("seed"),
            decisions=list(data.get("decisions", [])),
            lm_usage=dict(data.get("lm_usage", {})),
            test_scores={int(k): float(v) for k, v in data.get("test_scores", {}).items()},
            metric_calls_test=int(data.get("metric_calls_test", 0)),
            objective_weights=_floats_by_name(data.get("objective_weights")),
            weighted_scores=[float(s) for s in data["weighted_scores"]]
            if data.get("weighted_scores") is not None
            else None,
            seed_candidate=dict(data["seed_candidate"])
            if data.get("seed_candidate") is not None
            else None,
            best_outputs_valset={
                int(k): [(int(i), output) for i, output in pairs]
                for k, pairs in data["best_outputs_valset"].items()
            }
            if data.get("best_outputs_valset") is not None
            else None,
            num_full_val_evals=data.get("num_full_val_evals"),
            objective_pareto_front=_floats_by_name(data.get("objective_pareto_front")),
            run_dir=data.get("run_dir"),
        )

    @classmethod
    def _from_gepa_dict(cls, data: dict[str, Any]) -> Result:
        """gepa's layouts: version 2 keys results by validation id, older ones by position."""
        version = data.get("validation_schema_version") or 0
        if not isinstance(version, int) or version > cls._VALIDATION_SCHEMA_VERSION:
            raise ValueError(
                f"unsupported GEPAResult validation_schema_version {version!r}; this gepetto "
                f"reads gepa's layouts up to {cls._VALIDATION_SCHEMA_VERSION}"
            )

        def by_id(value: Any) -> dict[Any, Any]:  # a v0 list is indexed by position
            pairs = value.items() if version >= 2 else enumerate(value)
            return {_val_id(k): v for k, v in pairs}

        instance_fronts = by_id(data.get("per_val_instance_best_candidates", {}))
        fronts = data.get("per_objective_best_candidates")
        outputs = data.get("best_outputs_valset")
        objectives = data.get("val_aggregate_subscores")
        total_calls = data.get("total_metric_calls")
        return cls(
            candidates=[dict(c) for c in data.get("candidates", [])],
            parents=[[p for p in row if p is not None] for row in data.get("parents", [])],
            val_aggregate_scores=[float(s) for s in data.get("val_aggregate_scores", [])],
            val_subscores=[by_id(s) for s in data.get("val_subscores", [])],
            per_val_instance_best_candidates={k: set(v) for k, v in instance_fronts.items()},
            discovery_eval_counts=list(data.get("discovery_eval_counts", [])),
            total_metric_calls=int(total_calls) if total_calls is not None else 0,
            objective_scores=[dict(s) for s in objectives] if objectives is not None else None,
            per_objective_best_candidates={k: set(v) for k, v in fronts.items()}
            if fronts is not None
            else None,
            seed=data.get("seed"),
            best_outputs_valset={k: [(i, out) for i, out in v] for k, v in by_id(outputs).items()}
            if outputs is not None
            else None,
            num_full_val_evals=data.get("num_full_val_evals"),
            objective_pareto_front=_floats_by_name(data.get("objective_pareto_front")),
            run_dir=data.get("run_dir"),
        )

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a standard JSON string (``kwargs`` go to :func:`json.dumps`;
        ``allow_nan`` is always false: a result holds only finite numbers, and JSON has no
        ``NaN`` or ``Infinity``)."""
        options: dict[str, Any] = {"ensure_ascii": False, **kwargs, "allow_nan": False}
        return json.dumps(self.to_dict(), **options)

    @classmethod
    def from_json(cls, text: str) -> Result:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))

    @classmethod
    def example(cls) -> Result:
        """A tiny two-candidate result (for docs and tests)."""
        return cls(
            candidates=[{"instructions": "Answer."}, {"instructions": "Answer with one word."}],
            parents=[[], [0]],
            val_aggregate_scores=[0.25, 0.75],
            val_subscores=[{0: 0.5, 1: 0.0}, {0: 0.5, 1: 1.0}],
            per_val_instance_best_candidates={0: {0, 1}, 1: {1}},
            discovery_eval_counts=[0, 8],
            best_idx=1,
            total_metric_calls=10,
            metric_calls_train=6,
            metric_calls_val=4,
            num_reflection_calls=1,
            num_iterations=1,
            pareto_front=[1],
        )

    # ----- display ---------------------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """A few human-readable lines: scores, budget, front, stop reason."""
        best, seed = self.best_score, self.seed_score
        if best is None or seed is None:
            headline = "no candidate was scored: the run stopped before the seed's validation"
        else:
            headline = (
                f"best candidate {self.best_idx}: val {best:.4f} "
                f"(seed {seed:.4f}, {best - seed:+.4f})"
            )
        return [
            headline,
            f"{self.num_candidates} candidates, Pareto front {self.pareto_front}, "
            f"{self.num_iterations} iterations",
            f"metric calls {self.total_metric_calls} (train {self.metric_calls_train}, "
            f"val {self.metric_calls_val}), reflection calls {self.num_reflection_calls}",
            f"stopped: {self.stop_reason or 'n/a'}",
            *self._weighted_lines(),
            *self._test_lines(),
            *self._usage_lines(),
        ]

    def _weighted_lines(self) -> list[str]:
        if self.weighted_scores is None or self.objective_weights is None or not self.candidates:
            return []
        weights = ", ".join(f"{name} x {w:g}" for name, w in self.objective_weights.items())
        best, seed = self.weighted_scores[self.best_idx], self.weighted_scores[0]
        return [f"best by weighted objectives ({weights}): {best:.4f} (seed {seed:.4f})"]

    def _test_lines(self) -> list[str]:
        if self.best_test_score is None or self.seed_test_score is None:
            return []
        return [
            f"held-out test: seed {self.seed_test_score:.4f} -> best {self.best_test_score:.4f} "
            f"({self.metric_calls_test} calls, outside the budget)"
        ]

    def _usage_lines(self) -> list[str]:
        lines = []
        for role, usage in self.lm_usage.items():
            cost = f"${usage.get('cost_usd', 0.0):.4f}"
            if usage.get("unpriced_calls"):
                cost += f" + {usage['unpriced_calls']} calls of unknown price"
            lines.append(
                f"{role} LM: {usage.get('calls', 0)} calls ({usage.get('cached_calls', 0)} "
                f"cached), {usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} "
                f"tokens, {cost}"
            )
        return lines

    def __repr__(self) -> str:
        return "Result(" + "; ".join(self.summary_lines()) + ")"

    def __rich__(self) -> Any:
        from rich.panel import Panel
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", expand=False)
        table.add_column("id", justify="right")
        table.add_column("parents")
        table.add_column("val score", justify="right")
        if self.weighted_scores is not None:
            table.add_column("weighted", justify="right")
        table.add_column("found at call", justify="right")
        table.add_column("front")
        for i in range(self.num_candidates):
            style = "bold green" if i == self.best_idx else ""
            table.add_row(
                str(i),
                ",".join(map(str, self.parents[i])) or "seed",
                f"{self.val_aggregate_scores[i]:.4f}",
                *([f"{self.weighted_scores[i]:.4f}"] if self.weighted_scores is not None else []),
                str(self.discovery_eval_counts[i]),
                "*" if i in self.pareto_front else "",
                style=style,
            )
        return Panel(table, title="gepetto result", subtitle=" | ".join(self.summary_lines()[2:]))


GEPAResult = Result
"""gepa's name (``gepa.core.result.GEPAResult``): gepetto's result serves it."""


def _val_id(key: Any) -> Any:
    """A validation id read back from JSON: ``"3"`` was the int 3 (JSON keys are strings)."""
    if isinstance(key, str) and key.lstrip("-").isdigit():
        return int(key)
    return key


def _floats_by_name(data: dict[str, Any] | None) -> dict[str, float] | None:
    return {str(k): float(v) for k, v in data.items()} if data is not None else None


def _best_by_objective(objective_scores: list[dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for scores in objective_scores:
        for name, value in scores.items():
            best[name] = max(value, best.get(name, value))
    return dict(sorted(best.items()))


def _test_scores(state: RunState) -> dict[int, float]:
    scores = {}
    for candidate in state.candidates:
        known = state.known_test_scores(candidate.content_hash)
        if known:
            scores[candidate.id] = mean(known.values())
    return scores

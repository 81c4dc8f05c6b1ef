"""A user-given weighting of the adapter's objectives, for acceptance and the best candidate.

An adapter may return, for each example, ``objective_scores`` (objective name -> score). By
default they only shape the fronts (``frontier_type="objective"``, ``"hybrid"``,
``"cartesian"``): acceptance compares plain scores and the best candidate has the best mean
score. With ``objective_weights``, an example's *weighted value* is
``sum(weight_k * objective_k)``:

- acceptance compares the child's and the parent's minibatch on these values (a custom
  :class:`~gepetto.strategies.AcceptanceCriterion` receives them instead of the scores);
- the best candidate is the one with the highest mean weighted value on validation, which
  is also the ``best_score`` that stop conditions see.

A weight may be negative (an objective to keep low, such as cost). An objective an example
does not report counts 0.0 (an example whose evaluation failed reports none), but each
weighted objective must be reported on every seed validation example that did not fail:
:meth:`ObjectiveWeights.check_seed` raises otherwise, when the seed's validation comes back
and before any reflection is paid for.

Example:
    >>> weights = ObjectiveWeights({"accuracy": 1.0, "brevity": 0.5})
    >>> weights.value({"accuracy": 1.0, "brevity": 0.4})
    1.2
    >>> weights.values([{"accuracy": 0.5}, {}], 2)
    [0.5, 0.0]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from gepetto.errors import ConfigError
from gepetto.records import EvaluationRecord
from gepetto.totals import weighted_total

__all__ = ["ObjectiveWeights", "resolve_objective_weights"]


class ObjectiveWeights:
    """Validated weights, objective name -> weight (finite, not all zero).

    Raises:
        ConfigError: for an empty mapping, a name that is not a non-empty string, a weight
            that is not a finite number, or weights that are all zero.
    """

    __slots__ = ("_weights",)

    def __init__(self, weights: Mapping[str, float]) -> None:
        self._weights = _checked(weights)

    @property
    def weights(self) -> dict[str, float]:
        """The weights, sorted by objective name."""
        return dict(self._weights)

    def value(self, objectives: Mapping[str, float] | None) -> float:
        """The weighted sum of one example's objectives (a missing objective counts 0.0)."""
        if not objectives:
            return 0.0
        return weighted_total(
            (weight, objectives.get(name, 0.0)) for name, weight in self._weights.items()
        )

    def values(
        self, objectives: Sequence[Mapping[str, float] | None] | None, size: int
    ) -> list[float]:
        """The weighted value of each of ``size`` examples (all 0.0 without objectives)."""
        if objectives is None:
            return [0.0] * size
        return [self.value(example) for example in objectives]

    def check_seed(self, evaluations: Iterable[EvaluationRecord]) -> None:
        """Check that the seed's validation reports every weighted objective.

        Args:
            evaluations: the seed's validation records (examples that failed are skipped).

        Raises:
            ConfigError: a weighted objective is missing on an example that did not fail.
        """
        missing: dict[str, list[int]] = {}
        returned: set[str] = set()
        checked = 0
        for record in evaluations:
            failed = set(record.failed_examples)
            size = len(record.example_ids)
            objectives: Sequence[Mapping[str, float]] = record.objective_scores or [{}] * size
            for example_id, reported in zip(record.example_ids, objectives, strict=True):
                if example_id in failed:
                    continue
                checked += 1
                returned.update(reported)
                for name in self._weights:
                    if name not in reported:
                        missing.setdefault(name, []).append(example_id)
        if not missing:
            return
        names = ", ".join(
            f"{name!r} (missing on {len(ids)} of {checked}, e.g. example {ids[0]})"
            for name, ids in sorted(missing.items())
        )
        reported_names = sorted(returned) or "none: EvaluationBatch.objective_scores was None"
        raise ConfigError(
            f"objective_weights names objectives the adapter does not return on the seed's "
            f"validation examples: {names}; the objectives it returns: {reported_names}. Fix "
            "objective_weights (or the adapter's objective_scores); with a run_dir or storage, "
            "run again with fork=True or another run_dir, as this run's settings are recorded"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectiveWeights) and other._weights == self._weights

    def __hash__(self) -> int:
        return hash(tuple(self._weights.items()))

    def __repr__(self) -> str:
        return f"ObjectiveWeights({self._weights!r})"


def resolve_objective_weights(value: object) -> ObjectiveWeights | None:
    """``None`` (plain scores), or validated weights from a mapping.

    Raises:
        ConfigError: for anything else, or for invalid weights.
    """
    if value is None or isinstance(value, ObjectiveWeights):
        return value
    if isinstance(value, Mapping):
        return ObjectiveWeights(value)
    raise ConfigError(
        "objective_weights must be a dict objective name -> weight, for example "
        f'{{"accuracy": 1.0, "brevity": 0.2}}, or None; got {type(value).__name__}'
    )


def _checked(weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise ConfigError(
            "objective_weights must name at least one objective, for example "
            '{"accuracy": 1.0, "brevity": 0.2}; pass None to use the plain scores'
        )
    checked: dict[str, float] = {}
    for name, weight in sorted(weights.items(), key=lambda item: str(item[0])):
        if not isinstance(name, str) or not name:
            raise ConfigError(f"objective_weights keys must be objective names, got {name!r}")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ConfigError(
                f"objective_weights[{name!r}] must be a number, got {type(weight).__name__}"
            )
        if not math.isfinite(weight):
            raise ConfigError(f"objective_weights[{name!r}] must be finite, got {weight!r}")
        checked[name] = float(weight)
    if all(weight == 0.0 for weight in checked.values()):
        raise ConfigError("objective_weights are all zero; give at least one non-zero weight")
    return checked

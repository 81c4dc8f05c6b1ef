"""Which validation examples an accepted child is evaluated on.

A policy is any object with ``examples_to_evaluate(state, content_hash) -> ids``. The
engine evaluates those (skipping ones already known) and asks again until the policy returns
nothing; then, if the policy also has ``admits(state, content_hash) -> (bool, reason)``, it
asks whether the child joins the pool.

- ``"full_eval"`` (default): the whole validation set at once, as in the GEPA paper.
- ``"incremental"`` (:class:`IncrementalEvaluation`): a child is first scored on a sample
  of the validation set and evaluated further, a step at a time, only while it can still
  reach the Pareto front; a child stopped early is rejected, so every pool member is scored
  on the whole validation set and the best is never chosen on less evidence than it reports.
- ``"incremental_mean"``: the same, but a child goes on only while its mean is at least the
  best candidate's on the same examples (being best on one example is not enough): fewer
  validation calls per weaker child.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.state import RunState
from gepetto.strategies.gepa_objects import wrap_gepa_object
from gepetto.totals import total

__all__ = [
    "AdmissionPolicy",
    "EvaluationPolicy",
    "FullEvaluation",
    "IncrementalEvaluation",
    "resolve_evaluation_policy",
]


@runtime_checkable
class EvaluationPolicy(Protocol):
    """Chooses validation examples for a candidate.

    Contract: return ids in ``range(state.valset_size)`` not yet evaluated for
    ``content_hash``; an empty list means the candidate's validation is complete.
    """

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]: ...


@runtime_checkable
class AdmissionPolicy(Protocol):
    """The optional capability of a policy that may refuse a child after its evaluation."""

    def admits(self, state: RunState, content_hash: str) -> tuple[bool, str]: ...


class FullEvaluation:
    """Every validation example."""

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]:
        known = state.known_val_scores(content_hash)
        return [i for i in range(state.valset_size) if i not in known]


@dataclass
class IncrementalEvaluation:
    """Evaluate a child on ``initial`` validation examples, then ``step`` more at a time while
    it can still reach the Pareto front: it beats the front's best score on some example it
    was scored on, or its mean there is at least the best candidate's on the same examples.

    With ``rule="mean"`` only the second condition counts: a child that is best on some
    example but below the best candidate's mean is stopped. Under either rule a child that
    went on until its last step has been scored on everything and joins the pool, even if
    that last step leaves its mean below the best's.

    Examples are visited in one fixed shuffled order (``seed``), so children are compared on
    the same examples first. The seed candidate is always scored on everything.
    """

    initial: int = 10
    step: int = 10
    seed: int = 0
    rule: Literal["front", "mean"] = "front"
    _order: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial < 1 or self.step < 1:
            raise ConfigError("incremental evaluation needs initial >= 1 and step >= 1")
        if self.rule not in ("front", "mean"):
            raise ConfigError(
                f"incremental evaluation rule must be 'front' or 'mean', got {self.rule!r}"
            )

    def order(self, size: int) -> list[int]:
        """The visiting order of ``size`` validation examples."""
        if len(self._order) != size:
            self._order = list(range(size))
            random.Random(self.seed).shuffle(self._order)
        return self._order

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]:
        known = state.known_val_scores(content_hash)
        remaining = [i for i in self.order(state.valset_size) if i not in known]
        if not remaining or not state.candidates or state.id_of(content_hash) is not None:
            return remaining  # the seed (and any pool member) is scored on everything
        if not known:
            return remaining[: self.initial]
        going_on = keeps_up_with_best if self.rule == "mean" else can_reach_front
        if not going_on(state, known):
            return []
        return remaining[: self.step]

    def admits(self, state: RunState, content_hash: str) -> tuple[bool, str]:
        known = len(state.known_val_scores(content_hash))
        if known >= state.valset_size:
            return True, ""
        why = "a lower mean than the best candidate on the same examples"
        if self.rule == "front":
            why = f"it cannot reach the Pareto front (better nowhere, and {why})"
        return False, f"stopped after {known} of {state.valset_size} validation examples: {why}"


def can_reach_front(state: RunState, scores: Mapping[int, float]) -> bool:
    """Whether a child with these validation ``scores`` may still join the Pareto front."""
    if any(score > state.front_best_score(example) for example, score in scores.items()):
        return True
    return keeps_up_with_best(state, scores)


def keeps_up_with_best(state: RunState, scores: Mapping[int, float]) -> bool:
    """Whether these validation ``scores`` sum to at least the best candidate's on the same
    examples."""
    best = state.val_scores(state.best_id)
    shared = [example for example in scores if example in best]
    return total(scores[e] for e in shared) >= total(best[e] for e in shared)


def resolve_evaluation_policy(value: object) -> EvaluationPolicy:
    """A policy from its name (``"full_eval"``, ``"incremental"``, ``"incremental_mean"``),
    ``None`` (full) or an object.

    Raises:
        ConfigError: for an unknown name or an object without ``examples_to_evaluate``.
    """
    if value is None or value == "full_eval":
        return FullEvaluation()
    if value == "incremental":
        return IncrementalEvaluation()
    if value == "incremental_mean":
        return IncrementalEvaluation(rule="mean")
    if isinstance(value, str):
        raise ConfigError(
            f"unknown val_evaluation_policy {value!r}; use 'full_eval', 'incremental', "
            "'incremental_mean' or an object with examples_to_evaluate(state, content_hash)"
        )
    if isinstance(value, EvaluationPolicy):
        return value
    wrapped = wrap_gepa_object("val_evaluation_policy", value)
    if isinstance(wrapped, EvaluationPolicy):
        return wrapped
    raise ConfigError(
        "val_evaluation_policy must be 'full_eval', an EvaluationPolicy or gepa's policy "
        f"(get_eval_batch(loader, state, target_program_idx)), got {type(value).__name__}"
    )

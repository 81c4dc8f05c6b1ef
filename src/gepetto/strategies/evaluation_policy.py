"""Which validation examples an accepted child is evaluated on.

A policy is any object with ``examples_to_evaluate(state, content_hash) -> ids``. The
engine evaluates those (skipping ones already known), admits the child to the pool, and
asks again until the policy returns nothing. The default ``"full_eval"`` policy returns the
whole validation set at once, as in the GEPA paper. (An incremental policy comes later.)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.state import RunState

__all__ = ["EvaluationPolicy", "FullEvaluation", "resolve_evaluation_policy"]


@runtime_checkable
class EvaluationPolicy(Protocol):
    """Chooses validation examples for a candidate.

    Contract: return ids in ``range(state.valset_size)`` not yet evaluated for
    ``content_hash``; an empty list means the candidate's validation is complete.
    """

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]: ...


class FullEvaluation:
    """Every validation example."""

    def examples_to_evaluate(self, state: RunState, content_hash: str) -> list[int]:
        known = state.known_val_scores(content_hash)
        return [i for i in range(state.valset_size) if i not in known]


def resolve_evaluation_policy(value: str | EvaluationPolicy | None) -> EvaluationPolicy:
    """A policy from its name (``"full_eval"``), ``None`` (full) or an object.

    Raises:
        ConfigError: for an unknown name or an object without ``examples_to_evaluate``.
    """
    if value is None or value == "full_eval":
        return FullEvaluation()
    if isinstance(value, str):
        raise ConfigError(
            f"unknown val_evaluation_policy {value!r}; use 'full_eval' or an object with "
            "examples_to_evaluate(state, content_hash)"
        )
    if isinstance(value, EvaluationPolicy):
        return value
    raise ConfigError(
        "val_evaluation_policy must be 'full_eval' or an EvaluationPolicy, "
        f"got {type(value).__name__}"
    )

"""Which components of the parent a reflection step rewrites.

A component selector is any object with ``select(state, parent_id, components) -> names``.

- ``"round_robin"`` (default): one component per step, cycling through the components; each
  candidate keeps its own position, and a child starts where its parent was.
- ``"all"``: every component at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.state import RunState
from gepetto.strategies.gepa_objects import wrap_gepa_object

__all__ = [
    "AllComponents",
    "ComponentSelector",
    "ReadsParentMinibatch",
    "RoundRobinComponents",
    "resolve_component_selector",
    "select_components",
]


@runtime_checkable
class ComponentSelector(Protocol):
    """Chooses the components to rewrite.

    Contract: return a non-empty list of names taken from ``components``; be a pure function
    of ``state`` (positions are derived from the records, so resume is exact).
    """

    def select(self, state: RunState, parent_id: int, components: Sequence[str]) -> list[str]: ...


@runtime_checkable
class ReadsParentMinibatch(Protocol):
    """The optional capability of a selector that reads the parent's minibatch traces and
    scores (gepa's ``module_selector`` callables); the engine then calls this instead."""

    def select_after_minibatch(
        self,
        state: RunState,
        parent_id: int,
        components: Sequence[str],
        trajectories: Sequence[Any] | None,
        scores: Sequence[float],
    ) -> list[str]: ...


def select_components(
    selector: ComponentSelector,
    state: RunState,
    parent_id: int,
    components: Sequence[str],
    trajectories: Sequence[Any] | None,
    scores: Sequence[float],
) -> list[str]:
    """The components ``selector`` chooses (given the parent's minibatch if it reads it)."""
    if isinstance(selector, ReadsParentMinibatch):
        return selector.select_after_minibatch(state, parent_id, components, trajectories, scores)
    return selector.select(state, parent_id, components)


class RoundRobinComponents:
    """One component per step, in order, per candidate."""

    def select(self, state: RunState, parent_id: int, components: Sequence[str]) -> list[str]:
        parent = state.candidates[parent_id]
        position = parent.component_cursor + state.reflections_on(parent_id)
        return [components[position % len(components)]]


class AllComponents:
    """Every component in every step."""

    def select(self, state: RunState, parent_id: int, components: Sequence[str]) -> list[str]:
        return list(components)


def resolve_component_selector(value: object) -> ComponentSelector:
    """A component selector from its name (``module_selector``) or an object.

    Raises:
        ConfigError: for an unknown name or an object without ``select``.
    """
    if isinstance(value, str):
        if value == "round_robin":
            return RoundRobinComponents()
        if value == "all":
            return AllComponents()
        raise ConfigError(
            f"unknown module_selector {value!r}; use 'round_robin', 'all' or an object with "
            "select(state, parent_id, components)"
        )
    if isinstance(value, ComponentSelector):
        return value
    wrapped = wrap_gepa_object("module_selector", value)
    if isinstance(wrapped, ComponentSelector):
        return wrapped
    raise ConfigError(
        "module_selector must be a name, a ComponentSelector or gepa's callable selector "
        f"(state, trajectories, subsample_scores, candidate_idx, candidate), got "
        f"{type(value).__name__}"
    )

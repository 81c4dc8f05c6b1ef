"""Which components of the parent a reflection step rewrites.

A component selector is any object with ``select(state, parent_id, components) -> names``.

- ``"round_robin"`` (default): one component per step, cycling through the components; each
  candidate keeps its own position, and a child starts where its parent was.
- ``"all"``: every component at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from gepetto.errors import ConfigError
from gepetto.state import RunState
from gepetto.strategies.gepa_objects import gepa_object_hint

__all__ = [
    "AllComponents",
    "ComponentSelector",
    "RoundRobinComponents",
    "resolve_component_selector",
]


@runtime_checkable
class ComponentSelector(Protocol):
    """Chooses the components to rewrite.

    Contract: return a non-empty list of names taken from ``components``; be a pure function
    of ``state`` (positions are derived from the records, so resume is exact).
    """

    def select(self, state: RunState, parent_id: int, components: Sequence[str]) -> list[str]: ...


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


def resolve_component_selector(value: str | ComponentSelector) -> ComponentSelector:
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
    raise ConfigError(
        gepa_object_hint("module_selector", value)
        or (f"module_selector must be a name or a ComponentSelector, got {type(value).__name__}")
    )

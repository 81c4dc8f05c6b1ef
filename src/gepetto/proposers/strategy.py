"""gepa's ``reflection_strategy``: a ``ReflectionLM`` object that proposes the new texts.

gepa 0.1.4 (``gepa.proposer.reflective_mutation.reflection_lm``) lets a strategy object
replace its stateless reflection: ``reflect(candidate, reflective_dataset,
components_to_update)`` returns ``(proposal, next_strategy)``, where ``proposal.new_texts``
holds the texts and ``next_strategy`` is asked next time (a strategy may carry a
conversation). gepetto runs it in the place of ``custom_candidate_proposer``: one
``reflect`` call per proposal, the returned strategy kept for the next call.

Example:
    >>> class Echo:
    ...     def reflect(self, candidate, dataset, components):
    ...         return {c: candidate[c] + "!" for c in components}, self
    >>> StrategyProposer(Echo())({"p": "Hi"}, {"p": []}, ["p"])
    {'p': 'Hi!'}
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from gepetto.errors import AdapterContractError, ConfigError

__all__ = ["ReflectsTexts", "StrategyProposer", "check_reflection_strategy"]


@runtime_checkable
class ReflectsTexts(Protocol):
    """gepa's ``ReflectionLM`` protocol (the part gepetto calls)."""

    def reflect(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Any],
        components_to_update: list[str],
    ) -> Any: ...


def check_reflection_strategy(value: object) -> None:
    """``None`` or an object with gepa's ``reflect`` method.

    Raises:
        ConfigError: otherwise.
    """
    if value is not None and not isinstance(value, ReflectsTexts):
        raise ConfigError(
            "reflection_strategy must be None or a gepa ReflectionLM: an object with "
            "reflect(candidate, reflective_dataset, components_to_update) -> (proposal, "
            f"next_strategy); got {type(value).__name__}"
        )


class StrategyProposer:
    """A ``custom_candidate_proposer`` that asks a gepa ``ReflectionLM`` for the texts.

    The strategy returned by each ``reflect`` replaces the current one (under a lock, so
    parallel proposals each see a whole step). It lives in memory only: a resumed run starts
    again from the strategy it is given.
    """

    def __init__(self, strategy: ReflectsTexts) -> None:
        self.strategy = strategy
        self._lock = threading.Lock()

    def __call__(
        self,
        candidate: dict[str, str],
        reflective_dataset: Mapping[str, Any],
        components_to_update: list[str],
    ) -> dict[str, str]:
        with self._lock:
            reply = self.strategy.reflect(candidate, reflective_dataset, components_to_update)
            if not (isinstance(reply, tuple) and len(reply) == 2):
                raise AdapterContractError(
                    f"reflection_strategy {type(self.strategy).__name__}.reflect returned "
                    f"{type(reply).__name__}; it must return (proposal, next_strategy)"
                )
            proposal, following = reply
            if following is not None:
                self.strategy = following
        texts = proposal if isinstance(proposal, Mapping) else getattr(proposal, "new_texts", None)
        if not isinstance(texts, Mapping):
            raise AdapterContractError(
                f"reflection_strategy {type(self.strategy).__name__}.reflect returned a "
                f"proposal without new_texts ({type(proposal).__name__})"
            )
        return dict(texts)

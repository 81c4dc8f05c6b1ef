"""Evaluations in flight, shared between the proposals that need them; flows that wait.

With several proposals in flight (``parallel_proposals > 1``), two of them may need the same
(candidate, example, split) evaluation at once: the same parent on overlapping minibatches,
say. The evaluation cache only knows results once an evaluation has finished, so without
this module both would pay for it. :class:`InFlightEvaluations` remembers which evaluations
a flow has dispatched and not yet been told; another flow that needs one of them yields an
:class:`AwaitEvaluations` instead of a task, and the optimizer parks it until the owner has
been told (it is never handed to a driver). The owner pays for the evaluation (it reserved
the calls); the waiters are charged nothing and get the very same outcome, a failed example
included.

A :class:`Wait` is what a flow yields to be parked instead of a task: the optimizer resumes
it (sending ``None``) once its ``ready`` holds, checking after each result told. One proposal
in flight never waits: there is no other flow to wait for, so a run with
``parallel_proposals=1`` is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from gepetto.engine.scored import KnownResult
from gepetto.evaluation import EvaluationFailure, ScoredBatch
from gepetto.types import Split

__all__ = [
    "AwaitCondition",
    "AwaitEvaluations",
    "InFlightEvaluations",
    "PendingExample",
    "SharedResult",
    "Wait",
]

SharedResult = tuple[KnownResult, bool]
"""An example's (output, score, trajectory, objectives) and whether its evaluation failed."""

_LOST = EvaluationFailure(
    "EvaluationLost", "the evaluation this proposal waited for ended without a result"
)


@dataclass(slots=True, eq=False)
class PendingExample:
    """One (candidate, example, split) evaluation dispatched by some flow; its outcome once
    the flow has been told."""

    result: SharedResult | None = None
    done: bool = False

    def outcome(self) -> SharedResult:
        """The shared outcome (an evaluation that ended without a result counts as failed)."""
        if self.result is None:
            return (_LOST, 0.0, _LOST, None), True
        return self.result


class Wait:
    """Yielded by a flow instead of a task (never handed to a driver): park me until
    :attr:`ready`, then resume me with ``None``."""

    __slots__ = ()

    @property
    def ready(self) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class AwaitEvaluations(Wait):
    """Wait until every one of these evaluations in flight elsewhere is done."""

    pending: tuple[PendingExample, ...]

    @property
    def ready(self) -> bool:
        return all(example.done for example in self.pending)


class InFlightEvaluations:
    """The evaluations dispatched and not yet told, by (candidate hash, split, example)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, Split, int], PendingExample] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def find(
        self, content_hash: str, split: Split, example_ids: Iterable[int]
    ) -> dict[int, PendingExample]:
        """The examples among ``example_ids`` that some flow is evaluating now."""
        if not self._pending:
            return {}
        found = {}
        for example_id in example_ids:
            pending = self._pending.get((content_hash, split, example_id))
            if pending is not None:
                found[example_id] = pending
        return found

    def claim(
        self, content_hash: str, split: Split, example_ids: Iterable[int]
    ) -> dict[int, PendingExample]:
        """Register evaluations the calling flow is about to dispatch (none is in flight)."""
        claimed = {}
        for example_id in example_ids:
            key = (content_hash, split, example_id)
            assert key not in self._pending, f"{key} is already in flight"
            claimed[example_id] = self._pending[key] = PendingExample()
        return claimed

    def settle(
        self,
        content_hash: str,
        split: Split,
        claimed: dict[int, PendingExample],
        scored: ScoredBatch | None,
        traces: bool,
    ) -> None:
        """The owner was told (``scored``), or will never be (``None``): publish the outcome
        to the waiters and forget the evaluations.

        ``claimed`` is in the order of the examples of ``scored``.
        """
        objectives = scored.batch.objective_scores if scored is not None else None
        for position, (example_id, pending) in enumerate(claimed.items()):
            key = (content_hash, split, example_id)
            if self._pending.get(key) is pending:  # (already forgotten if the run aborted)
                del self._pending[key]
            if scored is not None:
                batch = scored.batch
                trajectory = batch.trajectories[position] if traces else None  # type: ignore[index]
                pending.result = (
                    (
                        batch.outputs[position],
                        batch.scores[position],
                        trajectory,
                        objectives[position] if objectives is not None else None,
                    ),
                    scored.failed[position],
                )
            pending.done = True

    def clear(self) -> None:
        for pending in self._pending.values():
            pending.done = True
        self._pending.clear()


@dataclass(frozen=True, slots=True)
class AwaitCondition(Wait):
    """Wait until ``condition()`` holds (it is checked after each result told)."""

    condition: Callable[[], bool]

    @property
    def ready(self) -> bool:
        return self.condition()

"""Every score a run has seen on its training examples, for samplers that draw from it.

Filled from each training evaluation as it is recorded, and from the journal's training
evaluations when a run resumes, so a resumed run knows what the interrupted one knew.
"""

from __future__ import annotations

from collections.abc import Iterable

from gepetto.strategies.batch_sampling import TrainKnowledge

__all__ = ["TrainScores"]


class TrainScores:
    """Training scores by example and candidate (an adapter failure is not a score)."""

    def __init__(self) -> None:
        self._by_example: dict[int, dict[str, float]] = {}
        self._by_candidate: dict[str, dict[int, float]] = {}

    def add(
        self,
        content_hash: str,
        example_ids: Iterable[int],
        scores: Iterable[float],
        failed_examples: Iterable[int] = (),
    ) -> None:
        """Record a candidate's scores (a later score of the same pair replaces the
        earlier one); ``failed_examples`` are skipped."""
        failed = set(failed_examples)
        mine = self._by_candidate.setdefault(content_hash, {})
        for example_id, score in zip(example_ids, scores, strict=True):
            if example_id not in failed:
                mine[example_id] = score
                self._by_example.setdefault(example_id, {})[content_hash] = score

    def knowledge(self, parent_hash: str) -> TrainKnowledge:
        """What a sampler may read when ``parent_hash`` is the parent (views, not copies:
        valid until the next :meth:`add`)."""
        return TrainKnowledge(self._by_candidate.get(parent_hash, {}), self._by_example)

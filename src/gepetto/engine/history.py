"""Reflection history: a parent's earlier failures, added to its reflection for free.

With ``reflection_history=N`` a reflection sees, after the parent's current minibatch, up to
N examples the same parent was already evaluated on (with traces) and did not solve. They
come from the optimizer's train-evaluation cache, so they cost no metric call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from gepetto.engine.scored import KnownResult

__all__ = ["earlier_failures"]


def earlier_failures(
    cache: Mapping[tuple[str, int], KnownResult],
    content_hash: str,
    exclude: Collection[int],
    perfect_score: float,
    limit: int,
) -> list[tuple[int, KnownResult]]:
    """Up to ``limit`` cached train results of the candidate ``content_hash`` that failed.

    Contract: an entry qualifies when its example id is not in ``exclude`` (the current
    minibatch) and its score is below ``perfect_score``. The entries are ordered lowest score
    first, then lowest example id (deterministic for a given cache), and each example appears
    at most once. Returns ``(example_id, (output, score, trajectory, objectives))`` pairs;
    an empty list when ``limit`` is 0 or nothing qualifies.
    """
    if limit <= 0:
        return []
    found = [
        (known[1], example_id, known)
        for (candidate, example_id), known in cache.items()
        if candidate == content_hash and example_id not in exclude and known[1] < perfect_score
    ]
    found.sort(key=lambda entry: (entry[0], entry[1]))
    return [(example_id, known) for _, example_id, known in found[:limit]]

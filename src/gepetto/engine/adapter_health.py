"""Watching the adapter's evaluations for a run that cannot get anywhere.

An adapter should score a failing example instead of raising; gepetto scores an example
whose evaluation raised 0 and goes on, so one bad example never crashes a run. But an
adapter whose *every* call raises (a wrong API key inside the user's system, a server that
is down, a bug) would burn the whole budget on zeros. :class:`AdapterHealth` stops such a
run early, with a stop reason that names the exception:

- when every example of the seed's validation raised (nothing can be learnt from a seed
  that was never really scored), right after that validation;
- when the evaluations since the last example that did not raise (counting only examples
  evaluated now, not cache hits; a single evaluation where some example worked resets the
  count) have covered :data:`ADAPTER_FAILURE_EXAMPLES` distinct examples of one split (or
  every example of a smaller split), on a candidate of the pool (one that worked before) or
  on at least two candidates. One example that always raises never stops a run, nor do a
  few, nor one new candidate whose texts crash the adapter; a revoked key or a server that
  went down does, within a few iterations.

It also warns, once per run, about a score above ``perfect_score``: such a score is kept as
it is, but counts as solved (a parent perfect on its minibatch is skipped with
``skip_perfect_score``, the example is not shown to reflection as a failure) and turns early
rejection off, so a metric whose best score is above ``perfect_score`` is almost always a
configuration mistake.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from gepetto.evaluation import EvaluationFailure, ScoredBatch
from gepetto.records import EvaluationRecord
from gepetto.types import ExampleId, Split

__all__ = ["ADAPTER_FAILURE_EXAMPLES", "AdapterHealth"]

logger = logging.getLogger("gepetto")

ADAPTER_FAILURE_EXAMPLES = 10
"""Distinct examples of one split that raised in a row before the run stops (fewer when the
split is smaller: all of them)."""

_MESSAGE_LIMIT = 300


class AdapterHealth:
    """Follows the examples that raised in a row; says when the run should stop.

    Args:
        split_sizes: the number of examples of each split the search evaluates.
        limit: distinct examples of one split that must have raised in a row.
    """

    def __init__(
        self, split_sizes: Mapping[str, int], limit: int = ADAPTER_FAILURE_EXAMPLES
    ) -> None:
        self._needed = {split: min(limit, size) for split, size in split_sizes.items()}
        self._failing: dict[str, set[ExampleId]] = {split: set() for split in split_sizes}
        self._failing_candidates: set[str] = set()
        self._pool_member_failed = False
        self._evaluations_in_a_row = 0
        self._last_failure = "no exception kept"
        self._warned_above_perfect = False
        self.broken = False
        """Whether a stop reason was given: the run should not pay for anything more (not
        even the held-out test set, outside the budget)."""

    def observe(
        self,
        scored: ScoredBatch,
        split: Split,
        example_ids: Sequence[ExampleId],
        candidate_hash: str,
        *,
        in_pool: bool = False,
        seed_validation: bool = False,
    ) -> str | None:
        """Take one evaluation's outcome; the stop reason once the adapter looks broken (not
        during the seed's validation, which :meth:`seed_verdict` judges once it is over).

        Args:
            scored: the evaluation's outcome.
            split: its split.
            example_ids: the examples it evaluated.
            candidate_hash: the candidate evaluated.
            in_pool: the candidate is a member of the pool (validated before: it worked).
            seed_validation: the evaluation is (part of) the seed's validation.
        """
        if split not in self._failing or not scored.failed:
            return None
        if not all(scored.failed):
            for failing in self._failing.values():
                failing.clear()
            self._failing_candidates.clear()
            self._pool_member_failed = False
            self._evaluations_in_a_row = 0
            return None
        self._last_failure = _first_failure(scored) or self._last_failure
        self._evaluations_in_a_row += 1
        failing = self._failing[split]
        failing.update(example_ids)
        self._failing_candidates.add(candidate_hash)
        self._pool_member_failed |= in_pool
        candidates = len(self._failing_candidates)
        if seed_validation or len(failing) < self._needed[split]:
            return None
        if candidates < 2 and not self._pool_member_failed:
            return None  # one new candidate whose texts break the adapter: not the adapter
        self.broken = True
        evaluations = self._evaluations_in_a_row
        return (
            f"the adapter raised on every one of the last {len(failing)} {split} examples it "
            f"evaluated ({evaluations} evaluations in a row; last: "
            f"{self._last_failure}); fix the adapter or what it calls, then run again (with a "
            "run_dir, the run resumes where it stopped)"
        )

    def seed_verdict(self, evaluations: Iterable[EvaluationRecord], seed_hash: str) -> str | None:
        """The stop reason when every example of the seed's validation raised, else ``None``.

        Args:
            evaluations: the run's evaluation records (those of the seed's validation count).
            seed_hash: the seed's content hash.
        """
        evaluated = failed = 0
        for record in evaluations:
            if record.candidate_hash == seed_hash and record.purpose == "seed_validation":
                evaluated += len(record.example_ids)
                failed += record.failures
        if evaluated == 0 or failed < evaluated:
            return None
        self.broken = True
        return (
            f"the adapter raised on every example of the seed's validation ({failed} of "
            f"{evaluated}; {self._last_failure}); nothing can be learnt from a seed that was "
            "never scored. Fix the adapter or what it calls (an API key, a server), then run "
            "again; an adapter should score a failing example (for example 0.0) rather than "
            "raise"
        )

    def check_perfect_score(
        self,
        scores: Iterable[float],
        example_ids: Iterable[ExampleId],
        split: Split,
        perfect_score: float,
    ) -> None:
        """Warn, once per run, about the first score above ``perfect_score``."""
        if self._warned_above_perfect or split == "test":
            return
        for example_id, score in zip(example_ids, scores, strict=True):
            if score > perfect_score:
                self._warned_above_perfect = True
                logger.warning(
                    "%s example %d scored %r, above perfect_score=%r: it counts as solved (a "
                    "parent perfect on its minibatch is skipped with skip_perfect_score, the "
                    "example is not shown to reflection as a failure) and early rejection is "
                    "off from now on. If your metric's best score is higher, pass "
                    "perfect_score=<that score>",
                    split,
                    example_id,
                    score,
                    perfect_score,
                )
                return


def _first_failure(scored: ScoredBatch) -> str | None:
    for output, failed in zip(scored.batch.outputs, scored.failed, strict=True):
        if failed and isinstance(output, EvaluationFailure):
            message = output.message
            if len(message) > _MESSAGE_LIMIT:
                message = message[:_MESSAGE_LIMIT] + "..."
            return f"{output.error_type}: {message}"
    return None

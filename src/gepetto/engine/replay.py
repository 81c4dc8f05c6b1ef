"""Resuming a run from its journal: rebuild the state, find the work that was in flight.

:func:`replay_journal` feeds the journaled records into a fresh
:class:`~gepetto.state.RunState` and returns a :class:`JournalReplay`: the iterations that
had started but not ended (they are redone, with the same parent and minibatch), and the
results those iterations had already obtained (evaluations and reflections), which the redo
takes instead of paying for them again.

:func:`restore` does it for a run's :class:`~gepetto.engine.context.RunContext` (the
optimizer calls it once the journal is open): it carries the counters that stop a run or
schedule merges across the resume, keeps the iterations left unfinished for the flows to
redo, checks that the batch sampler gives the journaled minibatches again, and refills the
evaluation cache from the traced evaluations.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gepetto.engine.gepa_access import restore_gepa_objects
from gepetto.errors import ConfigError
from gepetto.image import restore_images
from gepetto.records import (
    DecisionRecord,
    EvaluationRecord,
    IterationRecord,
    Record,
    ReflectionRecord,
)
from gepetto.state import RunState
from gepetto.storage.base import StorageError
from gepetto.strategies.batch_sampling import SamplesFromKnowledge, sample_minibatch

if TYPE_CHECKING:
    from gepetto.engine.context import RunContext

__all__ = ["EvaluationKey", "JournalReplay", "minibatch_stream", "replay_journal", "restore"]

EvaluationKey = tuple[int, str, str, tuple[int, ...]]
"""A journaled evaluation's iteration, purpose, candidate hash and example ids."""


@dataclass
class JournalReplay:
    """What a resumed run takes from its journal instead of doing again.

    Attributes:
        unfinished: iterations that started and have no decision, in order.
        next_iteration: the number of the first iteration never started.
        started: every started iteration, in order (to replay the minibatch sampler).
        reflections: reflection results of unfinished iterations, by iteration and task
            (the proposal's position in an iteration that makes several, else ``None``).
        evaluations: evaluations of unfinished iterations, by (iteration, purpose, hash,
            example ids).
    """

    unfinished: list[IterationRecord] = field(default_factory=list)
    next_iteration: int = 0
    started: list[IterationRecord] = field(default_factory=list)
    reflections: dict[tuple[int, int | None], ReflectionRecord] = field(default_factory=dict)
    task_decisions: dict[tuple[int, int], DecisionRecord] = field(default_factory=dict)
    """Decisions on single proposals of unfinished iterations that make several, by
    iteration and task."""
    evaluations: dict[EvaluationKey, EvaluationRecord] = field(default_factory=dict)
    stalled_tail: int = 0
    """Decided iterations at the end of the journal that evaluated nothing new."""
    spent_unfinished: dict[int, int] = field(default_factory=dict)
    """Metric calls the journal shows each unfinished iteration paid before the interruption
    (a redo counts them as its own, so it is not taken for a stalled iteration)."""
    failing_reflections_tail: int = 0
    """Reflections at the end of the journal whose LM calls all failed."""
    merge_events: list[str] = field(default_factory=list)
    """What the merge schedule saw, in order: ``"child"`` (a reflection child accepted),
    ``"tried"`` (a merge iteration started), ``"merged"`` (a merge accepted)."""
    tried_merges: set[tuple[int, int, int]] = field(default_factory=set)

    def evaluation(
        self,
        iteration: int,
        purpose: str,
        content_hash: str,
        example_ids: tuple[int, ...],
        needs_traces: bool,
    ) -> EvaluationRecord | None:
        """Take a journaled evaluation of an unfinished iteration, if it is usable.

        Only an evaluation of exactly ``example_ids`` is taken (a step may evaluate the same
        texts for the same purpose in parts: a child's minibatch with ``early_reject``). An
        evaluation that needed traces is usable only if its trajectories were journaled
        (they were plain JSON); otherwise the redo evaluates again.
        """
        record = self.evaluations.pop((iteration, purpose, content_hash, example_ids), None)
        if record is None or (needs_traces and record.trajectories is None):
            return None
        return record


def replay_journal(records: Iterable[Record], state: RunState) -> JournalReplay:
    """Append ``records`` to ``state`` and work out what was in flight."""
    started: dict[int, IterationRecord] = {}
    decided: set[int] = set()
    spent: dict[int, int] = {}
    stalled_tail = failing_tail = 0
    merge_events: list[str] = []
    tried_merges: set[tuple[int, int, int]] = set()
    reflections: dict[tuple[int, int | None], ReflectionRecord] = {}
    task_decisions: dict[tuple[int, int], DecisionRecord] = {}
    evaluations: dict[EvaluationKey, EvaluationRecord] = {}
    for record in records:
        state.append(record)
        if isinstance(record, IterationRecord):
            started[record.iteration] = record
            if record.operation == "merge":
                merge_events.append("tried")
            if record.operation == "merge" and len(record.merge_parents) == 2:
                i, j = record.merge_parents
                tried_merges.add(
                    (i, j, record.merge_ancestor if record.merge_ancestor is not None else -1)
                )
        elif isinstance(record, DecisionRecord):
            origin = started.get(record.iteration)
            if record.outcome == "accepted" and (
                record.task is not None
                or origin is None
                or (origin.operation == "reflection" and not origin.tasks)
            ):
                merge_events.append("child")  # each accepted proposal, not its iteration's end
            elif (
                record.outcome == "accepted" and origin is not None and origin.operation == "merge"
            ):
                merge_events.append("merged")
            if record.task is not None:
                task_decisions[(record.iteration, record.task)] = record
                continue
            decided.add(record.iteration)
            stalled_tail = 0 if spent.get(record.iteration) else stalled_tail + 1
        elif isinstance(record, ReflectionRecord):
            reflections[(record.iteration, record.task)] = record
            failing_tail = failing_tail + 1 if _all_lm_failed(record) else 0
        elif isinstance(record, EvaluationRecord) and record.iteration >= 0:
            key = (record.iteration, record.purpose, record.candidate_hash, record.example_ids)
            evaluations[key] = record
            spent[record.iteration] = spent.get(record.iteration, 0) + record.metric_calls
    unfinished = [started[i] for i in sorted(started) if i not in decided]
    open_iterations = {r.iteration for r in unfinished}
    return JournalReplay(
        unfinished=unfinished,
        next_iteration=max(started, default=-1) + 1,
        started=[started[i] for i in sorted(started)],
        reflections={k: r for k, r in reflections.items() if k[0] in open_iterations},
        task_decisions={k: r for k, r in task_decisions.items() if k[0] in open_iterations},
        evaluations={k: r for k, r in evaluations.items() if k[0] in open_iterations},
        stalled_tail=stalled_tail,
        spent_unfinished={i: spent[i] for i in open_iterations if i in spent},
        failing_reflections_tail=failing_tail,
        merge_events=merge_events,
        tried_merges=tried_merges,
    )


def _all_lm_failed(record: ReflectionRecord) -> bool:
    reasons = list(record.failures.values())
    return (
        not record.proposed
        and bool(reasons)
        and all(reason.startswith("reflection LM failed") for reason in reasons)
    )


def restore(ctx: RunContext, records: list[Record]) -> None:
    """Rebuild a run's state from its journaled records (nothing to do for a new run).

    Raises:
        StorageError: the records contradict each other.
        ConfigError: the batch sampler does not give the journaled minibatches again.
    """
    try:
        replay = replay_journal(records, ctx.state)
    except (ValueError, KeyError, IndexError) as error:
        raise StorageError(
            f"the journal of run {ctx.run_id!r} cannot be replayed ({error}): its records "
            "contradict each other, as when two processes ran the run at once before "
            "gepetto refused that. Move the journal away to start over, or pass fork=True "
            "to start a new run beside it"
        ) from error
    ctx.resumed_records = len(records)
    for record in records:  # what the interrupted run knew of the training examples
        ctx.learn_train_scores(record)
    restore_gepa_objects(ctx, records)
    ctx.seed_admitted = bool(ctx.state.candidates)
    ctx.workers.next_iteration = replay.next_iteration
    # Streaks that stop a run continue across a resume (a stalled run stays stalled).
    ctx.stalled_iterations = replay.stalled_tail
    ctx.reflection_errors = replay.failing_reflections_tail
    ctx.merge_schedule.replay(replay.merge_events)
    ctx.tried_merges = set(replay.tried_merges)
    if ctx.worker is not None:  # redo and replay only this worker's own iterations
        replay.unfinished = [r for r in replay.unfinished if r.worker == ctx.worker]
        replay.started = [r for r in replay.started if r.worker == ctx.worker]
    _check_minibatches(ctx, replay.started)
    if ctx.config.cache_evaluation:
        for record in records:
            if isinstance(record, EvaluationRecord) and record.trajectories is not None:
                _cache_traced(ctx, record)
    ctx.replay = replay


def _check_minibatches(ctx: RunContext, started: list[IterationRecord]) -> None:
    """Put the minibatch sampler where it was, checking it gives the journaled batches (a
    sampler that draws from the run's knowledge keeps no state: nothing to put back)."""
    sampler = ctx.config.batch_sampler
    if isinstance(sampler, SamplesFromKnowledge):
        return
    for iteration in started:
        if iteration.operation != "reflection":
            continue  # merges sample no minibatch
        journaled = [batch for _, batch in iteration.tasks] or [iteration.minibatch]
        for position, expected in enumerate(journaled):
            rng = ctx.rng(iteration.iteration, minibatch_stream(position))
            batch = tuple(sample_minibatch(sampler, iteration.iteration, len(ctx.trainset), rng))
            if batch != expected:
                raise ConfigError(
                    f"cannot resume: the batch sampler gave {batch} for iteration "
                    f"{iteration.iteration}, the journal says {expected}; a sampler "
                    "must be deterministic for a given rng"
                )


def minibatch_stream(position: int) -> str:
    """The random stream of an iteration's ``position``-th minibatch (its first is the
    ``"minibatch"`` stream of a one-proposal iteration)."""
    return "minibatch" if position == 0 else f"minibatch/{position}"


def _cache_traced(ctx: RunContext, record: EvaluationRecord) -> None:
    failed = set(record.failed_examples)
    # Journaled images are Image objects again, as in the run that evaluated them.
    outputs = restore_images(list(record.outputs or [None] * len(record.example_ids)))
    trajectories = restore_images(list(record.trajectories or []))
    objectives = record.objective_scores
    cache = ctx.train_cache.setdefault(record.candidate_hash, {})
    for position, example_id in enumerate(record.example_ids):
        if example_id not in failed:
            cache[example_id] = (
                outputs[position],
                record.scores[position],
                trajectories[position],
                objectives[position] if objectives is not None else None,
            )

"""The steps every flow shares (evaluate, validate, decide, admit), and evaluation results
as they use them.

Each step is a function over the :class:`~gepetto.engine.context.RunContext`; the ones
that may need work done are generators (``yield from evaluate(ctx, ...)``).

- :func:`evaluate` scores texts on examples, the step every flow pays its metric calls
  through: a journaled result on resume, then the cache (train results with traces, known
  validation and test scores), then evaluations another flow has in flight (waited for, not
  paid twice: :class:`~gepetto.engine.context.InFlightEvaluations`), and only then an
  :class:`~gepetto.engine.context.EvaluateTask` for what is left, whose metric calls are
  reserved from the budget first. Every evaluation becomes an
  :class:`~gepetto.records.EvaluationRecord`.
- :func:`validate` evaluates on the validation examples the evaluation policy asks for.
- :func:`reserve_retries` grants a driver's retries of a batch that raised.
- :func:`decide` ends every iteration (proposal or merge) with one
  :class:`~gepetto.records.DecisionRecord` and its events; :func:`admit` adds a validated
  candidate to the pool, if the evaluation policy lets it (:func:`admission`).

A finished evaluation is a :class:`ScoredExamples`, aligned with its example ids (whether
each example came from the cache or was evaluated now); the functions below the steps
convert what a driver tells back (:func:`as_scored`), or what the journal holds
(:func:`scores_from_record`), into it, and :func:`judge_minibatch` applies the acceptance
criterion to a parent's and a child's evaluations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import check_evaluation_batch
from gepetto.engine.budget import Reservation
from gepetto.engine.context import (
    AwaitEvaluations,
    EvaluateTask,
    KnownResult,
    PendingExample,
    RunContext,
    Task,
    TaskGenerator,
    Wait,
)
from gepetto.errors import BudgetExhausted, ConfigError
from gepetto.evaluation import ScoredBatch
from gepetto.events import (
    CandidateAdded,
    CandidateRejected,
    EvaluationFinished,
    EvaluationStarted,
    IterationFinished,
    NewBestCandidate,
)
from gepetto.image import IMAGE_TAG, Image, image_to_data, restore_images
from gepetto.objectives import ObjectiveWeights
from gepetto.records import (
    CandidateRecord,
    DecisionRecord,
    EvaluationPurpose,
    EvaluationRecord,
    Outcome,
)
from gepetto.strategies.acceptance import AcceptanceCriterion, JudgesProposal
from gepetto.strategies.gepa_objects import MinibatchFacts
from gepetto.totals import total
from gepetto.types import Split

__all__ = [
    "ScoredExamples",
    "admission",
    "admit",
    "aligned_objectives",
    "as_scored",
    "combined",
    "compared",
    "decide",
    "evaluate",
    "jsonable_each",
    "jsonable_or_none",
    "judge_minibatch",
    "minibatch_value",
    "reserve_retries",
    "scores_from_record",
    "validate",
]

logger = logging.getLogger("gepetto")


def evaluate(
    ctx: RunContext,
    texts: Mapping[str, str],
    content_hash: str,
    split: Split,
    example_ids: tuple[int, ...],
    iteration: int,
    purpose: EvaluationPurpose,
) -> Generator[Task | Wait, Any, ScoredExamples]:
    """Score texts on examples, from the cache where possible; record the evaluation.

    Examples another flow is evaluating right now (same texts, same split) are not paid
    for twice: this flow waits for that evaluation and takes its outcome.
    """
    # Train evaluations keep traces (the parent's feed reflection; a child's are reused if
    # it becomes a parent on the same examples); validation never needs them.
    traces = split == "train"
    journaled = ctx.replay.evaluation(
        iteration,
        purpose,
        content_hash,
        example_ids,
        needs_traces=purpose in ("parent_minibatch", "next_parent_minibatch"),
    )
    if journaled is not None:
        return scores_from_record(journaled)
    sharing = ctx.config.parallel_proposals > 1 and (
        split != "train" or ctx.config.cache_evaluation
    )
    known, shared = yield from _known_or_in_flight(
        ctx, content_hash, split, example_ids, traces, sharing
    )
    missing = tuple(i for i in example_ids if i not in shared and i not in known)
    scored: ScoredBatch | None = None
    task_id: int | None = None
    reservation: Reservation | None = None
    if missing:
        # The held-out test set is scored after the search, outside its metric-call budget.
        reservation = ctx.budget.reserve(len(missing), split) if split != "test" else None
        task_id = ctx.task_id()
        ctx.retry_reservations[task_id] = [] if reservation is not None else None
        data = ctx.data(split)
        task = EvaluateTask(
            id=task_id,
            iteration=iteration,
            purpose=purpose,
            candidate=dict(texts),
            candidate_hash=content_hash,
            split=split,
            example_ids=missing,
            examples=[data[i] for i in missing],
            capture_traces=traces,
        )
        scored = yield from _dispatch(ctx, task, reservation, sharing)
    result = _combine(example_ids, known, shared, missing, scored, traces)
    if scored is not None and traces and split == "train" and ctx.config.cache_evaluation:
        _cache_scored(ctx, content_hash, missing, scored)
    _record_evaluation(ctx, content_hash, split, purpose, iteration, result, scored, task_id)
    _release(ctx, task_id, reservation, used=True)
    if scored is not None:
        _watch_adapter(ctx, scored, content_hash, split, missing, purpose)
    return result


def _known_or_in_flight(
    ctx: RunContext,
    content_hash: str,
    split: Split,
    example_ids: tuple[int, ...],
    traces: bool,
    sharing: bool,
) -> Generator[Wait, Any, tuple[dict[int, KnownResult], dict[int, PendingExample]]]:
    """The results already known (cached), and, when ``sharing``, the evaluations another
    flow has in flight, once they are done.

    Examples another flow is evaluating now are waited for, not paid twice (sharing
    evaluations in flight is caching them early: not where the cache is off; and with one
    proposal in flight there is nobody to share with). The wait comes before this flow
    dispatches its own examples, so what a driver tells is recorded at once (a crash loses
    no told result) and no flow waits while others wait for it.
    """
    shared: dict[int, PendingExample] = {}
    while True:
        known = _known_results(ctx, content_hash, split, example_ids, traces)
        if not sharing:
            return known, shared
        pending = ctx.in_flight.find(
            content_hash, split, (i for i in example_ids if i not in known and i not in shared)
        )
        if not pending:
            return known, shared
        shared.update(pending)
        waiting = AwaitEvaluations(tuple(pending.values()))
        if not waiting.ready:
            yield waiting


def _dispatch(
    ctx: RunContext, task: EvaluateTask, reservation: Reservation | None, sharing: bool
) -> Generator[Task | Wait, Any, ScoredBatch]:
    """Hand ``task`` to the driver and check its result; other flows that need the same
    evaluations wait for it (``sharing``). The reservation is cancelled if it never comes."""
    content_hash, split, missing = task.candidate_hash, task.split, task.example_ids
    claimed = ctx.in_flight.claim(content_hash, split, missing) if sharing else {}
    scored: ScoredBatch | None = None
    try:
        if ctx.bus.has_subscribers(EvaluationStarted):
            ctx.bus.emit(
                EvaluationStarted(
                    task.id, content_hash, split, task.purpose, task.iteration, len(missing)
                )
            )
        reply = yield task
        scored = as_scored(reply, len(missing), task.capture_traces)
    except BaseException:
        _release(ctx, task.id, reservation, used=False)
        raise
    finally:
        if claimed:  # the waiters get the outcome (failed examples stay failed)
            ctx.in_flight.settle(content_hash, split, claimed, scored, task.capture_traces)
    return scored


def _release(
    ctx: RunContext, task_id: int | None, reservation: Reservation | None, *, used: bool
) -> None:
    """Settle (the evaluation is recorded: ``used``) or cancel the calls reserved for an
    evaluation task, its retries included."""
    held = [reservation] if reservation is not None else []
    if task_id is not None:
        held.extend(ctx.retry_reservations.pop(task_id, None) or ())
    for calls in held:
        if used:
            ctx.budget.settle(calls)
        else:
            ctx.budget.cancel(calls)


def reserve_retries(ctx: RunContext, task_id: int, calls: int) -> int:
    """Reserve up to ``calls`` more metric calls for the outstanding evaluation ``task_id``
    (see :meth:`~gepetto.engine.optimizer.Optimizer.reserve_retries`)."""
    extras = ctx.retry_reservations[task_id]
    if extras is None:
        return calls
    granted: list[Reservation] = []
    try:
        granted.append(ctx.budget.reserve(calls, "retry"))
    except BudgetExhausted:  # then as many single calls as still fit
        while len(granted) < calls:
            try:
                granted.append(ctx.budget.reserve(1, "retry"))
            except BudgetExhausted:
                break
    extras.extend(granted)
    return sum(reservation.calls for reservation in granted)


def _watch_adapter(
    ctx: RunContext,
    scored: ScoredBatch,
    content_hash: str,
    split: Split,
    example_ids: tuple[int, ...],
    purpose: EvaluationPurpose,
) -> None:
    """Stop a run whose adapter raises on everything; warn about scores above perfect."""
    health = ctx.adapter_health
    health.check_perfect_score(scored.batch.scores, example_ids, split, ctx.config.perfect_score)
    reason = health.observe(
        scored,
        split,
        example_ids,
        content_hash,
        in_pool=ctx.state.id_of(content_hash) is not None,
        seed_validation=purpose == "seed_validation",
    )
    if reason is not None:
        logger.error("stopping the run: %s", reason)
        ctx.request_stop(reason)


def _known_results(
    ctx: RunContext, content_hash: str, split: Split, example_ids: tuple[int, ...], traces: bool
) -> dict[int, KnownResult]:
    if split != "train":
        scores = (
            ctx.state.known_val_scores(content_hash)
            if split == "val"
            else ctx.state.known_test_scores(content_hash)
        )
        return {i: (None, scores[i], None, None) for i in example_ids if i in scores}
    if not (ctx.config.cache_evaluation and traces):
        return {}
    cache = ctx.train_cache.get(content_hash)
    if not cache:
        return {}
    return {i: cache[i] for i in example_ids if i in cache}


def _combine(
    example_ids: tuple[int, ...],
    known: dict[int, KnownResult],
    shared: dict[int, PendingExample],
    missing: tuple[int, ...],
    scored: ScoredBatch | None,
    traces: bool,
) -> ScoredExamples:
    """One result for ``example_ids``: known (cached), shared (evaluated by another flow
    just now) or evaluated now (``missing``, in ``scored``)."""
    position = {example_id: n for n, example_id in enumerate(missing)}
    outputs, scores, trajectories, failed, objectives = [], [], [], [], []
    for example_id in example_ids:
        if example_id in shared:  # (its failure counts, also if it is cached since)
            (output, score, trajectory, objective), failure = shared[example_id].outcome()
        elif example_id in known:
            output, score, trajectory, objective = known[example_id]
            failure = False
        else:
            assert scored is not None
            n = position[example_id]
            output, score = scored.batch.outputs[n], scored.batch.scores[n]
            trajectory = scored.batch.trajectories[n] if traces else None  # type: ignore[index]
            failure = scored.failed[n]
            new_objectives = scored.batch.objective_scores
            objective = new_objectives[n] if new_objectives is not None else None
        outputs.append(output)
        scores.append(score)
        trajectories.append(trajectory)
        failed.append(failure)
        objectives.append(objective)
    return ScoredExamples(
        example_ids,
        outputs,
        scores,
        trajectories if traces else None,
        tuple(failed),
        missing,
        aligned_objectives(objectives),
    )


def _cache_scored(
    ctx: RunContext, content_hash: str, example_ids: tuple[int, ...], scored: ScoredBatch
) -> None:
    objectives = scored.batch.objective_scores
    cache = ctx.train_cache.setdefault(content_hash, {})
    for position, example_id in enumerate(example_ids):
        if not scored.failed[position]:
            trajectory = scored.batch.trajectories[position]  # type: ignore[index]
            cache[example_id] = (
                scored.batch.outputs[position],
                scored.batch.scores[position],
                trajectory,
                objectives[position] if objectives is not None else None,
            )


def _record_evaluation(
    ctx: RunContext,
    content_hash: str,
    split: Split,
    purpose: EvaluationPurpose,
    iteration: int,
    result: ScoredExamples,
    scored: ScoredBatch | None,
    task_id: int | None,
) -> None:
    # Outputs and trajectories are kept for a resumed run (it reflects on them without
    # evaluating again), so only for train evaluations and only with a journal; validation
    # outputs with track_best_outputs (result.best_outputs_valset), when plain JSON.
    keep = split == "train" and ctx.journaling
    outputs = jsonable_or_none(result.outputs) if keep else None
    if split == "val" and ctx.config.track_best_outputs:
        outputs = jsonable_each(result.outputs, result.failed)
    example_ids = result.example_ids
    failed_ids = tuple(i for i, failed in zip(example_ids, result.failed, strict=True) if failed)
    record = EvaluationRecord(
        candidate_hash=content_hash,
        split=split,
        purpose=purpose,
        iteration=iteration,
        example_ids=example_ids,
        scores=tuple(result.scores),
        objective_scores=result.objectives,
        # Every example handed to the adapter: a batch attempt that raised, its retries.
        metric_calls=scored.metric_calls if scored is not None else 0,
        failures=len(failed_ids),
        failed_examples=failed_ids,
        outputs=outputs,
        trajectories=jsonable_or_none(result.trajectories) if keep else None,
    )
    ctx.record(record)
    if ctx.bus.has_subscribers(EvaluationFinished):
        ctx.bus.emit(
            EvaluationFinished(
                content_hash,
                ctx.state.id_of(content_hash),
                split,
                purpose,
                iteration,
                example_ids,
                record.scores,
                record.metric_calls,
                ctx.state.total_metric_calls,
                record.failures,
                task_id,
            )
        )


def validate(
    ctx: RunContext,
    texts: Mapping[str, str],
    content_hash: str,
    iteration: int,
    purpose: EvaluationPurpose,
) -> TaskGenerator:
    """Evaluate on the validation examples the policy asks for, until it asks for none."""
    policy = ctx.config.evaluation_policy
    while ids := tuple(policy.examples_to_evaluate(ctx.state, content_hash)):
        yield from evaluate(ctx, texts, content_hash, "val", ids, iteration, purpose)


def admission(ctx: RunContext, content_hash: str) -> tuple[bool, str]:
    """Whether the evaluation policy lets a validated child join the pool."""
    if ctx.admission is not None:
        return ctx.admission.admits(ctx.state, content_hash)
    return True, ""


def admit(ctx: RunContext, record: CandidateRecord) -> int:
    """Add a validated candidate to the pool; return its id (in a run shared by several
    workers the storage assigns it, and may return the id of an equal candidate)."""
    state = ctx.state
    previous_best = state.best_id if state.candidates else None
    previous_score = state.val_score(previous_best) if previous_best is not None else None
    candidate_id = ctx.workers.admit_record(record)
    if state.candidates[candidate_id].iteration != record.iteration:
        return candidate_id  # someone else's equal candidate: nothing new to announce
    ctx.bus.emit(
        CandidateAdded(
            candidate_id,
            record.parents,
            state.val_score(candidate_id),
            state.val_coverage(candidate_id),
            state.total_metric_calls,
        )
    )
    if previous_best is None or state.best_id != previous_best:
        ctx.bus.emit(
            NewBestCandidate(
                state.best_id, state.val_score(state.best_id), previous_best, previous_score
            )
        )
    return candidate_id


def decide(
    ctx: RunContext,
    iteration: int,
    parent_id: int | None,
    outcome: Outcome,
    reason: str,
    *,
    parent_score: float | None = None,
    child_score: float | None = None,
    child_hash: str | None = None,
    child_id: int | None = None,
) -> None:
    """End an iteration: its decision record, and the events that announce it."""
    state = ctx.state
    ctx.record(
        DecisionRecord(
            iteration, parent_id, child_id, outcome, reason, parent_score, child_score, child_hash
        )
    )
    if outcome != "accepted":
        ctx.bus.emit(
            CandidateRejected(iteration, parent_id, outcome, reason, parent_score, child_score)
        )
    ctx.bus.emit(
        IterationFinished(
            iteration,
            outcome,
            state.total_metric_calls,
            state.val_score(state.best_id),
            len(state.candidates),
            len(state.selection_weights()[0]),
            state.cost_usd,
        )
    )


@dataclass(slots=True)
class ScoredExamples:
    """A finished evaluation, aligned with ``example_ids``."""

    example_ids: tuple[int, ...]
    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None
    failed: tuple[bool, ...]
    missing: tuple[int, ...]
    """The examples that were really evaluated (the others came from the cache)."""
    objectives: tuple[Mapping[str, float], ...] | None = None
    """Per example, the adapter's objective scores (``None``: it returned none)."""


def as_scored(reply: Any, size: int, traces: bool) -> ScoredBatch:
    if isinstance(reply, ScoredBatch):
        # Built by gepetto's Evaluator, which already checked the adapter's result.
        if len(reply.failed) != size or len(reply.batch.scores) != size:
            raise ConfigError("a ScoredBatch must have one score and one flag per example")
        if reply.calls is not None and reply.calls < 0:
            raise ConfigError(
                f"a ScoredBatch's calls ({reply.calls}) counts the metric calls the "
                "evaluation cost: an int >= 0"
            )
        return reply
    batch = check_evaluation_batch(reply, size, traces, "the evaluation result told")
    # gepa's num_metric_calls, when the batch sets it, is what the evaluation cost.
    return ScoredBatch(batch, (False,) * size, calls=batch.num_metric_calls)


def aligned_objectives(
    objectives: Sequence[Mapping[str, float] | None],
) -> tuple[Mapping[str, float], ...] | None:
    """Objective scores per example (``{}`` where unknown), or ``None`` if none is known."""
    if all(example is None for example in objectives):
        return None
    return tuple(example if example is not None else {} for example in objectives)


def combined(example_ids: tuple[int, ...], parts: Sequence[ScoredExamples]) -> ScoredExamples:
    """One evaluation of ``example_ids`` from evaluations of disjoint parts of them."""
    if sorted(i for part in parts for i in part.example_ids) != sorted(example_ids):
        raise ValueError("the parts must cover the example ids exactly once")
    where = {
        example_id: (part, n) for part in parts for n, example_id in enumerate(part.example_ids)
    }
    order = [where[example_id] for example_id in example_ids]
    has_traces = all(part.trajectories is not None for part in parts)
    return ScoredExamples(
        example_ids,
        [part.outputs[n] for part, n in order],
        [part.scores[n] for part, n in order],
        [part.trajectories[n] for part, n in order] if has_traces else None,  # type: ignore[index]
        tuple(part.failed[n] for part, n in order),
        tuple(i for part in parts for i in part.missing),
        aligned_objectives(
            [part.objectives[n] if part.objectives is not None else None for part, n in order]
        ),
    )


def compared(weights: ObjectiveWeights | None, evaluation: ScoredExamples) -> list[float]:
    """What acceptance compares, per example: the scores, or the weighted objectives."""
    if weights is None:
        return list(evaluation.scores)
    return list(weights.values(evaluation.objectives, len(evaluation.scores)))


def minibatch_value(weights: ObjectiveWeights | None, evaluation: ScoredExamples) -> float:
    """The sum acceptance compares for one minibatch evaluation (best-of-n ranks by it)."""
    return total(compared(weights, evaluation))


def judge_minibatch(
    acceptance: AcceptanceCriterion,
    weights: ObjectiveWeights | None,
    parent: Sequence[ScoredExamples],
    child: Sequence[ScoredExamples],
    facts: MinibatchFacts | None = None,
) -> tuple[bool, str, float]:
    """Apply the acceptance criterion to a parent's and a child's minibatch evaluations.

    The criterion gets, example by example (the evaluations concatenated in order), the
    scores, or with objective weights the weighted sums of the objectives. A criterion that
    reads the proposal (:class:`~gepetto.strategies.acceptance.JudgesProposal`, gepa's)
    also gets ``facts``.

    Returns:
        Whether the child is accepted, the reason, and the child's gain (the difference of
        the sums of what the criterion compared).
    """

    parent_values = [value for evaluation in parent for value in compared(weights, evaluation)]
    child_values = [value for evaluation in child for value in compared(weights, evaluation)]
    if facts is not None and isinstance(acceptance, JudgesProposal):
        accepted, reason = acceptance.accept_proposal(facts, parent_values, child_values)
    else:
        accepted, reason = acceptance.accept(parent_values, child_values)
    if weights is not None:
        reason = f"weighted objectives: {reason}"
    return accepted, reason, total(child_values) - total(parent_values)


def jsonable_or_none(values: Sequence[Any] | None) -> list[Any] | None:
    """``values`` as a list if they are JSON (with :class:`~gepetto.image.Image` objects as
    their journaled form, :func:`~gepetto.image.image_to_data`), else ``None``.

    Outputs and trajectories are the adapter's own objects; they are journaled only when they
    are plain JSON (and images), so a resumed run can reflect on them without evaluating
    again (:func:`~gepetto.image.restore_images` gives the images back). Data that holds
    the image tag as a key of its own is not journaled: it would be read back as an image.
    """
    if values is None:
        return None
    images = 0

    def image_data(value: object) -> object:
        nonlocal images
        if isinstance(value, Image):
            images += 1
            return image_to_data(value)
        raise TypeError(f"{type(value).__name__} is not JSON")

    try:
        text = json.dumps(list(values), default=image_data)
    except (TypeError, ValueError):
        return None
    if IMAGE_TAG in text and text.count(f'"{IMAGE_TAG}":') != images:
        return None
    return list(json.loads(text))


def jsonable_each(values: Sequence[Any], failed: Sequence[bool]) -> list[Any]:
    """Each value that survives a JSON round trip unchanged in type, else ``None`` (also for
    the examples that failed): validation outputs kept for ``best_outputs_valset``."""
    kept: list[Any] = []
    for value, failure in zip(values, failed, strict=True):
        if failure:
            kept.append(None)
        elif value is None or type(value) in _JSON_SCALARS:
            kept.append(value)  # what the round trip would give back, without paying for it
        else:
            try:
                kept.append(json.loads(json.dumps(value)))
            except (TypeError, ValueError):
                kept.append(None)
    return kept


_JSON_SCALARS = (str, int, float, bool)
"""Types (exactly, not subclasses) a JSON round trip returns equal and of the same type."""


def scores_from_record(record: EvaluationRecord) -> ScoredExamples:
    size = len(record.example_ids)
    failed = set(record.failed_examples)
    return ScoredExamples(
        record.example_ids,
        restore_images(list(record.outputs)) if record.outputs is not None else [None] * size,
        list(record.scores),
        restore_images(list(record.trajectories)) if record.trajectories is not None else None,
        tuple(i in failed for i in record.example_ids),
        (),
        record.objective_scores,
    )

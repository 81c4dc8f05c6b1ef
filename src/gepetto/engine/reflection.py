"""The reflection step's inputs and its record.

Before a :class:`~gepetto.engine.tasks.ReflectTask`, :func:`reflection_inputs` gathers what
the reflection sees: the parent's minibatch run, then (``reflection_history=N``) up to N
examples the same parent was already evaluated on with traces and did not solve
(:func:`earlier_failures`, from the train-evaluation cache, so at no metric call); and
:func:`rejected_memory` the recently rejected proposals. After it, :func:`record_reflection`
keeps the usable proposed texts as a :class:`~gepetto.records.ReflectionRecord` and counts
the reflections in a row whose LM calls all failed (the
:class:`~gepetto.stopping.ReflectionErrorLimit` stops the run).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gepetto.engine.context import RunContext
from gepetto.engine.scored import KnownResult, ScoredExamples
from gepetto.errors import GepettoError
from gepetto.events import ReflectionFinished
from gepetto.proposers.reflective import ProposalOutcome
from gepetto.records import CandidateRecord, ReflectionRecord
from gepetto.types import EvaluationBatch, lone_surrogate, printable

__all__ = ["earlier_failures", "record_reflection", "reflection_inputs", "rejected_memory"]


def earlier_failures(
    cached: Mapping[int, KnownResult],
    exclude: Collection[int],
    perfect_score: float,
    limit: int,
) -> list[tuple[int, KnownResult]]:
    """Up to ``limit`` of a candidate's cached train results (``cached``: by example id)
    that failed.

    Contract: an entry qualifies when its example id is not in ``exclude`` (the current
    minibatch) and its score is below ``perfect_score``. The entries are ordered lowest score
    first, then lowest example id (deterministic for a given cache), and each example appears
    at most once. Returns ``(example_id, (output, score, trajectory, objectives))`` pairs;
    an empty list when ``limit`` is 0 or nothing qualifies.

    Example:
        >>> cached = {4: ("out", 0.0, "trace", None), 7: ("out", 1.0, "trace", None)}
        >>> earlier_failures(cached, exclude={1, 2}, perfect_score=1.0, limit=3)
        [(4, ('out', 0.0, 'trace', None))]
    """
    if limit <= 0:
        return []
    found = [
        (known[1], example_id, known)
        for example_id, known in cached.items()
        if example_id not in exclude and known[1] < perfect_score
    ]
    found.sort(key=lambda entry: (entry[0], entry[1]))
    return [(example_id, known) for _, example_id, known in found[:limit]]


def reflection_inputs(
    ctx: RunContext,
    parent: CandidateRecord,
    batch_ids: tuple[int, ...],
    parent_eval: ScoredExamples,
    usable: Sequence[int],
) -> tuple[list[Any], EvaluationBatch[Any, Any]]:
    """What a reflection on ``parent`` sees: its minibatch run (the ``usable`` positions,
    whose evaluation did not raise), then its earlier failures (``reflection_history``).

    The earlier failures are the parent's cached train results (from any iteration so far,
    including the child minibatch that got it accepted; on resume, those journaled with
    their trajectories) outside ``batch_ids``; none without the cache.
    """
    trainset = ctx.trainset
    examples = [trainset[batch_ids[i]] for i in usable]
    outputs = [parent_eval.outputs[i] for i in usable]
    scores = [parent_eval.scores[i] for i in usable]
    if parent_eval.trajectories is None:
        return examples, EvaluationBatch(outputs, scores, None)
    trajectories = [parent_eval.trajectories[i] for i in usable]
    config = ctx.config
    if config.cache_evaluation:
        earlier = earlier_failures(
            ctx.train_cache.get(parent.content_hash, {}),
            frozenset(batch_ids),
            config.perfect_score,
            config.reflection_history,
        )
        for example_id, (output, score, trajectory, _) in earlier:
            examples.append(trainset[example_id])
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
    return examples, EvaluationBatch(outputs, scores, trajectories)


def rejected_memory(ctx: RunContext, components: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """The last ``rejected_memory`` rejected proposals for each component (from the
    records, so a resumed run shows the same)."""
    limit = ctx.config.rejected_memory
    if not limit:
        return {}
    proposed = {r.iteration: r.proposed for r in ctx.state.reflections}
    memory: dict[str, list[tuple[str, str]]] = {name: [] for name in components}
    for decision in reversed(ctx.state.decisions):
        if decision.outcome != "rejected" or decision.iteration not in proposed:
            continue
        for name, text in proposed[decision.iteration].items():
            notes = memory.get(name)
            if notes is not None and len(notes) < limit and all(t != text for t, _ in notes):
                notes.append((text, decision.reason))
        if all(len(notes) >= limit for notes in memory.values()):
            break
    return {name: notes for name, notes in memory.items() if notes}


def _usable(
    proposed: Mapping[str, Any],
    components: tuple[str, ...],
    parent: CandidateRecord,
    failures: dict[str, str],
) -> dict[str, str]:
    """The proposed texts that can become a child; why the others cannot (in ``failures``)."""
    texts: dict[str, str] = {}
    for name, text in proposed.items():
        if name not in components:
            failures[printable(str(name))] = f"not a component being updated ({list(components)})"
        elif not isinstance(text, str) or not text.strip():
            failures[name] = "empty text"
        elif text == parent.texts[name]:
            failures[name] = "unchanged text"
        elif (position := lone_surrogate(text)) is not None:
            failures[name] = (
                f"the text holds a lone surrogate at position {position} "
                f"({text[position]!r}): not valid Unicode, it cannot be stored or sent"
            )
        else:
            texts[name] = text
    return texts


def record_reflection(
    ctx: RunContext,
    iteration: int,
    parent: CandidateRecord,
    components: tuple[str, ...],
    outcome: Any,
    task_id: int | None = None,
) -> ReflectionRecord:
    """Record the reflection outcome (its ``proposed`` texts are the usable, changed ones)."""
    if isinstance(outcome, Mapping):
        outcome = ProposalOutcome(texts=dict(outcome), lm_calls=1)
    if not isinstance(outcome, ProposalOutcome):
        raise GepettoError(
            f"a ReflectTask must be told a ProposalOutcome or a dict, got {type(outcome).__name__}"
        )
    # Reasons may quote a reply or an exception: kept printable (valid UTF-8).
    failures = {printable(str(k)): printable(str(v)) for k, v in outcome.failures.items()}
    texts = _usable(outcome.texts, components, parent, failures)
    alternatives = [texts] if texts else []
    for proposed in outcome.alternatives:
        option = _usable(proposed, components, parent, {})
        if option and option not in alternatives:
            alternatives.append(option)
    if alternatives and not texts:
        texts = alternatives[0]
    flags = {name: printable(why) for name, why in outcome.flags.items() if name in texts}
    record = ReflectionRecord(
        iteration,
        parent.id,
        components,
        texts,
        failures,
        outcome.lm_calls,
        flags,
        tuple(alternatives) if len(alternatives) > 1 else (),
    )
    ctx.record(record)
    ctx.bus.emit(
        ReflectionFinished(
            iteration, parent.id, components, texts, failures, outcome.lm_calls, task_id, flags
        )
    )
    lm_errors = [why for why in failures.values() if why.startswith("reflection LM failed")]
    if texts or len(lm_errors) < len(components):
        ctx.reflection_errors, ctx.last_reflection_error = 0, None
    else:
        ctx.reflection_errors += 1
        ctx.last_reflection_error = lm_errors[-1]
    return record

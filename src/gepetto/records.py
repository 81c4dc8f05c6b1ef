"""Append-only records: everything a run produces, in the order it happened.

A run's state is nothing but a list of these records; every view (the pool of candidates,
validation scores, Pareto fronts, the best candidate, counters) is derived from them by
:class:`gepetto.state.RunState`. Records are frozen, hold only JSON-safe values, and carry
no references to each other except by id or content hash, so they can be journaled and
replayed as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeAlias

from gepetto.types import CandidateId, ExampleId, Split

__all__ = [
    "RECORD_TYPES",
    "CandidateRecord",
    "DecisionRecord",
    "EvaluationPurpose",
    "EvaluationRecord",
    "IterationRecord",
    "LMCallRecord",
    "Outcome",
    "Record",
    "ReflectionRecord",
    "ReflectionStreamed",
    "ValsetGrowthRecord",
    "record_from_dict",
    "record_to_dict",
]

EvaluationPurpose: TypeAlias = Literal[
    "seed_validation",
    "parent_minibatch",
    "child_minibatch",
    "recheck_parent",
    "recheck_child",
    "next_parent_minibatch",
    "merge_subsample",
    "validation",
    "test",
]
Outcome: TypeAlias = Literal["accepted", "rejected", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    """A candidate admitted to the pool (it has validation scores).

    Attributes:
        id: position in the pool; the seed is 0.
        texts: component name -> text. Never mutated after creation.
        parents: ids of the candidates it was made from (empty for the seed).
        origin: how it was made.
        iteration: the iteration that produced it (-1 for the seed).
        metric_calls_at_discovery: metric calls spent by the run when it was admitted.
        content_hash: :func:`gepetto.types.candidate_hash` of ``texts``.
        components_updated: the components that differ from the parent.
        component_cursor: round-robin position the candidate starts from.
    """

    id: CandidateId
    texts: Mapping[str, str]
    parents: tuple[CandidateId, ...]
    origin: Literal["seed", "reflection", "merge"]
    iteration: int
    metric_calls_at_discovery: int
    content_hash: str
    components_updated: tuple[str, ...] = ()
    component_cursor: int = 0
    kind: Literal["candidate"] = field(default="candidate", init=False)


@dataclass(frozen=True, slots=True)
class EvaluationRecord:
    """Scores of one candidate (by content hash) on some examples of one split.

    ``metric_calls`` counts every example handed to the adapter (cache hits are free; a batch
    attempt that raised and its one-example retries all count); ``failures`` counts examples
    whose evaluation raised and were scored 0 (also those not retried), and
    ``failed_examples`` names them. For a parent's minibatch (evaluated with traces), the
    adapter's ``outputs`` and ``trajectories`` are kept when they are plain JSON, so a resumed
    run can reflect on them without evaluating again.
    """

    candidate_hash: str
    split: Split
    purpose: EvaluationPurpose
    iteration: int
    example_ids: tuple[ExampleId, ...]
    scores: tuple[float, ...]
    objective_scores: tuple[Mapping[str, float], ...] | None
    metric_calls: int
    failures: int = 0
    failed_examples: tuple[ExampleId, ...] = ()
    outputs: list[Any] | None = None
    trajectories: list[Any] | None = None
    kind: Literal["evaluation"] = field(default="evaluation", init=False)


@dataclass(frozen=True, slots=True)
class IterationRecord:
    """The start of an iteration: the parent it chose and the minibatch it sampled.

    Recorded before any work of the iteration, so the journal shows what was in flight at a
    crash, and the minibatch sampler's position can be replayed on resume. An iteration that
    makes several proposals (gepa's ``sampling_strategy``) lists each one's parent and
    minibatch in ``tasks`` (``parent_id`` and ``minibatch`` are the first's); empty for one
    proposal (and in journals written before it existed).
    """

    iteration: int
    parent_id: CandidateId
    minibatch: tuple[ExampleId, ...]
    worker: str | None = None
    operation: Literal["reflection", "merge"] = "reflection"
    merge_parents: tuple[CandidateId, ...] = ()
    """For a merge: the two candidates merged (empty when no pair could be merged)."""
    merge_ancestor: CandidateId | None = None
    tasks: tuple[tuple[CandidateId, tuple[ExampleId, ...]], ...] = ()
    kind: Literal["iteration"] = field(default="iteration", init=False)


@dataclass(frozen=True, slots=True)
class ReflectionRecord:
    """One reflection step: which components were rewritten and what came back.

    ``proposed`` holds the usable new texts; ``failures`` maps a component to the reason its
    reply was not usable (for example "no fenced block in reply"); ``flags`` maps a component
    whose proposed text was kept but looks suspicious, or was repaired, to the reason (see
    :mod:`gepetto.proposers.guards`; absent from journals written before it existed).
    ``alternatives`` holds every usable proposal when the reflection gave several
    (best-of-n, ``proposed`` first); empty otherwise. ``task`` is the proposal's position in
    an iteration that makes several (see :class:`IterationRecord`), else ``None``.
    """

    iteration: int
    parent_id: CandidateId
    components: tuple[str, ...]
    proposed: Mapping[str, str]
    failures: Mapping[str, str]
    lm_calls: int
    flags: Mapping[str, str] = field(default_factory=dict)
    alternatives: tuple[Mapping[str, str], ...] = ()
    task: int | None = None
    kind: Literal["reflection"] = field(default="reflection", init=False)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """The end of one iteration, with the reason (auditable accept/reject log).

    Scores are minibatch sums of the parent and the child, when they were measured. In an
    iteration that makes several proposals, each proposal's decision has its position in
    ``task``, and the iteration ends with one more decision whose ``task`` is ``None`` (as
    every decision of a one-proposal iteration): only those end an iteration.
    """

    iteration: int
    parent_id: CandidateId | None
    child_id: CandidateId | None
    outcome: Outcome
    reason: str
    parent_score: float | None = None
    child_score: float | None = None
    child_hash: str | None = None
    task: int | None = None
    kind: Literal["decision"] = field(default="decision", init=False)


@dataclass(frozen=True, slots=True)
class LMCallRecord:
    """One LM call made for the run, by role (``"task"`` or ``"reflection"``).

    ``cost_usd`` is ``None`` when the model's price is unknown (never counted as 0);
    ``faults`` counts failed attempts by error type; ``error`` is set if the call failed.
    """

    role: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    cached: bool
    attempts: int = 1
    faults: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    kind: Literal["lm_call"] = field(default="lm_call", init=False)


@dataclass(frozen=True, slots=True)
class ValsetGrowthRecord:
    """Validation examples a gepa ``DataLoader`` valset gained during the run.

    A gepa evaluation policy reads the loader's ``all_ids()`` each time it chooses examples;
    ids it had not seen become the next validation examples (positions after the last
    one). A resumed run fetches them from the loader again and checks ``fingerprint``.

    Attributes:
        loader_ids: the new ids, in the order of ``all_ids()`` (they take the next positions).
        fingerprint: the fingerprint of the new examples (with their ids).
        iteration: the iteration that noticed them (-1: the seed's validation).
    """

    loader_ids: tuple[Any, ...]
    fingerprint: str
    iteration: int
    kind: Literal["valset_growth"] = field(default="valset_growth", init=False)


@dataclass(frozen=True, slots=True)
class ReflectionStreamed:
    """Text of a reflection reply while the reflection model writes it (for live readers).

    Written only while a reflection LM call streams (a gepetto client with streaming on,
    see ``docs/lm.md``); a run whose reflection model does not stream writes none. These
    records are *progress*, not state: replay, resume and every view of the run ignore them
    (:class:`gepetto.engine.journal.Journal` never hands them to the engine), so a run
    resumes the same with or without them.

    The contract for a reader of the store (the live dashboard):

    - JSON ``kind`` ``"reflection_stream"``; fields ``iteration`` (int), ``components``
      (list of str: the component(s) the streamed call rewrites), ``seq`` (int), ``text``
      (str), ``done`` (bool), and ``stream`` and ``discarded`` below.
    - One *stream* is one reflection LM call. Its records have ``seq`` 0, 1, 2, ... in the
      order written; ``text`` is the text that arrived since the stream's previous record
      (possibly ``""``); the reply so far is the concatenation of the stream's ``text`` in
      ``seq`` order. The last record of a stream has ``done=True``.
    - Records are written throttled: at most about 4 per second per stream, plus the final
      ``done=True`` one, each in its own transaction as it is made, so a reader polling the
      store sees new text within about a second of its arrival. They interleave with the
      run's other records (whose order they do not change).
    - A record with ``seq=0`` starts a new stream: a reader that shows one text per
      ``(iteration, components)`` starts that text over. ``stream`` numbers the streams of
      one iteration from 0 (in the order they started) and tells apart streams that run at
      once (best-of-n samples, several components, several proposals of one iteration).
    - ``discarded=True`` (on a ``done=True`` record): the call's attempt was cut (a
      connection dropped, a malformed chunk, a stalled stream) and its text so far is void;
      the client retries it as a new stream (``seq`` 0 again), or the call fails.
    - A reply served from the response cache is written as one stream (its whole text, then
      the ``done=True`` record).
    """

    iteration: int
    components: tuple[str, ...]
    seq: int
    text: str
    done: bool
    stream: int = 0
    discarded: bool = False
    kind: Literal["reflection_stream"] = field(default="reflection_stream", init=False)


Record: TypeAlias = (
    CandidateRecord
    | IterationRecord
    | EvaluationRecord
    | ReflectionRecord
    | DecisionRecord
    | LMCallRecord
    | ValsetGrowthRecord
    | ReflectionStreamed
)
"""Every record a journal holds (:class:`ReflectionStreamed` is progress only, see there)."""

RECORD_TYPES: dict[str, type[Record]] = {
    "candidate": CandidateRecord,
    "iteration": IterationRecord,
    "evaluation": EvaluationRecord,
    "reflection": ReflectionRecord,
    "decision": DecisionRecord,
    "lm_call": LMCallRecord,
    "valset_growth": ValsetGrowthRecord,
    "reflection_stream": ReflectionStreamed,
}

_TUPLE_FIELDS = {
    "alternatives",
    "parents",
    "components_updated",
    "minibatch",
    "example_ids",
    "scores",
    "components",
    "failed_examples",
    "merge_parents",
    "tasks",
    "loader_ids",
}


def record_to_dict(record: Record) -> dict[str, Any]:
    """A dict of a record's fields (shallow: tuples and mappings are shared, JSON encodes them
    as lists and objects), with its ``kind``."""
    data = {f.name: getattr(record, f.name) for f in fields(record)}
    data["kind"] = record.kind
    return data


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Rebuild a record from :func:`record_to_dict` output (as read back from JSON).

    Raises:
        ValueError: for an unknown ``kind``.
    """
    kind = data.get("kind")
    record_type = RECORD_TYPES.get(str(kind))
    if record_type is None:
        raise ValueError(f"unknown record kind {kind!r}")
    fields = {key: value for key, value in data.items() if key != "kind"}
    for name in _TUPLE_FIELDS.intersection(fields):
        fields[name] = tuple(fields[name])
    if fields.get("tasks"):
        fields["tasks"] = tuple((parent, tuple(batch)) for parent, batch in fields["tasks"])
    if fields.get("objective_scores") is not None:
        fields["objective_scores"] = tuple(fields["objective_scores"])
    return record_type(**fields)

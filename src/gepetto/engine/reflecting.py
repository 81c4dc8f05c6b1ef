"""The reflection step's inputs and its record.

:class:`ReflectionSteps` is mixed into the optimizer (through the iteration flows). Before a
:class:`~gepetto.engine.tasks.ReflectTask`, it gathers what the reflection sees (the parent's
minibatch run, its earlier failures, rejected proposals); after it, ``_record_reflection``
keeps the usable proposed texts as a :class:`~gepetto.records.ReflectionRecord` and stops the
run after :data:`REFLECTION_ERROR_LIMIT` reflection steps in a row whose LM calls all failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gepetto.engine.flowbase import FlowBase
from gepetto.engine.history import earlier_failures
from gepetto.engine.scored import KnownResult, ScoredExamples
from gepetto.errors import GepettoError
from gepetto.events import ReflectionFinished
from gepetto.proposers.reflective import ProposalOutcome
from gepetto.records import CandidateRecord, ReflectionRecord
from gepetto.types import EvaluationBatch, lone_surrogate, printable

__all__ = ["REFLECTION_ERROR_LIMIT", "ReflectionSteps"]

REFLECTION_ERROR_LIMIT = 5
"""Reflection steps in a row whose LM calls all raised before the run stops."""


class ReflectionSteps(FlowBase):
    """What a reflection sees, and what it proposed (a mixin of the Optimizer)."""

    def _reflection_inputs(
        self,
        parent: CandidateRecord,
        batch_ids: tuple[int, ...],
        parent_eval: ScoredExamples,
        usable: Sequence[int],
    ) -> tuple[list[Any], EvaluationBatch[Any, Any]]:
        """What a reflection on ``parent`` sees: its minibatch run (the ``usable`` positions,
        whose evaluation did not raise), then its earlier failures (``reflection_history``)."""
        examples = [self.trainset[batch_ids[i]] for i in usable]
        outputs = [parent_eval.outputs[i] for i in usable]
        scores = [parent_eval.scores[i] for i in usable]
        if parent_eval.trajectories is None:
            return examples, EvaluationBatch(outputs, scores, None)
        trajectories = [parent_eval.trajectories[i] for i in usable]
        for example_id, (output, score, trajectory, _) in self._earlier_failures(parent, batch_ids):
            examples.append(self.trainset[example_id])
            outputs.append(output)
            scores.append(score)
            trajectories.append(trajectory)
        return examples, EvaluationBatch(outputs, scores, trajectories)

    def _earlier_failures(
        self, parent: CandidateRecord, batch_ids: tuple[int, ...]
    ) -> list[tuple[int, KnownResult]]:
        """Up to ``reflection_history`` examples ``parent`` was already evaluated on with
        traces (by any iteration so far, including the child minibatch that got it accepted;
        on resume, those journaled with their trajectories), that are not in ``batch_ids``
        and scored below ``perfect_score``: lowest score first, then lowest example id. They
        come from the train-evaluation cache, so they cost no metric call; none without the
        cache (``cache_evaluation=False``)."""
        if not self.config.cache_evaluation:
            return []
        return earlier_failures(
            self._train_cache,
            parent.content_hash,
            frozenset(batch_ids),
            self.config.perfect_score,
            self.config.reflection_history,
        )

    def _rejected_memory(self, components: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """The last ``rejected_memory`` rejected proposals for each component (from the
        records, so a resumed run shows the same)."""
        limit = self.config.rejected_memory
        if not limit:
            return {}
        proposed = {r.iteration: r.proposed for r in self.state.reflections}
        memory: dict[str, list[tuple[str, str]]] = {name: [] for name in components}
        for decision in reversed(self.state.decisions):
            if decision.outcome != "rejected" or decision.iteration not in proposed:
                continue
            for name, text in proposed[decision.iteration].items():
                notes = memory.get(name)
                if notes is not None and len(notes) < limit and all(t != text for t, _ in notes):
                    notes.append((text, decision.reason))
            if all(len(notes) >= limit for notes in memory.values()):
                break
        return {name: notes for name, notes in memory.items() if notes}

    def _record_reflection(
        self,
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
                "a ReflectTask must be told a ProposalOutcome or a dict, "
                f"got {type(outcome).__name__}"
            )
        # Reasons may quote a reply or an exception: kept printable (valid UTF-8).
        failures = {printable(str(k)): printable(str(v)) for k, v in outcome.failures.items()}

        def usable(proposed: Mapping[str, Any], failures: dict[str, str]) -> dict[str, str]:
            texts: dict[str, str] = {}
            for name, text in proposed.items():
                if name not in components:
                    failures[printable(str(name))] = (
                        f"not a component being updated ({list(components)})"
                    )
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

        texts = usable(outcome.texts, failures)
        alternatives = [texts] if texts else []
        for proposed in outcome.alternatives:
            option = usable(proposed, {})
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
        self._record(record)
        self.bus.emit(
            ReflectionFinished(
                iteration,
                parent.id,
                components,
                texts,
                failures,
                outcome.lm_calls,
                task_id,
                flags,
            )
        )
        lm_errors = [why for why in failures.values() if why.startswith("reflection LM failed")]
        if texts or len(lm_errors) < len(components):
            self._reflection_errors = 0
        else:
            self._reflection_errors += 1
            if self._reflection_errors >= REFLECTION_ERROR_LIMIT:
                self.request_stop(
                    f"the reflection LM failed {REFLECTION_ERROR_LIMIT} times in a row; "
                    f"last error: {lm_errors[-1]}"
                )
        return record

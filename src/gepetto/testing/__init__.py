"""Test doubles that ship with gepetto: scripted LMs and small adapters.

They make engine tests deterministic and let users try gepetto without a model:

- :class:`ScriptedLM`: replies from a fixed list (records the prompts it got);
- :class:`StreamingScriptedLM`: the same replies, streamed piece by piece like a streaming
  client's (so a run's :class:`~gepetto.events.ReflectionDelta` events and
  ``reflection_stream`` records can be tested without a model);
- :class:`FeedbackFollowingLM`: a reflection "model" that reads the feedback in the prompt
  and adds the words it asks for, so a run really improves a toy task step by step;
- :class:`KeywordAdapter` (sync) and :class:`AsyncKeywordAdapter` (``async def``): a toy
  task where an example is solved when the instructions contain its required words;
- :class:`FlakyAdapter`: wraps an adapter and raises on chosen examples.

Contract suites for your own implementations live beside them:
:mod:`gepetto.testing.adapter_contract` (adapters), :mod:`gepetto.testing.storage_contract`
(journal storages) and :mod:`gepetto.testing.vector_store_contract` (RAG vector stores).

Example:
    >>> lm = ScriptedLM(["```\\nnew text\\n```"])
    >>> lm("any prompt")
    '```\\nnew text\\n```'
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gepetto.lm.streaming import open_stream
from gepetto.types import EvaluationBatch

__all__ = [
    "AsyncKeywordAdapter",
    "FeedbackFollowingLM",
    "FlakyAdapter",
    "KeywordAdapter",
    "ScriptedLM",
    "StreamingScriptedLM",
    "keyword_dataset",
]


class ScriptedLM:
    """Returns scripted replies in order; a callable ``prompt -> str``.

    Args:
        replies: the replies, in order, or a function ``prompt -> reply``.
        repeat_last: when the list runs out, repeat its last reply instead of raising.

    Attributes:
        prompts: every prompt received, in order.
    """

    def __init__(
        self, replies: Sequence[str] | Callable[[Any], str], *, repeat_last: bool = False
    ) -> None:
        self._replies = replies
        self._repeat_last = repeat_last
        self._lock = threading.Lock()
        self.prompts: list[Any] = []

    def __call__(self, prompt: Any) -> str:
        with self._lock:
            self.prompts.append(prompt)
            if callable(self._replies):
                return self._replies(prompt)
            index = len(self.prompts) - 1
            if index < len(self._replies):
                return self._replies[index]
            if self._repeat_last and self._replies:
                return self._replies[-1]
            raise RuntimeError(f"ScriptedLM ran out of replies after {len(self._replies)}")

    @property
    def calls(self) -> int:
        """Number of calls received."""
        return len(self.prompts)


class StreamingScriptedLM:
    """A :class:`ScriptedLM` whose replies stream: an ``async`` LM that writes each reply to
    the stream listener of its context (:mod:`gepetto.lm.streaming`; in a run, the
    reflection's) in pieces of ``chunk_chars`` characters, ``chunk_delay`` seconds apart, as
    a streaming client does, then returns it whole.

    Args:
        replies: as for :class:`ScriptedLM` (a list, or a function ``prompt -> reply``,
            such as a :class:`FeedbackFollowingLM`).
        repeat_last: as for :class:`ScriptedLM`.
        chunk_chars: characters per piece (> 0).
        chunk_delay: seconds before each piece (>= 0).

    Attributes:
        prompts: every prompt received, in order.
    """

    def __init__(
        self,
        replies: Sequence[str] | Callable[[Any], str],
        *,
        repeat_last: bool = False,
        chunk_chars: int = 8,
        chunk_delay: float = 0.01,
    ) -> None:
        if chunk_chars <= 0 or chunk_delay < 0:
            raise ValueError("chunk_chars must be > 0 and chunk_delay >= 0")
        self._scripted = ScriptedLM(replies, repeat_last=repeat_last)
        self.chunk_chars = chunk_chars
        self.chunk_delay = chunk_delay

    @property
    def prompts(self) -> list[Any]:
        return self._scripted.prompts

    @property
    def calls(self) -> int:
        """Number of calls received."""
        return self._scripted.calls

    async def __call__(self, prompt: Any) -> str:
        reply = self._scripted(prompt)
        stream = open_stream()
        if stream is None:
            return reply
        try:
            for start in range(0, len(reply), self.chunk_chars):
                await asyncio.sleep(self.chunk_delay)
                stream.write(reply[start : start + self.chunk_chars])
        finally:
            stream.close()
        return reply


_MISSING = re.compile(r"missing words: ([^\n]+)")
_FIRST_FENCE = re.compile(r"```\n?(.*?)```", re.DOTALL)
_FENCES = re.compile(r"```\n(.*?)\n```", re.DOTALL)


class FeedbackFollowingLM:
    """A deterministic reflection "model" for :class:`KeywordAdapter` feedback.

    It takes the current text from the first fenced block of the prompt, adds every word the
    feedback lists as missing (a few per call, in order of appearance), and returns the new
    text in a fenced block. With ``words_per_call=1`` a run needs several accepted steps.

    A reflective merge's prompt (two fenced blocks, "Version A" and "Version B") is answered
    with version A's words followed by those of version B that A lacks (``merges`` counts
    these calls).
    """

    def __init__(self, words_per_call: int = 1) -> None:
        self.words_per_call = words_per_call
        self.calls = 0
        self.merges = 0

    def __call__(self, prompt: Any) -> str:
        self.calls += 1
        text = prompt if isinstance(prompt, str) else str(prompt[-1]["content"])
        if "Version B:" in text:
            self.merges += 1
            first, second = (block.split() for block in _FENCES.findall(text)[:2])
            merged = first + [word for word in second if word not in first]
            return f"```\n{' '.join(merged)}\n```"
        current_match = _FIRST_FENCE.search(text)
        current = current_match.group(1).strip() if current_match else ""
        wanted: list[str] = []
        for line in _MISSING.findall(text):
            for raw_word in line.split(","):
                word = raw_word.strip()
                if word and word not in wanted and word not in current.split():
                    wanted.append(word)
        addition = " ".join(wanted[: self.words_per_call])
        return f"Here is the improved text:\n```\n{current} {addition}\n```"


def _needs(example: Mapping[str, Any]) -> list[str]:
    needs = example["needs"]
    return [needs] if isinstance(needs, str) else list(needs)


class KeywordAdapter:
    """A toy task: an example is solved when the instructions contain its required words.

    Examples are dicts ``{"needs": "word" or [words], "component": name (optional)}``. The
    score is the fraction of required words present (as whole words) in the component's text;
    the feedback lists the missing words.
    """

    def __init__(self, default_component: str = "instructions") -> None:
        self.default_component = default_component
        self.evaluate_calls = 0

    def _run(
        self, batch: list[Mapping[str, Any]], candidate: dict[str, str], capture_traces: bool
    ) -> EvaluationBatch[dict[str, Any], str]:
        self.evaluate_calls += 1
        outputs, scores, trajectories = [], [], []
        for example in batch:
            component = example.get("component", self.default_component)
            words = set(candidate[component].split())
            needs = _needs(example)
            missing = [w for w in needs if w not in words]
            outputs.append(candidate[component])
            scores.append(1.0 - len(missing) / len(needs))
            trajectories.append({"component": component, "example": example, "missing": missing})
        return EvaluationBatch(outputs, scores, trajectories if capture_traces else None)

    def evaluate(
        self,
        batch: list[Mapping[str, Any]],
        candidate: dict[str, str],
        capture_traces: bool = False,
    ) -> EvaluationBatch[dict[str, Any], str]:
        return self._run(batch, candidate, capture_traces)

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[dict[str, Any], str],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        dataset: dict[str, list[dict[str, Any]]] = {name: [] for name in components_to_update}
        for trace, output, score in zip(
            eval_batch.trajectories or [], eval_batch.outputs, eval_batch.scores, strict=True
        ):
            if trace["component"] not in dataset:
                continue
            feedback = (
                f"missing words: {', '.join(trace['missing'])}"
                if trace["missing"]
                else "all required words present"
            )
            dataset[trace["component"]].append(
                {
                    "Inputs": trace["example"],
                    "Generated Outputs": output,
                    "Score": score,
                    "Feedback": feedback,
                }
            )
        return dataset


class AsyncKeywordAdapter(KeywordAdapter):
    """:class:`KeywordAdapter` with ``async def`` methods and an optional delay per call."""

    def __init__(self, default_component: str = "instructions", delay: float = 0.0) -> None:
        super().__init__(default_component)
        self.delay = delay

    async def evaluate(  # type: ignore[override]
        self,
        batch: list[Mapping[str, Any]],
        candidate: dict[str, str],
        capture_traces: bool = False,
    ) -> EvaluationBatch[dict[str, Any], str]:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._run(batch, candidate, capture_traces)

    async def make_reflective_dataset(  # type: ignore[override]
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[dict[str, Any], str],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        return super().make_reflective_dataset(candidate, eval_batch, components_to_update)


class FlakyAdapter:
    """Wraps an adapter; raises ``RuntimeError`` for examples where ``fails(example)`` is true."""

    def __init__(self, inner: Any, fails: Callable[[Any], bool]) -> None:
        self.inner = inner
        self.fails = fails

    def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[Any, Any]:
        for example in batch:
            if self.fails(example):
                raise RuntimeError(f"boom on {example!r}")
        result: EvaluationBatch[Any, Any] = self.inner.evaluate(batch, candidate, capture_traces)
        return result

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> Any:
        return self.inner.make_reflective_dataset(candidate, eval_batch, components_to_update)


def keyword_dataset(words: Iterable[str], copies: int = 1) -> list[dict[str, Any]]:
    """One example per word (repeated ``copies`` times): ``[{"needs": word}, ...]``."""
    return [{"needs": word} for _ in range(copies) for word in words]

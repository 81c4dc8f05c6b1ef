"""A retrieval-augmented generation (RAG) pipeline as a GEPA adapter.

The pipeline, for one question::

    question --query_rewrite--> query --store.query--> hits --rerank--> top k
             --context_synthesis--> context --answer--> answer

Each step with a prompt is optional; a step runs when the candidate has its component (then
the optimizer evolves it) or ``fixed_prompts`` has it (then it stays as written):

- ``"query_rewrite"``: the system prompt of a call that turns the question into the search
  query (without it the question itself is the query);
- ``"rerank"``: the system prompt of a call that orders the ``fetch_k`` retrieved passages
  (its reply lists passage ids, best first; the ``k`` first are kept);
- ``"context_synthesis"``: the system prompt of a call that condenses the passages into
  notes, which replace the passages as the answer's context;
- ``"answer"``: the system prompt of the answer call, with the context and the question as
  the user's message. By default ``fixed_prompts`` holds :data:`DEFAULT_ANSWER_PROMPT`, so a
  pipeline whose candidate has only ``"query_rewrite"`` still answers; pass
  ``fixed_prompts={}`` for retrieval alone.

An example is a mapping with the ``"question"`` (or ``"input"``), and what it is scored
against: ``"gold_ids"`` (the passages it needs) and/or ``"answers"`` (accepted answers) or
``"answer"``. The score is the weighted mean of the metrics that apply (:class:`RAGWeights`):
retrieval metrics when the example has gold ids, answer metrics when the pipeline answers
and the example has a gold answer, the judge's score when a ``judge`` model is given. Every
metric, the rewritten query, the retrieved and the needed passages, the answer and the gold
answer are written into the feedback the reflection reads. A failing step (a model call, the
store) scores the example 0 with the error as feedback; fatal LM errors (bad credentials)
stop the run.

Example::

    store = QdrantStore()
    store.add(atlas_passages())
    adapter = RAGAdapter("local/qwen2.5-coder-0.5b", store, k=3, temperature=0, max_tokens=32)
    seed = {"query_rewrite": "Rewrite the question as a search query.",
            "answer": "Answer the question using the context."}
    result = gepetto.optimize(seed, train, val, adapter=adapter, reflection_lm=...)
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from gepetto.adapters.rag.metrics import (
    exact_match,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    token_f1,
)
from gepetto.adapters.rag.store import Hit, VectorStore, check_k
from gepetto.adapters.running import PerLoopSemaphore
from gepetto.errors import ConfigError, GepettoError
from gepetto.lm.client import LMClient
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM, as_async_lm
from gepetto.types import EvaluationBatch

__all__ = [
    "ANSWER",
    "COMPONENTS",
    "CONTEXT_SYNTHESIS",
    "DEFAULT_ANSWER_PROMPT",
    "DEFAULT_JUDGE_PROMPT",
    "QUERY_REWRITE",
    "RERANK",
    "RAGAdapter",
    "RAGWeights",
]

QUERY_REWRITE = "query_rewrite"
RERANK = "rerank"
CONTEXT_SYNTHESIS = "context_synthesis"
ANSWER = "answer"
COMPONENTS = (QUERY_REWRITE, RERANK, CONTEXT_SYNTHESIS, ANSWER)
"""The pipeline's steps with a prompt, in the order they run."""

DEFAULT_ANSWER_PROMPT = "Answer the question using the context."
DEFAULT_JUDGE_PROMPT = (
    "You grade answers. Given a question, the gold answer and a candidate answer, reply with "
    "only a number from 0 to 1: 1 if the candidate answer means the same as the gold answer, "
    "0 if it is wrong, in between if it is partly right."
)

T = TypeVar("T")

_SNIPPET = 160
"""Characters of a passage shown in the reflective dataset."""

_NUMBER = re.compile(r"\b(?:0(?:\.\d+)?|1(?:\.0+)?)\b")


@dataclass(frozen=True, slots=True)
class RAGWeights:
    """How the metrics combine into one score: a weighted mean over the metrics that apply to
    an example (weights of the others are left out, so a score stays in [0, 1]).

    Retrieval metrics apply when the example has ``gold_ids``; ``exact_match`` and ``f1``
    when the pipeline answers and the example has a gold answer; ``judge`` when the adapter
    has a judge model. Set a weight to 0 to leave its metric out of the score (it is still
    computed and shown in the feedback).
    """

    recall: float = 0.2
    precision: float = 0.0
    mrr: float = 0.1
    ndcg: float = 0.2
    exact_match: float = 0.2
    f1: float = 0.3
    judge: float = 0.3

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"RAGWeights.{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"RAGWeights.{name} must be finite and >= 0, got {value!r}")
        if not any(asdict(self).values()):
            raise ConfigError("RAGWeights: at least one weight must be above 0")

    def combine(self, values: Mapping[str, float]) -> float:
        """The weighted mean of ``values`` (metric name -> value) over the applicable ones
        with a weight above 0; 0.0 when none applies."""
        weights: dict[str, float] = asdict(self)
        used = {name: weights[name] for name in values if weights.get(name, 0.0) > 0}
        total = sum(used.values())
        if total == 0:
            return 0.0
        return float(sum(weight * values[name] for name, weight in used.items()) / total)


class _StepFailed(GepettoError):
    """A step of the pipeline failed for one example (scored 0)."""


class RAGAdapter:
    """A RAG pipeline whose prompts the optimizer evolves (see the module docstring).

    Args:
        model: the pipeline's LM: a gepetto LM client, a model string, or a callable
            ``messages -> str`` (sync or async).
        store: the :class:`~gepetto.adapters.rag.store.VectorStore` to search.
        k: passages kept for the answer (and the cut-off of the retrieval metrics).
        fetch_k: passages retrieved for the reranker (default ``2 * k``; without a rerank
            step ``k`` are retrieved).
        weights: how the metrics make the score (:class:`RAGWeights`).
        judge: an optional judge model (same forms as ``model``); its reply, a number from 0
            to 1 (or yes/no), becomes the ``judge`` metric.
        judge_prompt: the judge's system prompt.
        fixed_prompts: prompts of steps that run but are not evolved (default: the answer
            prompt); a candidate's component overrides the fixed prompt of its step.
        store_in_thread: call the store from a worker thread (default), so a slow query does
            not hold up the other examples' model calls; ``False`` calls it on the event
            loop, which saves the thread hop (about 1.5 ms on a loaded machine, see
            docs/benchmarks.md) for a store that answers in well under a millisecond.
        max_concurrency: examples run at once for one batch.
        **lm_options: options for a model string (``temperature``, ``max_tokens``, ...).

    Raises:
        ConfigError: a store without the four methods, ``k``/``fetch_k``/``max_concurrency``
            below 1 (or ``fetch_k < k``), an unknown step in ``fixed_prompts``, LM options
            with a non-string model.
    """

    def __init__(
        self,
        model: object,
        store: VectorStore,
        *,
        k: int = 3,
        fetch_k: int | None = None,
        weights: RAGWeights | None = None,
        judge: object = None,
        judge_prompt: str = DEFAULT_JUDGE_PROMPT,
        fixed_prompts: Mapping[str, str] | None = None,
        store_in_thread: bool = True,
        max_concurrency: int = 8,
        **lm_options: Any,
    ) -> None:
        if not isinstance(store, VectorStore):
            raise ConfigError(
                f"store must be a VectorStore (add, query, get, count), got {type(store).__name__}"
            )
        self.k = check_k(k)
        self.fetch_k = 2 * self.k if fetch_k is None else check_k(fetch_k)
        if self.fetch_k < self.k:
            raise ConfigError(f"fetch_k ({fetch_k}) must be >= k ({k})")
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise ConfigError(f"max_concurrency must be an int >= 1, got {max_concurrency!r}")
        fixed = dict({ANSWER: DEFAULT_ANSWER_PROMPT} if fixed_prompts is None else fixed_prompts)
        unknown = sorted(set(fixed) - set(COMPONENTS))
        if unknown or not all(isinstance(v, str) for v in fixed.values()):
            raise ConfigError(
                f"fixed_prompts maps steps {list(COMPONENTS)} to prompt strings; "
                f"got {unknown or fixed}"
            )
        if isinstance(model, str):
            from gepetto.lm.registry import resolve_lm

            model = resolve_lm(model, **lm_options)
        elif lm_options:
            raise ConfigError("LM options only apply to a model string; configure your client")
        self.model = model
        self._lm: AsyncLM = as_async_lm(model, role="task_lm")
        self.judge = judge
        self._judge: AsyncLM | None = (
            as_async_lm(judge, role="judge") if judge is not None else None
        )
        self.judge_prompt = judge_prompt
        self.store = store
        self.weights = weights or RAGWeights()
        self.fixed_prompts = fixed
        self.max_concurrency = max_concurrency
        self.store_in_thread = store_in_thread
        self._slots = PerLoopSemaphore(self.max_concurrency)

    # ----- configuration ---------------------------------------------------------------------

    def seed_candidate(self, **prompts: str) -> dict[str, str]:
        """A candidate of the named steps' prompts, e.g.
        ``seed_candidate(query_rewrite="...", answer="...")``.

        Raises:
            ConfigError: an unknown step, a prompt that is not a string, or no step.
        """
        unknown = sorted(set(prompts) - set(COMPONENTS))
        if unknown or not prompts or not all(isinstance(v, str) for v in prompts.values()):
            raise ConfigError(
                f"seed_candidate takes prompts (strings) for the steps {list(COMPONENTS)}; "
                f"got {sorted(prompts)}"
            )
        return {name: prompts[name] for name in COMPONENTS if name in prompts}

    def lm_clients(self) -> Sequence[LMClient]:
        """The gepetto clients this adapter calls (metered by the run as role "task")."""
        return [m for m in (self.model, self.judge) if isinstance(m, LMClient)]

    def fingerprint(self) -> str:
        """The configuration a resumed run must share."""
        model = getattr(self.model, "model", None) or type(self.model).__qualname__
        judge = (
            None
            if self.judge is None
            else getattr(self.judge, "model", None) or type(self.judge).__qualname__
        )
        return (
            f"RAGAdapter(model={model}, store={self.store!r}, k={self.k}, fetch_k={self.fetch_k}, "
            f"weights={self.weights}, judge={judge}, fixed_prompts={self.fixed_prompts!r})"
        )

    def _prompt(self, candidate: Mapping[str, str], step: str) -> str | None:
        return candidate.get(step, self.fixed_prompts.get(step))

    # ----- evaluate --------------------------------------------------------------------------

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, Any], dict[str, Any]]:
        """Run the pipeline on every example (concurrently) and score it."""
        unknown = sorted(set(candidate) - set(COMPONENTS))
        prompts = {step: self._prompt(candidate, step) for step in COMPONENTS}
        slots = self._slots.get()
        runs = await asyncio.gather(
            *(self._run_one(prompts, example, unknown, slots) for example in batch)
        )
        return EvaluationBatch(
            outputs=[
                {
                    "answer": r["answer"],
                    "retrieved_ids": r["retrieved_ids"],
                    "metrics": r["metrics"],
                }
                for r in runs
            ],
            scores=[r["score"] for r in runs],
            trajectories=runs if capture_traces else None,
        )

    async def _run_one(
        self,
        prompts: Mapping[str, str | None],
        example: Any,
        unknown: list[str],
        slots: asyncio.Semaphore,
    ) -> dict[str, Any]:
        trace: dict[str, Any] = {
            "question": "",
            "query": "",
            "retrieved": [],
            "retrieved_ids": [],
            "gold_ids": [],
            "needed": [],
            "rerank_reply": None,
            "context": None,
            "answer": "",
            "gold_answers": [],
            "metrics": {},
            "score": 0.0,
            "feedback": "",
            "error": None,
        }
        try:
            if unknown:
                raise _StepFailed(
                    f"the candidate has components {unknown} that are not steps of this "
                    f"pipeline ({list(COMPONENTS)})"
                )
            question, gold_ids, gold_answers = _read_example(example)
            trace.update(question=question, gold_ids=gold_ids, gold_answers=gold_answers)
            async with slots:
                await self._pipeline(prompts, trace)
            trace["needed"] = await self._needed(gold_ids, trace["retrieved"])
            values = self._metrics(trace, answered=prompts[ANSWER] is not None)
            if self._judge is not None and prompts[ANSWER] is not None and gold_answers:
                values["judge"] = await self._judge_answer(trace)
            trace["metrics"] = values
            if not values:
                raise _StepFailed(
                    "the example has nothing to score against: give it 'gold_ids' and/or a gold "
                    "'answer' (and let the pipeline answer)"
                )
            trace["score"] = self.weights.combine(values)
            trace["feedback"] = _feedback(trace, self.weights, self.k)
        except Exception as error:
            if is_fatal(error):
                raise
            detail = (
                str(error) if isinstance(error, _StepFailed) else f"{type(error).__name__}: {error}"
            )
            trace["error"] = detail
            trace["score"] = 0.0
            trace["metrics"] = {}
            trace["feedback"] = f"The pipeline failed: {detail}"
        return trace

    async def _pipeline(self, prompts: Mapping[str, str | None], trace: dict[str, Any]) -> None:
        question = trace["question"]
        query = question
        if prompts[QUERY_REWRITE] is not None:
            reply = await self._call(QUERY_REWRITE, prompts[QUERY_REWRITE], question)
            query = " ".join(reply.split()) or question
        trace["query"] = query
        fetch = self.fetch_k if prompts[RERANK] is not None else self.k
        try:
            hits = await self._store_call(self.store.query, query, fetch)
        except Exception as error:
            raise _StepFailed(
                f"the store's query failed: {type(error).__name__}: {error}"
            ) from error
        if prompts[RERANK] is not None and len(hits) > 1:
            reply = await self._call(RERANK, prompts[RERANK], _rerank_message(question, hits))
            trace["rerank_reply"] = reply
            hits = _reorder(hits, reply)
        hits = hits[: self.k]
        trace["retrieved"] = [_hit_record(h) for h in hits]
        trace["retrieved_ids"] = [h.id for h in hits]
        if prompts[ANSWER] is None and prompts[CONTEXT_SYNTHESIS] is None:
            return
        context = _passages_text(hits)
        if prompts[CONTEXT_SYNTHESIS] is not None:
            context = await self._call(
                CONTEXT_SYNTHESIS, prompts[CONTEXT_SYNTHESIS], f"{context}\n\nQuestion: {question}"
            )
            trace["context"] = context
        if prompts[ANSWER] is not None:
            answer = await self._call(
                ANSWER, prompts[ANSWER], f"Context:\n{context}\n\nQuestion: {question}"
            )
            trace["answer"] = answer.strip()

    async def _store_call(self, method: Callable[..., T], *args: Any) -> T:
        if self.store_in_thread:
            return await asyncio.to_thread(method, *args)
        return method(*args)

    async def _call(self, step: str, system: str | None, user: str) -> str:
        messages = [{"role": "system", "content": system or ""}, {"role": "user", "content": user}]
        try:
            reply = await self._lm(messages)
        except Exception as error:
            if is_fatal(error):
                raise
            raise _StepFailed(
                f"the {step} model call failed: {type(error).__name__}: {error}"
            ) from error
        return str(reply)

    async def _needed(
        self, gold_ids: list[str], retrieved: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The gold passages (id, short text, whether retrieved); the store is asked only for
        the texts of the missed ones."""
        if not gold_ids:
            return []
        texts = {r["id"]: r["text"] for r in retrieved}
        missed = [i for i in gold_ids if i not in texts]
        if missed:
            try:
                found = await self._store_call(self.store.get, missed)
                texts.update({d.id: d.text for d in found})
            except Exception:  # the texts help the reflection; scoring does not need them
                pass
        retrieved_ids = {r["id"] for r in retrieved}
        return [
            {
                "id": doc_id,
                "text": _snippet(texts[doc_id]) if doc_id in texts else "(not in the store)",
                "retrieved": doc_id in retrieved_ids,
            }
            for doc_id in gold_ids
        ]

    def _metrics(self, trace: Mapping[str, Any], *, answered: bool) -> dict[str, float]:
        values: dict[str, float] = {}
        retrieved, gold = trace["retrieved_ids"], trace["gold_ids"]
        if gold:
            values["recall"] = recall_at_k(retrieved, gold, self.k)
            values["precision"] = precision_at_k(retrieved, gold, self.k)
            values["mrr"] = reciprocal_rank(retrieved, gold, self.k)
            values["ndcg"] = ndcg_at_k(retrieved, gold, self.k)
        if answered and trace["gold_answers"]:
            values["exact_match"] = exact_match(trace["answer"], trace["gold_answers"])
            values["f1"] = token_f1(trace["answer"], trace["gold_answers"])
        return values

    async def _judge_answer(self, trace: dict[str, Any]) -> float:
        if self._judge is None:
            return 0.0
        user = (
            f"Question: {trace['question']}\nGold answer: {trace['gold_answers'][0]}\n"
            f"Candidate answer: {trace['answer']}"
        )
        messages = [
            {"role": "system", "content": self.judge_prompt},
            {"role": "user", "content": user},
        ]
        try:
            reply = str(await self._judge(messages))
        except Exception as error:
            if is_fatal(error):
                raise
            trace["judge_reply"] = f"(the judge failed: {type(error).__name__}: {error})"
            return 0.0
        trace["judge_reply"] = reply.strip()[:200]
        return _judge_score(reply)

    # ----- reflection ------------------------------------------------------------------------

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """Per component, one record per example: the question, what the component produced,
        the retrieved and the needed passages, the query, the answer, the gold answer and the
        feedback with every metric."""
        traces = eval_batch.trajectories or []
        return {name: [_record(t, name) for t in traces] for name in components_to_update}


def _read_example(example: Any) -> tuple[str, list[str], list[str]]:
    if not isinstance(example, Mapping):
        raise _StepFailed(
            f"an example is a dict with 'question' (or 'input'), 'gold_ids' and/or 'answer', "
            f"got {type(example).__name__}"
        )
    question = example.get("question", example.get("input"))
    if not isinstance(question, str) or not question.strip():
        raise _StepFailed("the example has no 'question' (or 'input') string")
    gold_ids = example.get("gold_ids") or []
    if isinstance(gold_ids, str) or not all(isinstance(i, str) for i in gold_ids):
        raise _StepFailed("the example's 'gold_ids' must be a list of passage id strings")
    answers = example.get("answers") or (
        [example["answer"]] if example.get("answer") is not None else []
    )
    if isinstance(answers, str):
        answers = [answers]
    return question, list(gold_ids), [str(a) for a in answers]


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET else flat[:_SNIPPET] + "..."


def _hit_record(hit: Hit) -> dict[str, Any]:
    return {"id": hit.id, "score": round(float(hit.score), 4), "text": hit.text}


def _passages_text(hits: Sequence[Hit]) -> str:
    return "\n".join(f"[{h.id}] {h.text}" for h in hits) or "(no passage found)"


def _rerank_message(question: str, hits: Sequence[Hit]) -> str:
    return (
        f"Question: {question}\n\nPassages:\n{_passages_text(hits)}\n\n"
        "Reply with the passage ids, most useful first."
    )


def _reorder(hits: list[Hit], reply: str) -> list[Hit]:
    """Hits in the order the reply names their ids; unnamed hits keep their order after."""
    by_id = {h.id: h for h in hits}
    pattern = "|".join(re.escape(i) for i in sorted(by_id, key=len, reverse=True))
    named = list(dict.fromkeys(re.findall(pattern, reply))) if pattern else []
    ordered = [by_id[i] for i in named]
    return ordered + [h for h in hits if h.id not in set(named)]


def _judge_score(reply: str) -> float:
    text = reply.strip().lower()
    match = _NUMBER.search(text)
    if match:
        return float(match.group())
    if text.startswith(("yes", "correct")):
        return 1.0
    return 0.0


def _feedback(trace: Mapping[str, Any], weights: RAGWeights, k: int) -> str:
    values = trace["metrics"]
    lines = []
    if "recall" in values:
        missed = [n for n in trace["needed"] if not n["retrieved"]]
        found = [n["id"] for n in trace["needed"] if n["retrieved"]]
        lines.append(
            f"Retrieval (top {k}): recall {values['recall']:.2f}, precision "
            f"{values['precision']:.2f}, reciprocal rank {values['mrr']:.2f}, nDCG "
            f"{values['ndcg']:.2f}. Needed passages found: {', '.join(found) or 'none'}."
        )
        if missed:
            lines.append(
                "Needed passages NOT retrieved: "
                + "; ".join(f"{n['id']} ({n['text']!r})" for n in missed)
                + f". The search query was {trace['query']!r}."
            )
        extra = [r["id"] for r in trace["retrieved"] if r["id"] not in set(trace["gold_ids"])]
        if extra:
            lines.append(f"Retrieved but not needed: {', '.join(extra)}.")
    if "exact_match" in values:
        verdict = "correct" if values["exact_match"] == 1 else "not an exact match"
        lines.append(
            f"Answer {trace['answer']!r} vs gold {trace['gold_answers'][0]!r}: {verdict} "
            f"(exact match {values['exact_match']:.0f}, token F1 {values['f1']:.2f})."
        )
    if "judge" in values:
        lines.append(f"Judge: {values['judge']:.2f} ({trace.get('judge_reply', '')!r}).")
    lines.append(
        f"Score {trace['score']:.3f} (weighted mean; weights {_weights_text(weights, values)})."
    )
    return " ".join(lines)


def _weights_text(weights: RAGWeights, values: Mapping[str, float]) -> str:
    table = asdict(weights)
    return ", ".join(f"{name} {table[name]:g}" for name in values if table.get(name, 0) > 0)


def _record(trace: Mapping[str, Any], component: str) -> dict[str, Any]:
    produced = {
        QUERY_REWRITE: trace["query"],
        RERANK: trace["rerank_reply"] or "",
        CONTEXT_SYNTHESIS: trace["context"] or "",
        ANSWER: trace["answer"],
    }.get(component, trace["answer"])
    return {
        "Inputs": trace["question"],
        "Generated Outputs": produced,
        "Search query": trace["query"],
        "Retrieved passages": [f"{r['id']}: {_snippet(r['text'])}" for r in trace["retrieved"]]
        or "(none)",
        "Needed passages": [
            f"{n['id']}{'' if n['retrieved'] else ' (missed)'}: {n['text']}"
            for n in trace["needed"]
        ]
        or "(no gold passages given)",
        "Answer": trace["answer"],
        "Gold answer": trace["gold_answers"][0] if trace["gold_answers"] else "(none given)",
        "Feedback": trace["feedback"],
    }

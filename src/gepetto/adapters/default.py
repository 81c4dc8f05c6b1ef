"""The built-in adapter for single-turn tasks (gepa's ``DefaultAdapter``, async).

An example is a dict ``{"input": str, "answer": str, "additional_context": {...}}``
(``additional_context`` optional). The candidate's component (the first one unless
``component=`` names another) is the system prompt; the example's input is the user message;
an *evaluator* scores the reply and says why::

    adapter = DefaultAdapter("local/qwen2.5-coder-0.5b", evaluator=exact_match_evaluator())

With ``system_prompt_template`` the optimized text is only part of the system prompt: a
fixed part the optimizer must not change (an answer format a small task model needs, say)
stays in the template, and ``{text}`` marks where the candidate's text goes::

    DefaultAdapter(model, exact_match_evaluator(),
                   system_prompt_template="{text}\n\nAnswer with only one label: a, b or c.")

All examples of a batch are sent concurrently (up to ``max_concurrency``). A failing model
call scores 0 with the error as feedback, except fatal errors (bad credentials, open circuit
breaker), which stop the run.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM, as_async_lm
from gepetto.types import EvaluationBatch

__all__ = [
    "DefaultAdapter",
    "EvaluationResult",
    "contains_answer_evaluator",
    "exact_match_evaluator",
    "normalize_label",
]

TEXT_PLACEHOLDER = "{text}"
"""Where a ``system_prompt_template`` takes the candidate's text."""


class EvaluationResult(NamedTuple):
    """An evaluator's verdict on one reply."""

    score: float
    feedback: str
    objective_scores: dict[str, float] | None = None


Evaluator = Callable[[Mapping[str, Any], str], "EvaluationResult | tuple[float, str]"]


def normalize_label(text: str) -> str:
    """Lowercase, trimmed of whitespace, quotes, backticks and a final period."""
    return text.strip().strip("\"'`").strip().rstrip(".").strip().lower()


def _context(data: Mapping[str, Any]) -> str:
    extra = data.get("additional_context") or {}
    return "".join(f"\n{key}: {value}" for key, value in extra.items())


def contains_answer_evaluator(failure_score: float = 0.0) -> Evaluator:
    """Score 1 when the expected answer appears in the reply (gepa's default evaluator)."""

    def evaluate(data: Mapping[str, Any], response: str) -> EvaluationResult:
        answer = str(data["answer"])
        if answer in response:
            return EvaluationResult(1.0, f"Correct: the response contains '{answer}'.")
        return EvaluationResult(
            failure_score,
            f"Incorrect: the correct answer is '{answer}'. The response must contain it "
            f"exactly.{_context(data)}",
        )

    return evaluate


def exact_match_evaluator(normalize: Callable[[str], str] = normalize_label) -> Evaluator:
    """Score 1 when the normalized reply equals the normalized answer.

    The feedback names the expected answer, shows what was produced, and adds the example's
    ``additional_context`` (for example the rule that decides the label).
    """

    def evaluate(data: Mapping[str, Any], response: str) -> EvaluationResult:
        expected = normalize(str(data["answer"]))
        got = normalize(response)
        if got == expected:
            return EvaluationResult(1.0, f"Correct: the answer is '{expected}'.")
        shown = response.strip().replace("\n", " ")[:200]
        return EvaluationResult(
            0.0,
            f"Incorrect: expected exactly '{expected}' but the response was '{shown}'."
            f"{_context(data)}",
        )

    return evaluate


class DefaultAdapter:
    """A single-turn system: system prompt from the candidate, one LM call per example.

    Args:
        model: the task model: an LM client, a model string (``"openai/gpt-4.1-mini"``), or
            any callable ``messages -> str`` (sync or async).
        evaluator: ``(example, response) -> EvaluationResult`` (or ``(score, feedback)``);
            default: :func:`contains_answer_evaluator`.
        component: the candidate component used as system prompt (default: the first).
        system_prompt_template: the system prompt with ``{text}`` where the component's text
            goes (replaced literally, so other braces are kept); default: the text alone.
            The reflection sees and rewrites only the component's text.
        max_concurrency: LM calls in flight at once for one batch.
        **lm_options: options for a model string (``temperature``, ``max_tokens``, ...).
    """

    def __init__(
        self,
        model: object,
        evaluator: Evaluator | None = None,
        *,
        component: str | None = None,
        system_prompt_template: str | None = None,
        max_concurrency: int = 8,
        **lm_options: Any,
    ) -> None:
        if system_prompt_template is not None and TEXT_PLACEHOLDER not in system_prompt_template:
            raise ConfigError(
                f"system_prompt_template must contain {TEXT_PLACEHOLDER} where the optimized "
                f"text goes, got {system_prompt_template!r}"
            )
        if isinstance(model, str):
            from gepetto.lm.registry import resolve_lm

            model = resolve_lm(model, **lm_options)
        elif lm_options:
            raise ConfigError("LM options only apply to a model string; configure your client")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.model = model
        self._lm: AsyncLM = as_async_lm(model, role="task_lm")
        self.evaluator = evaluator or contains_answer_evaluator()
        self.component = component
        self.system_prompt_template = system_prompt_template
        self.max_concurrency = max_concurrency
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    def fingerprint(self) -> str:
        """The configuration a resumed run must share (model, component, evaluator, and the
        system prompt template when there is one)."""
        model = getattr(self.model, "model", None) or type(self.model).__qualname__
        evaluator = getattr(self.evaluator, "__qualname__", type(self.evaluator).__qualname__)
        template = (
            ""
            if self.system_prompt_template is None
            else f", system_prompt_template={self.system_prompt_template!r}"
        )
        return (
            f"DefaultAdapter(model={model}, component={self.component}, "
            f"evaluator={evaluator}{template})"
        )

    def system_prompt(self, candidate: Mapping[str, str]) -> str:
        """The system prompt for a candidate: its component's text, in the template if any."""
        text = candidate[self.component] if self.component else next(iter(candidate.values()))
        if self.system_prompt_template is None:
            return text
        return self.system_prompt_template.replace(TEXT_PLACEHOLDER, text)

    def lm_clients(self) -> Sequence[LMClient]:
        """The gepetto clients this adapter calls (metered by the run as role "task")."""
        return [self.model] if isinstance(self.model, LMClient) else []

    async def evaluate(
        self,
        batch: list[Mapping[str, Any]],
        candidate: dict[str, str],
        capture_traces: bool = False,
    ) -> EvaluationBatch[dict[str, Any], dict[str, str]]:
        """Answer every example with the candidate's system prompt and score the replies."""
        system = self.system_prompt(candidate)
        slots = self._semaphore()
        results = await asyncio.gather(*(self._run_one(system, data, slots) for data in batch))
        outputs = [{"full_assistant_response": response} for response, _ in results]
        scores = [verdict.score for _, verdict in results]
        objectives = [verdict.objective_scores for _, verdict in results]
        trajectories = [
            {"data": data, "full_assistant_response": response, "feedback": verdict.feedback}
            for data, (response, verdict) in zip(batch, results, strict=True)
        ]
        return EvaluationBatch(
            outputs=outputs,
            scores=scores,
            trajectories=trajectories if capture_traces else None,
            objective_scores=[o or {} for o in objectives] if any(objectives) else None,
        )

    def _semaphore(self) -> asyncio.Semaphore:
        """The concurrency cap of the current event loop (one adapter may serve several)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(self.max_concurrency))
        return self._slots[1]

    async def _run_one(
        self, system: str, data: Mapping[str, Any], slots: asyncio.Semaphore
    ) -> tuple[str, EvaluationResult]:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": str(data["input"])},
        ]
        try:
            async with slots:
                response = await self._lm(messages)
        except Exception as error:
            if is_fatal(error):
                raise
            return "", EvaluationResult(
                0.0, f"The model call failed: {type(error).__name__}: {error}"
            )
        verdict: Any = self.evaluator(data, response)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        if not isinstance(verdict, EvaluationResult):
            score, feedback = verdict  # a plain (score, feedback) tuple
            verdict = EvaluationResult(float(score), str(feedback))
        return response, verdict

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[dict[str, Any], dict[str, str]],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """The same records for each component: inputs, generated outputs, feedback."""
        records = [
            {
                "Inputs": trace["data"]["input"],
                "Generated Outputs": trace["full_assistant_response"],
                "Feedback": trace["feedback"],
            }
            for trace in eval_batch.trajectories or []
        ]
        return {name: list(records) for name in components_to_update}

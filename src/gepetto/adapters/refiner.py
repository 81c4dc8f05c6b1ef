"""``optimize_anything``'s refiner (gepa 0.1.4's): a second model that polishes each
evaluated candidate on the spot, from what its evaluation revealed.

With :class:`~gepetto.engine.options.RefinerConfig` given, the seed gets a
``"refiner_prompt"`` component (the refiner's instructions, evolved by reflection like any
other component). After each evaluation of an example, :meth:`Refiner.refine` shows the
refiner model the candidate's other components as JSON and the history of attempts; the
model answers with a JSON object of refined texts, which is evaluated on the same example.
Refining goes on while the score strictly improves, at most ``max_refinements`` times; the
example's score is the best one. The example's side information stays the original
evaluation's, with ``"refiner_prompt_specific_info"``: ``{"Attempts": [...]}`` (and
``"scores"``, the best attempt's, when the evaluation reports scores).

Each refined evaluation is a metric call, asked from the run's budget before the refiner
model is called (:func:`~gepetto.adapter.request_metric_calls`): refining stops when the
budget has no call left, so a run with a refiner never exceeds ``max_metric_calls`` and
pays for no reply it could not score. A call granted for an unusable reply is kept for
the next attempt (or given back when the evaluation is recorded). A reply that is not a JSON
object of texts is recorded as an attempt (with the error and the raw reply) and the model
is asked again; a failing refiner model ends the refining of that example.

Example:
    >>> import asyncio
    >>> async def lm(prompt):
    ...     return '{"answer": "42"}'
    >>> async def evaluate(candidate):
    ...     return (1.0 if candidate["answer"] == "42" else 0.0), {}
    >>> refiner = Refiner(lm, max_refinements=2)
    >>> candidate = {"answer": "41", "refiner_prompt": "Fix the answer."}
    >>> refined = asyncio.run(refiner.refine(candidate, 0.0, {}, evaluate))
    >>> refined.score, refined.calls, refined.candidate["answer"]  # the 2nd did not improve
    (1.0, 2, '42')
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gepetto.adapter import request_metric_calls
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM

__all__ = [
    "DEFAULT_REFINER_PROMPT",
    "REFINER_COMPONENT",
    "REFINER_PROMPT_TEMPLATE",
    "Refined",
    "Refiner",
    "default_refiner_prompt",
]

REFINER_COMPONENT = "refiner_prompt"
"""The component holding the refiner's instructions (gepa's name)."""

DEFAULT_REFINER_PROMPT = """\
You refine candidates inside an optimization loop: each refined candidate is scored again \
right away, and the better score counts.

What the optimization aims at (what "better" means):
{objective}

What is known about the domain:
{background}

From a candidate and how it was evaluated:
1. find why it got its score;
2. fix what failed (an error scores zero);
3. improve it toward the aim;
4. give back the complete refined candidate."""
"""The seed's ``refiner_prompt`` (``{objective}`` and ``{background}`` are filled in)."""

REFINER_PROMPT_TEMPLATE = """\
Refine a candidate so that it scores higher.

Instructions:
{refiner_prompt}

The candidate (JSON, one text per component):
```json
{candidate}
```

Every attempt so far, with its score and evaluation (higher scores are better):
```json
{attempts}
```

Reply with one JSON object holding the refined text of each component, and nothing else."""
"""What the refiner model is asked, each time."""

FAILED_ATTEMPT_SCORE = -1e9
"""The score recorded for an attempt that produced no candidate (gepa's)."""

_FENCED = re.compile(r"```[^\n]*\n(.*?)\n?```", re.DOTALL)


def default_refiner_prompt(objective: str | None, background: str | None) -> str:
    """The seed's ``refiner_prompt`` for this objective and background."""
    return DEFAULT_REFINER_PROMPT.format(
        objective=(objective or "").strip() or "Maximize the score.",
        background=(background or "").strip() or "Nothing more is known.",
    )


@dataclass(frozen=True, slots=True)
class Refined:
    """The outcome of refining one evaluation.

    Attributes:
        score: the best score: the original one or a refined candidate's.
        candidate: the candidate that got it.
        side_info: the original side information with ``refiner_prompt_specific_info``.
        calls: the refined candidates evaluated (metric calls beyond the original one).
    """

    score: float
    candidate: dict[str, str]
    side_info: dict[str, Any]
    calls: int


Evaluate = Callable[[dict[str, str]], Awaitable[tuple[float, dict[str, Any]]]]


class Refiner:
    """Asks a model for refined candidates and keeps the best (see the module docstring).

    Args:
        lm: the refiner model (async; :func:`~gepetto.lm.protocol.as_async_lm` makes one).
        max_refinements: refined candidates evaluated per example, at most.
        client: the gepetto LM client behind ``lm``, if any: the run meters its calls
            (:meth:`~gepetto.adapters.anything.AnythingAdapter.lm_clients`).
    """

    def __init__(self, lm: AsyncLM, max_refinements: int = 1, client: object = None) -> None:
        self._lm = lm
        self.max_refinements = max_refinements
        self.client = client

    async def refine(
        self,
        candidate: Mapping[str, str],
        score: float,
        side_info: Mapping[str, Any],
        evaluate: Evaluate,
    ) -> Refined:
        """Refine ``candidate``, evaluated with ``score`` and ``side_info``; ``evaluate``
        scores a refined candidate on the same example."""
        instructions = candidate.get(REFINER_COMPONENT, "")
        current = {k: v for k, v in candidate.items() if k != REFINER_COMPONENT}
        attempts: list[dict[str, Any]] = [
            {"iteration": 0, "candidate": current, "score": score, "side_info": side_info}
        ]
        best_score, best = score, dict(candidate)
        calls = 0
        granted = False  # a metric call reserved for the next refined candidate
        for iteration in range(1, self.max_refinements + 1):
            # Asked before the model is: with no call left, its reply could not be scored.
            if not granted and request_metric_calls(1) < 1:
                break
            granted = True
            prompt = REFINER_PROMPT_TEMPLATE.format(
                refiner_prompt=instructions,
                candidate=json.dumps(current, indent=2, ensure_ascii=False),
                attempts=json.dumps(attempts, indent=2, ensure_ascii=False, default=str),
            )
            try:
                reply = str(await self._lm(prompt))
            except Exception as error:  # a failing refiner ends this example's refining
                if is_fatal(error):
                    raise
                attempts.append(_failed(iteration, f"{type(error).__name__}: {error}"))
                break
            texts, problem = _parse_reply(reply, current)
            if texts is None:
                attempts.append(_failed(iteration, problem, reply))
                continue
            refined = {**texts, REFINER_COMPONENT: instructions}
            refined_score, refined_info = await evaluate(refined)
            calls, granted = calls + 1, False
            attempts.append(
                {
                    "iteration": iteration,
                    "candidate": texts,
                    "score": refined_score,
                    "side_info": refined_info,
                }
            )
            if refined_score <= best_score:
                break  # refining goes on only while it strictly improves
            best_score, best, current = refined_score, refined, texts
        info = dict(side_info)
        specific: dict[str, Any] = {"Attempts": attempts}
        if "scores" in side_info:
            evaluated = [a for a in attempts if "side_info" in a]
            top = max(evaluated, key=lambda attempt: attempt["score"])
            scores = top["side_info"].get("scores")
            specific["scores"] = dict(scores) if isinstance(scores, Mapping) else {}
        info[f"{REFINER_COMPONENT}_specific_info"] = specific
        return Refined(best_score, best, info, calls)


def _failed(iteration: int, error: str, reply: str | None = None) -> dict[str, Any]:
    attempt: dict[str, Any] = {"iteration": iteration, "error": error}
    if reply is not None:
        attempt["raw_output"] = reply[:2000]
    attempt["score"] = FAILED_ATTEMPT_SCORE
    return attempt


def _parse_reply(reply: str, current: Mapping[str, str]) -> tuple[dict[str, str] | None, str]:
    """The refined texts (the current ones for components the reply leaves out), or why
    the reply gives none."""
    text = reply.strip()
    fenced = _FENCED.search(text)
    if fenced is not None:
        text = fenced.group(1).strip()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"JSON parse error: {error}"
    if not isinstance(parsed, dict):
        return None, f"JSON parse error: expected a JSON object, got {type(parsed).__name__}"
    unknown = sorted(str(k) for k in parsed if k not in current)
    if unknown:
        return None, (
            f"unknown component(s) {', '.join(unknown)}; the components are "
            f"{', '.join(sorted(current))}"
        )
    not_text = sorted(k for k, v in parsed.items() if not isinstance(v, str))
    if not_text:
        return None, f"component(s) {', '.join(not_text)} must be strings"
    return {**current, **parsed}, ""

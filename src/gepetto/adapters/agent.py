"""A multi-turn, tool-using agent as a GEPA adapter: its system prompt and its tools'
descriptions are the texts the optimizer rewrites.

Tools are plain Python functions (sync or ``async def``, see :mod:`gepetto.adapters.tools`);
the model calls them with the text protocol of that module, sees their results, and ends
with a final answer (the built-in ``final_answer`` tool, or a reply without a tool call) or
runs out of turns. A metric scores the
final answer, with the whole trajectory at hand::

    def lookup_price(item: str) -> float:
        \"\"\"The unit price of an item, in dollars.\"\"\"
        return PRICES[item]

    def multiply(a: float, b: float) -> float:
        \"\"\"The product of two numbers.\"\"\"
        return a * b

    def metric(example, answer, trajectory):
        ok = str(example["answer"]) in answer
        return (1.0, "Correct.") if ok else (0.0, f"Expected {example['answer']}.")

    adapter = AgentAdapter("local/qwen2.5-coder-0.5b", [lookup_price, multiply], metric,
                           temperature=0, max_tokens=128)
    result = gepetto.optimize(adapter.seed_candidate("Answer the question."), trainset, valset,
                              adapter=adapter, reflection_lm=..., max_metric_calls=100)

Components: ``"system_prompt"`` and ``"tool:<name>"`` per tool (the tool's description,
seeded from its docstring). A candidate without a tool's component uses the docstring, so a
run may optimize the system prompt alone.

An example is a mapping with an ``"input"`` (the user's message) or a string. The metric is
``metric(example, final_answer, trajectory) -> score | (score, feedback)`` (sync or async).
A trajectory is plain JSON: the messages, every tool call with its arguments and result (or
error), the final answer, why the loop stopped, the score and the feedback, so a run's
evaluations can be stored and resumed. A tool that raises gives the model an error result;
a tool that raises :class:`~gepetto.adapters.tools.ToolUnavailable` (the service behind it is
gone), a failing model call or metric scores 0 with the error as feedback, except fatal LM
errors (bad credentials, open circuit breaker), which stop the run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from gepetto.adapters.default import EvaluationResult
from gepetto.adapters.running import PerLoopSemaphore, metric_verdict
from gepetto.adapters.tools import Tool, ToolCall, ToolUnavailable, parse_tool_calls, run_tool
from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM, as_async_lm
from gepetto.types import EvaluationBatch

__all__ = ["FINAL_ANSWER", "PROTOCOL", "SYSTEM_PROMPT", "TOOL_PREFIX", "AgentAdapter", "Metric"]

SYSTEM_PROMPT = "system_prompt"
"""The component holding the agent's system prompt."""

FINAL_ANSWER = "final_answer"
"""The built-in tool that ends the loop: its ``answer`` argument is the final answer (a reply
without any tool call is a final answer too). Small models that keep calling tools stop
more reliably when the answer is one more tool call."""

TOOL_PREFIX = "tool:"
"""Tool description components are named ``"tool:<tool name>"``."""

Metric = Callable[
    [Any, str, Mapping[str, Any]],
    "float | tuple[float, str] | EvaluationResult | Awaitable[Any]",
]

PROTOCOL = """You can call these tools:
{tools}

To call a tool, reply with only one JSON object in a fenced block, and nothing else:
```json
{"tool": "<tool name>", "arguments": {"<parameter>": <value>}}
```
The result comes back in the next message; call tools as many times as you need. When you
know the answer, give it with the final_answer tool:
```json
{"tool": "final_answer", "arguments": {"answer": "<the answer>"}}
```"""
"""What the model is told about the tools and how to call them (not optimized)."""

_NEXT_STEP = (
    "Call the next tool your instructions ask for, or final_answer once the question is fully "
    "answered."
)
"""Ends every tool results message: small models otherwise repeat the call they made."""

_ONE_CALL = " (only the first tool call of a message is run)"

_RESULT_CHARS = 2000
"""A tool result longer than this is cut in the trajectory and the next message."""


class AgentAdapter:
    """An agent (system prompt + Python tools, multi-turn) scored by a metric.

    Args:
        model: the agent's LM: a gepetto LM client, a model string, or any callable
            ``messages -> str`` (sync or async).
        tools: the functions (or :class:`~gepetto.adapters.tools.Tool` objects) it may call.
        metric: ``(example, final_answer, trajectory) -> score | (score, feedback)``.
        max_turns: model calls per example at most; a run out of turns scores the last
            reply as its answer (``"stopped": "max_turns"`` in the trajectory).
        protocol: the tool instructions appended to the system prompt, with ``{tools}``
            where the tool list goes (see :data:`PROTOCOL`).
        max_concurrency: examples run at once for one batch.
        **lm_options: options for a model string (``temperature``, ``max_tokens``, ...).

    Raises:
        ConfigError: no tools, two tools of one name, ``max_turns`` or ``max_concurrency``
            below 1, a protocol without ``{tools}``, or LM options with a non-string model.
    """

    def __init__(
        self,
        model: object,
        tools: Sequence[Callable[..., Any] | Tool],
        metric: Metric,
        *,
        max_turns: int = 6,
        protocol: str = PROTOCOL,
        max_concurrency: int = 8,
        **lm_options: Any,
    ) -> None:
        if isinstance(model, str):
            from gepetto.lm.registry import resolve_lm

            model = resolve_lm(model, **lm_options)
        elif lm_options:
            raise ConfigError("LM options only apply to a model string; configure your client")
        built = [t if isinstance(t, Tool) else Tool.from_function(t) for t in tools]
        names = [t.name for t in built]
        if not built or len(set(names)) != len(names) or FINAL_ANSWER in names:
            raise ConfigError(
                f"an agent needs tools with distinct names other than {FINAL_ANSWER!r} (the "
                f"built-in tool that ends the loop), got {names}"
            )
        if max_turns < 1 or max_concurrency < 1:
            raise ConfigError(
                f"max_turns and max_concurrency must be >= 1, got {max_turns}, {max_concurrency}"
            )
        if "{tools}" not in protocol:
            raise ConfigError("protocol must contain {tools} where the tool list goes")
        self.model = model
        self._lm: AsyncLM = as_async_lm(model, role="task_lm")
        self.tools: dict[str, Tool] = {t.name: t for t in built}
        self.metric = metric
        self.max_turns = max_turns
        self.protocol = protocol
        self.max_concurrency = max_concurrency
        self._slots = PerLoopSemaphore(self.max_concurrency)

    # ----- configuration ---------------------------------------------------------------------

    def seed_candidate(self, system_prompt: str) -> dict[str, str]:
        """A candidate with ``system_prompt`` and each tool's docstring description."""
        return {
            SYSTEM_PROMPT: system_prompt,
            **{TOOL_PREFIX + name: tool.description for name, tool in self.tools.items()},
        }

    def system_message(self, candidate: Mapping[str, str]) -> str:
        """The system prompt the model gets: the candidate's prompt, then the tools as the
        candidate describes them, then how to call them."""
        listed = "\n".join(
            f"- {tool.signature_text()}: {self._description(candidate, tool)}"
            for tool in self.tools.values()
        )
        prompt = candidate.get(SYSTEM_PROMPT, "")
        return f"{prompt}\n\n{self.protocol.replace('{tools}', listed)}".strip()

    def _description(self, candidate: Mapping[str, str], tool: Tool) -> str:
        return candidate.get(TOOL_PREFIX + tool.name, tool.description).strip()

    def lm_clients(self) -> Sequence[LMClient]:
        """The gepetto clients this adapter calls (metered by the run as role "task")."""
        return [self.model] if isinstance(self.model, LMClient) else []

    def fingerprint(self) -> str:
        """The configuration a resumed run must share (model, tools, metric, turns)."""
        model = getattr(self.model, "model", None) or type(self.model).__qualname__
        metric = getattr(self.metric, "__qualname__", type(self.metric).__qualname__)
        tools = ", ".join(t.signature_text() for t in self.tools.values())
        return (
            f"AgentAdapter(model={model}, tools=[{tools}], metric={metric}, "
            f"max_turns={self.max_turns}, protocol={self.protocol!r})"
        )

    # ----- evaluate --------------------------------------------------------------------------

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, Any], dict[str, Any]]:
        """Run the agent on every example (concurrently) and score its final answers."""
        system = self.system_message(candidate)
        slots = self._slots.get()
        runs = await asyncio.gather(*(self._run_one(system, example, slots) for example in batch))
        return EvaluationBatch(
            outputs=[
                {"final_answer": t["final_answer"], "tool_calls": len(t["tool_calls"])}
                for t in runs
            ],
            scores=[t["score"] for t in runs],
            trajectories=runs if capture_traces else None,
        )

    async def _run_one(self, system: str, example: Any, slots: asyncio.Semaphore) -> dict[str, Any]:
        user = str(example["input"]) if isinstance(example, Mapping) else str(example)
        trajectory: dict[str, Any] = {
            "input": user,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": user},
            ],
            "tool_calls": [],
            "final_answer": "",
            "stopped": "max_turns",
        }
        async with slots:
            try:
                await self._loop(trajectory)
            except Exception as error:
                if is_fatal(error):
                    raise
                trajectory["stopped"] = "error"
                trajectory["error"] = f"The model call failed: {type(error).__name__}: {error}"
        if trajectory["stopped"] == "error":
            verdict = EvaluationResult(0.0, trajectory["error"])
        else:
            verdict = await metric_verdict(
                self.metric, example, trajectory["final_answer"], trajectory
            )
        trajectory["score"] = verdict.score
        trajectory["feedback"] = verdict.feedback
        return trajectory

    async def _loop(self, trajectory: dict[str, Any]) -> None:
        """Model, tool calls, tool results, ... until a final answer or ``max_turns``."""
        messages: list[dict[str, Any]] = trajectory["messages"]
        for turn in range(1, self.max_turns + 1):
            reply = await self._lm([dict(m) for m in messages])
            messages.append({"role": "assistant", "content": reply})
            trajectory["final_answer"] = reply.strip()
            calls = parse_tool_calls(reply)
            if not calls:
                trajectory["stopped"] = "answer"
                return
            call = calls[0]  # one action per turn: later calls were written blind
            if call.name == FINAL_ANSWER:
                trajectory["final_answer"] = _as_answer(call.arguments)
                trajectory["stopped"] = "answer"
                return
            if turn == self.max_turns:
                return  # out of turns: the call of the last reply is not run
            result = await self._call(call, turn)
            trajectory["tool_calls"].append(result)
            if result.pop("unavailable", False):
                trajectory["stopped"] = "error"
                trajectory["error"] = f"The tool {call.name} is unavailable: {result['error']}"
                return
            note = _ONE_CALL if len(calls) > 1 else ""
            messages.append(
                {"role": "user", "content": _results_message(result, trajectory["input"], note)}
            )

    async def _call(self, call: ToolCall, turn: int) -> dict[str, Any]:
        record: dict[str, Any] = {
            "turn": turn,
            "tool": call.name,
            "arguments": json.loads(json.dumps(call.arguments, default=str)),
        }
        tool = self.tools.get(call.name)
        if tool is None:
            record["error"] = f"unknown tool {call.name!r}; the tools are {', '.join(self.tools)}"
            return record
        try:
            result, error = await run_tool(tool, call.arguments)
        except ToolUnavailable as unavailable:
            record["error"] = str(unavailable)
            record["unavailable"] = True
            return record
        if error is not None:
            record["error"] = error
        else:
            record["result"] = _cut(result)
        return record

    # ----- reflection ------------------------------------------------------------------------

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """Per component, one record per example: the whole trajectory for the system
        prompt; for a tool's description, the calls to that tool and their outcomes."""
        traces = eval_batch.trajectories or []
        dataset: dict[str, list[dict[str, Any]]] = {}
        for name in components_to_update:
            tool_name = name.removeprefix(TOOL_PREFIX) if name.startswith(TOOL_PREFIX) else None
            if tool_name is not None and tool_name in self.tools:
                dataset[name] = [_tool_record(t, tool_name) for t in traces]
            else:
                dataset[name] = [_agent_record(t) for t in traces]
        return dataset


def _as_answer(arguments: Mapping[str, Any]) -> str:
    """The text of a final_answer call (its ``answer``, else its only argument)."""
    value = arguments.get(
        "answer", next(iter(arguments.values()), "") if len(arguments) == 1 else ""
    )
    return value.strip() if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _cut(text: str) -> str:
    return text if len(text) <= _RESULT_CHARS else text[:_RESULT_CHARS] + " ...[cut]"


def _call_head(call: Mapping[str, Any]) -> str:
    return f"{call['tool']}({json.dumps(call['arguments'], ensure_ascii=False)})"


def _call_text(call: Mapping[str, Any]) -> str:
    outcome = f"error: {call['error']}" if "error" in call else f"-> {call.get('result', '')}"
    return f"{_call_head(call)} {outcome}"


def _results_message(call: Mapping[str, Any], question: str, note: str) -> str:
    outcome = (
        f"failed: {call['error']}" if "error" in call else f"returned: {call.get('result', '')}"
    )
    lines = [f"{_call_head(call)} {outcome}{note}", f"The question was: {question}", _NEXT_STEP]
    return "\n".join(lines)


def _steps_text(trajectory: Mapping[str, Any]) -> str:
    """The agent's turns after the user's message, as the reflection reads them."""
    lines = []
    for message in trajectory["messages"][2:]:
        if message["role"] == "assistant":
            lines.append(f"[Agent] {message['content']}")
        else:  # the outcome line, without the reminders that follow it
            lines.append(f"[Tool] {message['content'].splitlines()[0]}")
    if trajectory.get("stopped") == "max_turns":
        lines.append("[Stopped: out of turns before a final answer]")
    if trajectory.get("error"):
        lines.append(f"[Stopped: {trajectory['error']}]")
    return "\n".join(lines)


def _agent_record(trajectory: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Inputs": trajectory["input"],
        "Trajectory": _steps_text(trajectory),
        "Generated Outputs": trajectory["final_answer"],
        "Feedback": trajectory.get("feedback", ""),
    }


def _tool_record(trajectory: Mapping[str, Any], tool: str) -> dict[str, Any]:
    calls = [c for c in trajectory["tool_calls"] if c["tool"] == tool]
    return {
        "Inputs": trajectory["input"],
        "Calls to this tool": "\n".join(_call_text(c) for c in calls) or "(not called)",
        "Other tool calls": "\n".join(
            _call_text(c) for c in trajectory["tool_calls"] if c["tool"] != tool
        )
        or "(none)",
        "Generated Outputs": trajectory["final_answer"],
        "Feedback": trajectory.get("feedback", ""),
    }

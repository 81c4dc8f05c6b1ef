"""Tools for :class:`~gepetto.adapters.agent.AgentAdapter`: plain Python functions, and the
text protocol the model calls them with.

A tool is a function (sync or ``async def``). Its name is the function's name, its
description the docstring's first paragraph, its parameters the signature: type hints
become a JSON schema, Google-style ``Args:`` lines describe each parameter::

    def weather(city: str, unit: str = "celsius") -> str:
        \"\"\"The current weather in a city.

        Args:
            city: the city's name, in English.
        \"\"\"

The model calls a tool by replying with a JSON object, in a fenced block or alone::

    ```json
    {"tool": "weather", "arguments": {"city": "Paris"}}
    ```

``{"name": ..., "arguments": ...}`` and Qwen's ``<tool_call>{...}</tool_call>`` are read
too, so a model trained on native tool calling is understood as it is. The protocol needs
nothing from the server (any chat model, any gepetto LM client, a plain callable), which is
why it is the one the adapter uses: small local models follow it more reliably than they
produce native ``tool_calls``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gepetto.errors import ConfigError, GepettoError

__all__ = ["Tool", "ToolCall", "ToolUnavailable", "parse_tool_calls", "run_tool"]

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    tuple: "array",
    dict: "object",
}
_FENCED = re.compile(r"```(?:json|tool_call|tool)?\s*\n?(.*?)```", re.DOTALL)
_QWEN_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


class ToolUnavailable(GepettoError):
    """Raised by a tool when the service behind it is gone (an MCP server that crashed),
    not because of the model's arguments: the example stops and scores 0 with this message
    as its feedback, instead of the model reading an error result and going on."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the agent may call, with what the model is told about it.

    Build one with :meth:`from_function`. ``description`` is the seed text of the tool's
    component (``"tool:<name>"``); the optimizer may rewrite it.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., Any] = field(repr=False, compare=False)

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool:
        """A tool from a function: name, docstring and signature (see the module docstring).

        Raises:
            ConfigError: not callable, no name, or a ``*args``/``**kwargs`` parameter.

        Example:
            >>> def add(a: int, b: int = 0) -> int:
            ...     '''Add two integers.'''
            ...     return a + b
            >>> tool = Tool.from_function(add)
            >>> tool.name, tool.description, tool.parameters["required"]
            ('add', 'Add two integers.', ['a'])
        """
        if not callable(function):
            raise ConfigError(f"a tool must be a function, got {type(function).__name__}")
        tool_name = name or getattr(function, "__name__", "")
        if not tool_name or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", tool_name):
            raise ConfigError(f"tool name {tool_name!r} must be an identifier; pass name=...")
        doc = inspect.getdoc(function) or ""
        summary = doc.split("\n\n", 1)[0].strip()
        return cls(
            tool_name,
            description if description is not None else summary,
            _parameters_schema(function, _argument_docs(doc)),
            function,
        )

    def signature_text(self) -> str:
        """``name(city: string, unit?: string)``: how the tool is listed for the model."""
        properties = self.parameters.get("properties", {})
        required = set(self.parameters.get("required", []))
        shown = [
            f"{arg}{'' if arg in required else '?'}: {spec.get('type', 'any')}"
            + (f" ({spec['description']})" if spec.get("description") else "")
            for arg, spec in properties.items()
        ]
        return f"{self.name}({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for."""

    name: str
    arguments: Mapping[str, Any]


def _argument_docs(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section."""
    found: dict[str, str] = {}
    lines = doc.splitlines()
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            inside = True
            continue
        if inside:
            if not stripped or (not line.startswith(" ") and stripped.endswith(":")):
                if found:
                    break
                continue
            match = re.match(r"(\w+)\s*(?:\([^)]*\))?:\s*(.*)", stripped)
            if match:
                found[match.group(1)] = match.group(2)
            elif found:
                last = next(reversed(found))
                found[last] = f"{found[last]} {stripped}"
    return found


def _json_type(annotation: Any) -> dict[str, Any]:
    """The JSON schema of a type hint (``{}`` when unknown: any value)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _json_type(options[0]) if len(options) == 1 else {}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(annotation))}
    kind = _JSON_TYPES.get(origin or annotation)
    return {"type": kind} if kind else {}


def _parameters_schema(function: Callable[..., Any], docs: Mapping[str, str]) -> dict[str, Any]:
    try:
        signature = inspect.signature(function)
        hints = typing.get_type_hints(function)
    except (TypeError, ValueError, NameError):
        signature, hints = inspect.signature(function), {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ConfigError(
                f"tool {getattr(function, '__name__', function)!r} has *{parameter.name}: a "
                "tool's parameters must be named (the model passes them as JSON fields)"
            )
        spec = _json_type(hints.get(parameter.name, parameter.annotation))
        if parameter.name in docs:
            spec["description"] = docs[parameter.name]
        properties[parameter.name] = spec
        if parameter.default is parameter.empty:
            required.append(parameter.name)
    return {"type": "object", "properties": properties, "required": required}


def _as_call(value: object) -> ToolCall | None:
    if not isinstance(value, Mapping):
        return None
    name = value.get("tool", value.get("name"))
    arguments = value.get("arguments", value.get("parameters", value.get("args", {})))
    if isinstance(arguments, str):  # OpenAI style: the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(arguments, Mapping):
        return None
    return ToolCall(name, dict(arguments))


def _load(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def parse_tool_calls(reply: str) -> list[ToolCall]:
    """The tool calls in a model's reply (``[]``: the reply is the final answer).

    Read, in order of preference: ``<tool_call>`` tags, fenced JSON blocks, the whole reply
    as JSON. A JSON value that is a list of calls gives several calls.

    Example:
        >>> parse_tool_calls('```json\\n{"tool": "add", "arguments": {"a": 1}}\\n```')
        [ToolCall(name='add', arguments={'a': 1})]
        >>> parse_tool_calls("The answer is 3.")
        []
    """
    chunks = _QWEN_CALL.findall(reply) or _FENCED.findall(reply) or [reply]
    calls: list[ToolCall] = []
    for chunk in chunks:
        value = _load(chunk.strip())
        if value is None:  # one call per line, as small models write several
            value = [_load(line.strip()) for line in chunk.splitlines() if line.strip()]
        for item in value if isinstance(value, list) else [value]:
            call = _as_call(item)
            if call is not None:
                calls.append(call)
    return calls


def _coerce(value: Any, spec: Mapping[str, Any]) -> Any:
    """A model's argument in the declared type when that is unambiguous (``"3"`` -> 3)."""
    kind = spec.get("type")
    try:
        if kind == "integer" and isinstance(value, str | float) and float(value).is_integer():
            return int(float(value))
        if kind == "number" and isinstance(value, str | int) and not isinstance(value, bool):
            return float(value)
        if kind == "string" and isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    except ValueError:
        return value
    return value


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


async def run_tool(tool: Tool, arguments: Mapping[str, Any]) -> tuple[str, str | None]:
    """Call ``tool`` (a sync function in a worker thread) with the model's arguments.

    Returns:
        ``(result, None)`` with the result as text (JSON for non-strings), or
        ``("", error)`` when the arguments do not fit the signature or the tool raised:
        an error is a result the model sees, never an exception for the caller.

    Raises:
        ToolUnavailable: the tool raised it (the service behind the tool is gone).
    """
    properties = tool.parameters.get("properties", {})
    arguments = {k: _coerce(v, properties.get(k, {})) for k, v in arguments.items()}
    try:
        inspect.signature(tool.function).bind(**arguments)
    except TypeError as error:
        expected = tool.signature_text()
        return "", f"bad arguments for {tool.name}: {error}; expected {expected}"
    try:
        if inspect.iscoroutinefunction(tool.function):
            result = await tool.function(**arguments)
        else:
            result = await asyncio.to_thread(tool.function, **arguments)
            if inspect.isawaitable(result):
                result = await result
    except ToolUnavailable:
        raise
    except Exception as error:
        return "", f"{type(error).__name__}: {error}"
    return _as_text(result), None

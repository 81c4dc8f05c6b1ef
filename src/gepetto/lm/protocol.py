"""The LM protocol: anything that turns a prompt (or chat messages) into text.

gepetto accepts, wherever it needs a language model (the reflection model, and the task
model of the built-in adapter):

- a plain function ``f(prompt) -> str``, where ``prompt`` is a ``str`` or a list of chat
  messages (``{"role": ..., "content": ...}``);
- an ``async def`` function with the same signature;
- an object whose ``__call__`` is either of those (the clients of :mod:`gepetto.lm`).

:func:`as_async_lm` turns any of them into one async callable; sync functions run in a
worker thread so they never block the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeAlias

from gepetto.errors import ConfigError

__all__ = ["AsyncLM", "LanguageModel", "Messages", "Prompt", "as_async_lm"]

Messages: TypeAlias = list[dict[str, Any]]
Prompt: TypeAlias = str | Messages
LanguageModel: TypeAlias = Callable[[Prompt], str] | Callable[[Prompt], Awaitable[str]]
AsyncLM: TypeAlias = Callable[[Prompt], Awaitable[str]]


def _is_async_callable(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - we need the class attribute
    return call is not None and inspect.iscoroutinefunction(call)


def as_async_lm(
    lm: object, *, role: str = "reflection_lm", executor: Executor | None = None
) -> AsyncLM:
    """One async callable for any accepted LM form.

    Args:
        lm: a sync or async callable taking a prompt and returning text.
        role: the argument name, for error messages.
        executor: the thread pool for a sync ``lm`` (default: the loop's default executor).

    Raises:
        ConfigError: if ``lm`` is a model string (not supported by the core yet) or is not
            callable.
    """
    if isinstance(lm, str):
        raise ConfigError(
            f"{role}={lm!r}: model strings need an LM client; pass a callable "
            "prompt -> str (for example a function that calls your model)"
        )
    if not callable(lm):
        raise ConfigError(f"{role} must be a callable prompt -> str, got {type(lm).__name__}")
    if _is_async_callable(lm):
        async_fn: AsyncLM = lm
        return async_fn

    sync_fn: Callable[[Prompt], Any] = lm

    async def call_in_thread(prompt: Prompt) -> str:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, sync_fn, prompt)
        if inspect.isawaitable(result):
            result = await result
        return _as_text(result, role)

    return call_in_thread


def _as_text(value: object, role: str) -> str:
    if isinstance(value, str):
        return value
    # gepa's LanguageModel may return a list with one string (litellm style); accept it.
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise TypeError(f"{role} returned {type(value).__name__}; it must return a str")

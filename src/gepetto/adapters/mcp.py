"""The tools of an MCP server, used by a tool-calling model, as a GEPA adapter: the system
prompt and each tool's description are the texts the optimizer rewrites.

Needs the ``mcp`` package (``pip install 'gepetto[mcp]'``). The server is a real MCP server
started over stdio (``mcp.client.stdio``); its tools (``list_tools``) become the tools of a
:class:`~gepetto.adapters.agent.AgentAdapter`, whose loop and text tool-call protocol
(:mod:`gepetto.adapters.tools`) the model follows; each call the model makes is sent to the
server (``call_tool``)::

    adapter = MCPAdapter("local/qwen2.5-coder-0.5b", [sys.executable, "shop_server.py"],
                         shop_metric, temperature=0, max_tokens=96)
    with adapter:
        seed = adapter.seed_candidate("Answer the customer's question.")
        result = gepetto.optimize(seed, trainset, valset, adapter=adapter, ...)

Components: ``"system_prompt"`` and ``"tool:<name>"`` for each tool of the server (its
description from ``list_tools``, with the indentation of a docstring removed), or of the
``tools=`` the adapter is given. A candidate without a tool's component uses the server's
description.

Examples, metric and trajectories are those of :class:`~gepetto.adapters.agent.AgentAdapter`
(a trajectory lists every tool call with its arguments and its result or error). A tool call
the server answers with an error (``isError``) is an error result the model reads.

Lifecycle: one server process per adapter, started on first use (:meth:`seed_candidate`,
:meth:`evaluate`) and stopped by :meth:`aclose` / :meth:`close` or on leaving a ``with`` /
``async with`` block (and, as a last resort, when the adapter is garbage-collected or the
interpreter exits). The session lives on a background thread with its own event loop, so
the adapter serves any caller's event loop (``optimize()`` runs its own). A server that
crashes (or does not answer a call within ``call_timeout`` seconds) gives the examples whose
calls were in flight a score of 0, with its last stderr lines as feedback, and is restarted
for the next call (:attr:`MCPAdapter.restarts` counts the restarts).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import tempfile
import threading
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import IO, Any, TypeVar

from gepetto.adapters.agent import PROTOCOL, AgentAdapter, Metric
from gepetto.adapters.tools import Tool, ToolUnavailable
from gepetto.errors import ConfigError, GepettoError
from gepetto.lm.client import LMClient
from gepetto.types import EvaluationBatch

__all__ = ["INSTALL_HINT", "MCPAdapter", "MCPToolError", "ServerTool"]

INSTALL_HINT = "the MCP adapter needs the mcp package: pip install 'gepetto[mcp]'"

_STDERR_TAIL = 600
"""How many characters of a crashed server's stderr its feedback shows."""

_ERROR_CHARS = 600
"""A tool error longer than this is cut (pydantic's validation errors run long)."""

T = TypeVar("T")


class MCPToolError(GepettoError):
    """The server answered a tool call with an error (``isError``): the model reads it."""


class ServerTool:
    """What ``list_tools`` said about one tool: name, description, input schema."""

    __slots__ = ("description", "input_schema", "name")

    def __init__(self, name: str, description: str, input_schema: Mapping[str, Any]) -> None:
        self.name = name
        self.description = description
        self.input_schema = input_schema

    def __repr__(self) -> str:
        return f"ServerTool({self.name!r}, {self.description!r})"


def _import_mcp() -> Any:
    try:
        import mcp
        import mcp.client.stdio
    except ImportError as error:
        raise ConfigError(INSTALL_HINT) from error
    return mcp


class _Process:
    """One running server: its session, its stderr file, and what stops it."""

    def __init__(self, generation: int, errlog: IO[str]) -> None:
        self.generation = generation
        self.errlog = errlog
        self.stop = asyncio.Event()
        self.session: Any = None
        self.task: asyncio.Task[None] | None = None

    def stderr_tail(self) -> str:
        try:
            self.errlog.flush()
            self.errlog.seek(0)
            text = self.errlog.read()
        except (OSError, ValueError):
            return ""
        text = text.strip()
        return text if len(text) <= _STDERR_TAIL else "..." + text[-_STDERR_TAIL:]


class _Connection:
    """An MCP server process and its client session, owned by a background thread's event
    loop. Thread-safe: :meth:`run` submits a coroutine from any thread or event loop."""

    def __init__(
        self, command: str, args: Sequence[str], env: Mapping[str, str] | None, cwd: str | None
    ) -> None:
        self.command = command
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.startup_timeout = 60.0
        self.call_timeout = 60.0
        self.spawned = 0
        self.tools: list[ServerTool] | None = None
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: _Process | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def command_line(self) -> str:
        return " ".join([self.command, *self.args])

    # ----- the background loop -----------------------------------------------------------

    def _background(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="gepetto-mcp", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def submit(self, coroutine: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run ``coroutine`` on the background loop."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._background())  # type: ignore[arg-type]

    async def run(self, coroutine: Awaitable[T]) -> T:
        """Await ``coroutine`` run on the background loop, from any event loop."""
        return await asyncio.wrap_future(self.submit(coroutine))

    def run_sync(self, coroutine: Awaitable[T]) -> T:
        """Run ``coroutine`` on the background loop and wait for it (blocking)."""
        return self.submit(coroutine).result()

    # ----- on the background loop --------------------------------------------------------

    async def session(self) -> _Process:
        """The live server, started if there is none."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._live is None:
                self._live = await self._spawn()
            return self._live

    async def _spawn(self) -> _Process:
        mcp = _import_mcp()
        errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        process = _Process(self.spawned, errlog)
        self.spawned += 1
        ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        process.task = asyncio.create_task(self._own(mcp, process, ready))
        try:
            listing = await asyncio.wait_for(asyncio.shield(ready), self.startup_timeout)
        except BaseException as error:
            process.stop.set()
            if process.task is not None:
                process.task.cancel()
                await asyncio.gather(process.task, return_exceptions=True)
            tail = process.stderr_tail()
            errlog.close()
            if isinstance(error, asyncio.CancelledError):
                raise
            reason = (
                f"it did not answer within {self.startup_timeout:g} s"
                if isinstance(error, TimeoutError)
                else f"{type(error).__name__}: {_leaf(error)}"
            )
            raise ConfigError(
                f"could not start the MCP server `{self.command_line}`: {reason}"
                + (f"; its stderr ends with: {tail}" if tail else "")
            ) from error
        if self.tools is None:
            self.tools = listing
        return process

    async def _own(self, mcp: Any, process: _Process, ready: asyncio.Future[Any]) -> None:
        """Holds the server's contexts open (anyio needs one task to enter and exit them)."""
        parameters = mcp.StdioServerParameters(
            command=self.command, args=self.args, env=self.env, cwd=self.cwd
        )
        try:
            async with (
                mcp.client.stdio.stdio_client(parameters, errlog=process.errlog) as streams,
                mcp.ClientSession(*streams) as session,
            ):
                await session.initialize()
                listing = await _list_tools(session)
                process.session = session
                ready.set_result(listing)
                await process.stop.wait()
        except BaseException as error:
            if not ready.done():
                ready.set_exception(error if isinstance(error, Exception) else RuntimeError(error))
            if isinstance(error, asyncio.CancelledError):
                raise
        finally:
            if ready.done() and not ready.cancelled() and ready.exception() is None:
                process.errlog.close()

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> str:
        """The text of the server's result.

        Raises:
            MCPToolError: the server answered with an error (the model reads it).
            ToolUnavailable: the server crashed, timed out or cannot be (re)started.
        """
        mcp = _import_mcp()
        try:
            process = await self.session()
        except ConfigError as error:
            raise ToolUnavailable(
                f"the MCP server is down and could not be restarted: {error}"
            ) from error
        try:
            result = await process.session.call_tool(
                name, dict(arguments), read_timeout_seconds=self.call_timeout
            )
        except mcp.MCPError as error:
            from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

            if error.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                raise MCPToolError(_cut(error.message)) from error
            what = (
                f"did not answer within {self.call_timeout:g} s"
                if error.code == REQUEST_TIMEOUT
                else "closed the connection (it crashed or exited)"
            )
            tail = await self._retire(process)
            raise ToolUnavailable(
                f"the MCP server {what} during the call {name}({_arguments(arguments)}); it "
                "is restarted for the next call"
                + (f". Its stderr ends with: {tail}" if tail else "")
            ) from error
        text = _result_text(result)
        if result.is_error:
            raise MCPToolError(_cut(text) or "the tool failed (no message)")
        return text

    async def _retire(self, process: _Process) -> str:
        """Stop a broken server (once, whichever call noticed first); its stderr tail."""
        tail = process.stderr_tail()
        if self._live is process:
            self._live = None
            process.stop.set()
            if process.task is not None:
                await asyncio.gather(process.task, return_exceptions=True)
        return tail

    async def _shutdown(self) -> None:
        process, self._live = self._live, None
        if process is not None:
            process.stop.set()
            if process.task is not None:
                await asyncio.gather(process.task, return_exceptions=True)

    # ----- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server and the background thread (idempotent; may be started again)."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if threading.current_thread() is thread:  # a finalizer run on the loop's own thread
            loop.call_soon(loop.stop)
            return
        if not loop.is_closed() and thread.is_alive():
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()
        self._live = None
        self._starting = None


async def _list_tools(session: Any) -> list[ServerTool]:
    tools: list[ServerTool] = []
    cursor = None
    for _ in range(100):  # a paginator that never ends cannot hang the start
        if cursor is None:
            page = await session.list_tools()
        else:
            from mcp_types import PaginatedRequestParams

            page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
        tools.extend(
            ServerTool(t.name, inspect.cleandoc(t.description or ""), dict(t.input_schema or {}))
            for t in page.tools
        )
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _result_text(result: Any) -> str:
    texts = [getattr(part, "text", None) for part in result.content or []]
    shown = [t for t in texts if isinstance(t, str)]
    if shown:
        return "\n".join(shown)
    if result.structured_content is not None:
        import json

        return json.dumps(result.structured_content, ensure_ascii=False, default=str)
    return ""


def _cut(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + " ...[cut]"


def _arguments(arguments: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(arguments), ensure_ascii=False, default=str)


def _leaf(error: BaseException) -> str:
    """The first real error inside exception groups (anyio wraps what the server did)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return str(error) or type(error).__name__


class MCPAdapter:
    """An MCP server's tools, called by a model through gepetto's agent loop.

    Args:
        model: the agent's LM: a gepetto LM client, a model string, or any callable
            ``messages -> str`` (sync or async).
        server: the command that starts the server over stdio, as a list
            (``[sys.executable, "server.py"]``), or ``mcp.StdioServerParameters``.
        metric: ``(example, final_answer, trajectory) -> score | (score, feedback)`` (sync or
            async; see :class:`~gepetto.adapters.agent.AgentAdapter`).
        tools: the names of the server's tools the model may call (default: all of them).
        env: environment variables for the server, over a minimal inherited set (``PATH``,
            ``HOME``, ...: the MCP SDK's default); ``None`` keeps that default.
        cwd: the server's working directory.
        max_turns, protocol, max_concurrency: as for
            :class:`~gepetto.adapters.agent.AgentAdapter`.
        startup_timeout: seconds the server has to start and list its tools.
        call_timeout: seconds a tool call may take; a call that takes longer counts as a
            hung server (score 0, restart).
        **lm_options: options for a model string (``temperature``, ``max_tokens``, ...).

    Raises:
        ConfigError: the ``mcp`` package is missing (naming ``gepetto[mcp]``), an empty
            command, non-positive timeouts, or LM options with a non-string model. A server
            that cannot start, or ``tools`` the server does not have, raise it on first use.
    """

    def __init__(
        self,
        model: object,
        server: Sequence[str] | Any,
        metric: Metric,
        *,
        tools: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        max_turns: int = 6,
        protocol: str = PROTOCOL,
        max_concurrency: int = 8,
        startup_timeout: float = 60.0,
        call_timeout: float = 60.0,
        **lm_options: Any,
    ) -> None:
        mcp = _import_mcp()
        if isinstance(server, mcp.StdioServerParameters):
            command, args = server.command, list(server.args)
            env = {**(server.env or {}), **(env or {})} or None
            cwd = cwd if cwd is not None else (str(server.cwd) if server.cwd else None)
        elif (
            isinstance(server, Sequence)
            and not isinstance(server, str)
            and server
            and all(isinstance(part, str) for part in server)
        ):
            command, args = server[0], list(server[1:])
        else:
            raise ConfigError(
                "server must be the command that starts the MCP server over stdio, as a list "
                f"of strings ([sys.executable, 'server.py']) or mcp.StdioServerParameters, got "
                f"{server!r}"
            )
        if not command:
            raise ConfigError("server's command is empty; give the program that starts it")
        if startup_timeout <= 0 or call_timeout <= 0:
            raise ConfigError(
                f"startup_timeout and call_timeout must be > 0 seconds, got {startup_timeout}, "
                f"{call_timeout}"
            )
        if isinstance(model, str):
            from gepetto.lm.registry import resolve_lm

            model = resolve_lm(model, **lm_options)
        elif lm_options:
            raise ConfigError("LM options only apply to a model string; configure your client")
        if max_turns < 1 or max_concurrency < 1:
            raise ConfigError(
                f"max_turns and max_concurrency must be >= 1, got {max_turns}, {max_concurrency}"
            )
        if "{tools}" not in protocol:
            raise ConfigError("protocol must contain {tools} where the tool list goes")
        self.model = model
        self.metric = metric
        self.tool_names = list(tools) if tools is not None else None
        self.max_turns = max_turns
        self.protocol = protocol
        self.max_concurrency = max_concurrency
        self._connection = _Connection(command, args, env, cwd)
        self._connection.startup_timeout = startup_timeout
        self._connection.call_timeout = call_timeout
        self._agent: AgentAdapter | None = None
        self._finalizer = weakref.finalize(self, self._connection.close)

    # ----- the server --------------------------------------------------------------------

    @property
    def command_line(self) -> str:
        """The command that starts the server."""
        return self._connection.command_line

    @property
    def restarts(self) -> int:
        """How many times the server was started again after a crash (or a close)."""
        return max(0, self._connection.spawned - 1)

    async def astart(self) -> AgentAdapter:
        """Start the server if it is not running and list its tools (awaitable).

        Returns:
            The agent adapter that runs the model with the server's tools.

        Raises:
            ConfigError: the server cannot start, or ``tools`` names a tool it lacks.
        """
        await self._connection.run(self._connection.session())
        return self._build_agent()

    def start(self) -> AgentAdapter:
        """:meth:`astart` for synchronous code (blocks until the server is up)."""
        self._connection.run_sync(self._connection.session())
        return self._build_agent()

    def _build_agent(self) -> AgentAdapter:
        if self._agent is not None:
            return self._agent
        listed = self._connection.tools or []
        by_name = {tool.name: tool for tool in listed}
        chosen = self.tool_names if self.tool_names is not None else list(by_name)
        missing = [name for name in chosen if name not in by_name]
        if missing or not chosen:
            raise ConfigError(
                f"the MCP server `{self.command_line}` has the tools {sorted(by_name)}; "
                f"tools= names {missing or chosen}, which it lacks"
                if missing
                else f"the MCP server `{self.command_line}` lists no tools"
            )
        built = [self._tool(by_name[name]) for name in chosen]
        self._agent = AgentAdapter(
            self.model,
            built,
            self.metric,
            max_turns=self.max_turns,
            protocol=self.protocol,
            max_concurrency=self.max_concurrency,
        )
        return self._agent

    def _tool(self, listed: ServerTool) -> Tool:
        connection = self._connection
        name = listed.name

        async def call_on_server(**arguments: Any) -> str:
            return await connection.run(connection.call_tool(name, arguments))

        call_on_server.__name__ = name
        return Tool(name, listed.description, listed.input_schema, call_on_server)

    def server_tools(self) -> list[ServerTool]:
        """What the server's ``list_tools`` said (starts the server if needed)."""
        self.start()
        return list(self._connection.tools or [])

    # ----- configuration -----------------------------------------------------------------

    def seed_candidate(self, system_prompt: str) -> dict[str, str]:
        """A candidate with ``system_prompt`` and each tool's description from the server
        (starts the server if needed)."""
        return self.start().seed_candidate(system_prompt)

    async def aseed_candidate(self, system_prompt: str) -> dict[str, str]:
        """:meth:`seed_candidate` for async code."""
        return (await self.astart()).seed_candidate(system_prompt)

    def lm_clients(self) -> Sequence[LMClient]:
        """The gepetto clients this adapter calls (metered by the run as role "task")."""
        return [self.model] if isinstance(self.model, LMClient) else []

    def fingerprint(self) -> str:
        """The configuration a resumed run must share (model, server command, tools, metric,
        turns, protocol)."""
        model = getattr(self.model, "model", None) or type(self.model).__qualname__
        metric = getattr(self.metric, "__qualname__", type(self.metric).__qualname__)
        return (
            f"MCPAdapter(model={model}, server={self.command_line!r}, tools={self.tool_names}, "
            f"metric={metric}, max_turns={self.max_turns}, protocol={self.protocol!r})"
        )

    # ----- the adapter protocol ----------------------------------------------------------

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, Any], dict[str, Any]]:
        """Run the agent on every example with the server's tools; score its answers."""
        agent = await self.astart()
        return await agent.evaluate(batch, candidate, capture_traces)

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """As :meth:`AgentAdapter.make_reflective_dataset`: the whole trajectory for the
        system prompt, the calls to a tool for its description."""
        agent = self._agent if self._agent is not None else self.start()
        return agent.make_reflective_dataset(candidate, eval_batch, components_to_update)

    # ----- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop the server process (it starts again on next use)."""
        self._connection.close()

    async def aclose(self) -> None:
        """Stop the server process without blocking the event loop."""
        await asyncio.to_thread(self._connection.close)

    def __enter__(self) -> MCPAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MCPAdapter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

"""The web app: the runs of every source, read through one shared view per run.

Each run is followed by one :class:`RunFeed`, whatever the number of open pages: a page asks
the feed to refresh, the feed reads the store at most once per ``poll_interval`` (only the
records after the last one it saw), and the JSON of each view is computed once per store
position and shared by every page. So twenty open pages cost the store what one costs, and
the run itself is never touched: the app reads the store, never the optimizer's memory.

Routes (GET only; anything else is 405)::

    /                                   the page (static/index.html)
    /static/...                         its assets (shipped in the package)
    /api/runs                           every run of every source
    /api/runs/{key}/summary             budget, cost, best, front, counts, last decisions
    /api/runs/{key}/progress            best and front mean against calls, time and cost
    /api/runs/{key}/matrix              the Pareto front and the score matrix
    /api/runs/{key}/lineage             the candidates' tree and every decision
    /api/runs/{key}/candidates/{id}     texts, diffs to the parent, the reflection
    /api/runs/{key}/reflection          the reflection being streamed (or the last one)
    /api/live?run=KEY[&run=KEY]         server-sent events: ``update`` and ``reflection``

Every JSON answer is redacted (:func:`redact_payload`) before it leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gepetto import runview
from gepetto.dashboard import _payloads
from gepetto.dashboard._errors import SourceError
from gepetto.dashboard._followed import FollowedRun
from gepetto.dashboard._sources import open_run_store
from gepetto.errors import GepettoError
from gepetto.redaction import redact_text
from gepetto.runview import RunStore

__all__ = ["Dashboard", "RunFeed", "build_app", "redact_payload"]

_KEY_LIKE = re.compile(
    r"\b(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|hf_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9\-]{10,})"
    r"|(?<=Bearer )[A-Za-z0-9._\-]{16,}"
)


def redact_text_for_page(text: str) -> str:
    """``text`` with URLs' secrets (:func:`~gepetto.redaction.redact_text`) and strings that
    look like API keys (``sk-...``, ``AKIA...``, ``ghp_...``, ``Bearer ...``) hidden."""
    if "://" in text:
        text = redact_text(text)
    return _KEY_LIKE.sub("***", text)


def redact_payload(value: Any) -> Any:
    """A JSON value with every string redacted; non-finite floats become ``None``."""
    if isinstance(value, str):
        return redact_text_for_page(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): redact_payload(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(item) for item in value]
    return value


class RunFeed:
    """One run, read incrementally and shared by every page that shows it (thread-safe)."""

    def __init__(self, key: str, store: RunStore, run_id: str, poll_interval: float) -> None:
        self.key = key
        self.store = store
        self.run_id = run_id
        self.poll_interval = poll_interval
        self.lock = threading.RLock()
        self._last_poll = 0.0
        self._cache: dict[str, tuple[int, bytes]] = {}
        self.error: str | None = None
        self._running = False
        self._status_read_at = -1e9
        self.view = FollowedRun(store, run_id)  # reads the whole run (raises if damaged)

    def refresh(self, *, force: bool = False) -> None:
        """Read what the run wrote since the last read, at most once per poll interval."""
        with self.lock:
            now = time.monotonic()
            if not force and now - self._last_poll < self.poll_interval:
                return
            self._last_poll = now
            try:
                self.view.refresh()
                self.error = None
            except GepettoError as error:
                self.error = str(error)

    def payload(self, name: str, build: Callable[[FollowedRun], Any]) -> bytes:
        """The JSON of a view, computed once per store position."""
        self.refresh()
        with self.lock:
            # the streamed reflection changes with every piece; the other views do not
            seq = self.view.last_seq if name == "reflection" else self.view.data_seq
            cached = self._cache.get(name)
            if cached is not None and cached[0] == seq:
                return cached[1]
            data = redact_payload(build(self.view))
            if self.error is not None:
                data["warning"] = self.error
            body = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[name] = (seq, body)
            return body

    def live_state(self) -> dict[str, Any]:
        """What the page's live channel sends: the position and the streamed reflection.

        Whether the run is live is read at most once a second (it reads the kernel's lock
        table), whatever the number of pages."""
        self.refresh()
        with self.lock:
            now = time.monotonic()
            if now - self._status_read_at >= 1.0:
                self._running = runview.run_status(self.view)[0] == "live"
                self._status_read_at = now
            state = _payloads.live_state(self.key, self.view, self._running)
            return redact_payload(state)  # type: ignore[no-any-return]


class Dashboard:
    """Every run of the given sources, opened read-only and followed.

    Raises:
        SourceError: a source is not a run store or holds a damaged run.
    """

    def __init__(self, sources: Sequence[str], *, poll_interval: float = 0.25) -> None:
        self.poll_interval = poll_interval
        self.closing = threading.Event()
        """Set when the server stops: open live channels end."""
        self.stores: list[RunStore] = []
        self.runs: dict[str, RunFeed] = {}
        try:
            for source in sources:
                self.stores.append(open_run_store(source))
            for index, store in enumerate(self.stores):
                self._add_runs(index, store)
        except BaseException:
            self.close()
            raise
        if not self.runs:
            shown = ", ".join(store.source for store in self.stores)
            raise SourceError(f"{shown} holds no run yet: start a run there, or pass another")

    def _add_runs(self, index: int, store: RunStore) -> None:
        for run_id in store.run_ids():
            key = run_id if len(self.stores) == 1 else f"{index + 1}.{run_id}"
            if key in self.runs:
                continue
            try:
                self.runs[key] = RunFeed(key, store, run_id, self.poll_interval)
            except GepettoError as error:
                raise SourceError(" ".join(str(error).split())) from None

    def discover(self) -> None:
        """Follow runs created in the sources since the dashboard started."""
        for index, store in enumerate(self.stores):
            try:
                self._add_runs(index, store)
            except SourceError:
                continue

    def feed(self, key: str) -> RunFeed:
        feed = self.runs.get(key)
        if feed is None:
            raise KeyError(key)
        return feed

    def compare(self, first: RunFeed, second: RunFeed) -> Any:
        """:func:`gepetto.runview.compare_runs` of two runs (redacted JSON data)."""
        first.refresh()
        second.refresh()
        ordered = sorted([first, second], key=lambda feed: feed.key)  # one lock order
        with ordered[0].lock, ordered[1].lock if ordered[1] is not ordered[0] else _NO_LOCK:
            return redact_payload(_payloads.compare(first.view, second.view))

    def close(self) -> None:
        for store in self.stores:
            store.close()


_NO_LOCK = contextlib.nullcontext()
_STATIC = resources.files("gepetto.dashboard") / "static"
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _SecurityHeaders:
    """Adds :data:`_SECURITY_HEADERS` to every HTTP answer: the page may load nothing from
    anywhere but this server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                for name, value in _SECURITY_HEADERS.items():
                    if name.lower().encode() not in names:
                        headers.append((name.lower().encode(), value.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": redact_text_for_page(message)}, status_code=status)


def build_app(dashboard: Dashboard, *, allowed_hosts: Sequence[str] = ("*",)) -> Starlette:
    """The Starlette app of ``dashboard`` (GET only)."""
    from starlette.concurrency import run_in_threadpool

    async def index(request: Request) -> Response:
        return FileResponse(str(_STATIC / "index.html"), media_type="text/html")

    async def runs(request: Request) -> Response:
        await run_in_threadpool(dashboard.discover)
        rows = []
        for feed in list(dashboard.runs.values()):
            await run_in_threadpool(feed.refresh)
            rows.append(_payloads.run_row(feed.key, feed.view, feed.error))
        return JSONResponse(redact_payload({"runs": rows}))

    def run_view(name: str, build: Callable[[FollowedRun], Any]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                feed = dashboard.feed(request.path_params["key"])
            except KeyError:
                return _error(404, f"no run {request.path_params['key']!r} here")
            return _json(await run_in_threadpool(feed.payload, name, build))

        return endpoint

    async def candidate(request: Request) -> Response:
        try:
            feed = dashboard.feed(request.path_params["key"])
        except KeyError:
            return _error(404, f"no run {request.path_params['key']!r} here")
        raw = request.path_params["id"]
        if not raw.isdigit() or int(raw) >= len(feed.view.state.candidates):
            return _error(404, f"run {feed.key!r} has no candidate {raw!r}")
        number = int(raw)
        body = await run_in_threadpool(
            feed.payload, f"candidate/{number}", lambda view: _payloads.candidate(view, number)
        )
        return _json(body)

    async def summary(request: Request) -> Response:
        try:
            feed = dashboard.feed(request.path_params["key"])
        except KeyError:
            return _error(404, f"no run {request.path_params['key']!r} here")
        body = await run_in_threadpool(
            feed.payload, "summary", lambda view: _payloads.summary(view, feed.key)
        )
        return _json(body)

    async def compare(request: Request) -> Response:
        keys = [request.query_params.get("a", ""), request.query_params.get("b", "")]
        missing = [key for key in keys if key not in dashboard.runs]
        if missing:
            return _error(404, f"no run {missing[0]!r} here")
        first, second = (dashboard.runs[key] for key in keys)
        data = await run_in_threadpool(dashboard.compare, first, second)
        return JSONResponse(data)

    async def live(request: Request) -> Response:
        keys = request.query_params.getlist("run")
        feeds = [dashboard.runs[key] for key in keys if key in dashboard.runs]
        if not feeds:
            return _error(404, f"no run {', '.join(keys) or '(none given)'} here")
        return StreamingResponse(
            _live_events(request, feeds, dashboard),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    routes = [
        Route("/", index),
        Route("/api/runs", runs),
        Route("/api/runs/{key}/summary", summary),
        Route("/api/runs/{key}/progress", run_view("progress", _payloads.progress)),
        Route("/api/runs/{key}/matrix", run_view("matrix", _payloads.matrix)),
        Route("/api/runs/{key}/lineage", run_view("lineage", _payloads.lineage)),
        Route("/api/runs/{key}/reflection", run_view("reflection", _payloads.reflection)),
        Route("/api/runs/{key}/candidates/{id}", candidate),
        Route("/api/compare", compare),
        Route("/api/live", live),
        Mount("/static", StaticFiles(directory=str(_STATIC)), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        Middleware(_SecurityHeaders),
    ]
    return Starlette(routes=routes, middleware=middleware)


async def _live_events(
    request: Request, feeds: list[RunFeed], dashboard: Dashboard
) -> AsyncIterator[bytes]:
    """Server-sent events for ``feeds``: ``update`` when a run's store position moves,
    ``reflection`` when its streamed reflection changes; a comment every 15 s otherwise."""
    from starlette.concurrency import run_in_threadpool

    sent: dict[str, tuple[Any, Any]] = {}
    quiet_since = time.monotonic()
    yield b"retry: 1000\n\n"
    while not dashboard.closing.is_set() and not await request.is_disconnected():
        for feed in feeds:
            live = await run_in_threadpool(feed.live_state)
            update, stream = live["update"], live["reflection"]
            last_update, last_stream = sent.get(feed.key, (None, None))
            if update != last_update:
                yield _event("update", update)
            if stream != last_stream:
                yield _event("reflection", stream)
            if update != last_update or stream != last_stream:
                quiet_since = time.monotonic()
            sent[feed.key] = (update, stream)
        if time.monotonic() - quiet_since > 15:
            quiet_since = time.monotonic()
            yield b": still here\n\n"
        await asyncio.sleep(dashboard.poll_interval)


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

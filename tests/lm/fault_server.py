"""A scripted fake LM API on 127.0.0.1, to test the real SDK clients over real HTTP.

:class:`FaultServer` speaks just enough of the OpenAI ``POST /v1/chat/completions`` and
Anthropic ``POST /v1/messages`` protocols for the official SDKs (Anthropic's also at Bedrock's
``POST /model/{id}/invoke`` and Vertex AI's ``POST .../models/{model}:rawPredict``), and
answers each request with the next behaviour of its script (then with :func:`ok` once the
script is used up)::

    with FaultServer(status(429, retry_after=0.2), ok("hi")) as server:
        client = OpenAIClient("m", base_url=server.openai_base_url, api_key="k")
        ...
    assert len(server.requests) == 2

Behaviours: :func:`ok`, :func:`status`, :func:`slow`, :func:`malformed`, :func:`drop`,
:func:`raw` and :func:`streamed`. A request with ``"stream": true`` gets its ``ok`` reply as a
server-sent event stream in each protocol's format (OpenAI: ``chat.completion.chunk`` events
then ``[DONE]``, the usage in a last chunk when ``stream_options.include_usage`` asks for it;
Anthropic: ``message_start`` ... ``message_stop``); :func:`streamed` also cuts, stalls or
corrupts that stream. Every request is recorded (:attr:`FaultServer.requests`) with its
parsed JSON body, headers and arrival time. The server binds 127.0.0.1 only, on a port the OS picks.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import pytest

__all__ = [
    "Behaviour",
    "FaultServer",
    "RecordedRequest",
    "drop",
    "fault_server",
    "malformed",
    "ok",
    "raw",
    "slow",
    "status",
    "streamed",
]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Behaviour:
    """How to answer one request (build these with the functions below)."""

    kind: str
    text: str = "ok"
    prompt_tokens: int = 3
    completion_tokens: int = 2
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    body: bytes | None = None
    message: str | None = None
    code: str | None = None
    chunk_chars: int = 4
    chunk_delay: float = 0.0
    cut_after: int | None = None
    end_after: int | None = None
    malformed_at: int | None = None
    stall_after: int | None = None
    stall: float = 0.0
    usage: bool = True


def ok(text: str = "ok", prompt_tokens: int = 3, completion_tokens: int = 2) -> Behaviour:
    """A successful completion with ``text`` and that usage."""
    return Behaviour("ok", text, prompt_tokens, completion_tokens)


def status(
    http_status: int,
    *,
    retry_after: float | str | None = None,
    retry_after_ms: float | None = None,
    message: str | None = None,
    code: str | None = None,
) -> Behaviour:
    """An error status with the provider's JSON error body.

    Args:
        http_status: the HTTP status.
        retry_after: sent as the ``retry-after`` header (seconds, or an HTTP date string).
        retry_after_ms: sent as the ``retry-after-ms`` header.
        message: the error message in the body (default: a generic one).
        code: the error code in the body (OpenAI's ``error.code``, Anthropic's
            ``error.details.error_code``), e.g. ``"insufficient_quota"``.
    """
    headers: list[tuple[str, str]] = []
    if retry_after is not None:
        headers.append(("retry-after", str(retry_after)))
    if retry_after_ms is not None:
        headers.append(("retry-after-ms", str(retry_after_ms)))
    return Behaviour(
        "status", status=http_status, headers=tuple(headers), message=message, code=code
    )


def slow(seconds: float, text: str = "ok") -> Behaviour:
    """Wait ``seconds`` (or until the server closes), then answer like :func:`ok`."""
    return Behaviour("ok", text, delay=seconds)


def malformed() -> Behaviour:
    """200 with ``Content-Type: application/json`` and a body that is not JSON."""
    return Behaviour("raw", status=200, body=b'{"choices": [', headers=_JSON_HEADER)


def streamed(
    text: str = "ok",
    *,
    prompt_tokens: int = 3,
    completion_tokens: int = 2,
    chunk_chars: int = 4,
    chunk_delay: float = 0.0,
    cut_after: int | None = None,
    end_after: int | None = None,
    malformed_at: int | None = None,
    stall_after: int | None = None,
    stall: float = 0.0,
    usage: bool = True,
) -> Behaviour:
    """A reply whose text goes out in pieces of ``chunk_chars`` characters when the request
    asks for a stream (a request that does not gets it whole, like :func:`ok`).

    Args:
        text, prompt_tokens, completion_tokens: the reply and its usage.
        chunk_chars: characters per text event.
        chunk_delay: seconds before each text event.
        cut_after: after this many text events, drop the connection mid-response (the
            chunked body never ends: the client sees an incomplete read).
        end_after: after this many text events, end the response cleanly, without the rest
            (no finish reason, no usage, no ``[DONE]`` / ``message_stop``).
        malformed_at: the text event with this index (from 0) is not JSON.
        stall_after: after this many text events, wait ``stall`` seconds (or until the server
            closes) before going on.
        usage: send the usage (OpenAI: only when asked with ``include_usage``); ``False``
            plays a server that never reports it in a stream.
    """
    return Behaviour(
        "ok",
        text,
        prompt_tokens,
        completion_tokens,
        chunk_chars=chunk_chars,
        chunk_delay=chunk_delay,
        cut_after=cut_after,
        end_after=end_after,
        malformed_at=malformed_at,
        stall_after=stall_after,
        stall=stall,
        usage=usage,
    )


def drop() -> Behaviour:
    """Close the connection without sending any response."""
    return Behaviour("drop")


def raw(body: Any, code: int = 200) -> Behaviour:
    """Exactly this JSON document (any shape) with status ``code``."""
    return Behaviour("raw", status=code, body=json.dumps(body).encode(), headers=_JSON_HEADER)


_JSON_HEADER = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received (``json`` is ``None`` if the body was not JSON;
    ``body`` is the raw bytes, for checks such as a request signature)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    received_at: float = field(default_factory=time.monotonic)
    body: bytes = b""


class FaultServer:
    """A threaded HTTP server on 127.0.0.1 that plays a script of behaviours.

    Args:
        *script: behaviours for the first requests, in order (then :func:`ok`).

    Thread-safe. :meth:`start`/:meth:`stop`, or use it as a context manager.
    """

    def __init__(self, *script: Behaviour) -> None:
        self._script: deque[Behaviour] = deque(script)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----- script and records ------------------------------------------------------------

    def play(self, *behaviours: Behaviour) -> None:
        """Append behaviours to the script."""
        with self._lock:
            self._script.extend(behaviours)

    def _next(self, request: RecordedRequest) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self._script.popleft() if self._script else ok()

    @property
    def port(self) -> int:
        """The TCP port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("the fault server is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic SDK's base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI SDK's base URL."""
        return f"{self.url}/v1"

    # ----- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread; return self.

        Idempotent while running.
        """
        if self._httpd is not None:
            return self
        self._closing.clear()
        httpd = _Server((HOST, 0), _make_handler(self))
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake the slow replies and close the socket. Idempotent."""
        self._closing.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A started :class:`FaultServer` with an empty script (add behaviours with ``play``)."""
    with FaultServer() as server:
        yield server


# ----- the HTTP side -----------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block stop()
    request_queue_size = 128  # a burst of concurrent clients must not be reset (default: 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client resets its connection; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _make_handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small stream chunks go out at once, as real servers send
    timeout = 10  # an idle keep-alive connection is closed after this many seconds
    owner: FaultServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest("POST", self.path, headers, body, body=data)
        behaviour = self.owner._next(record)
        try:
            self._play(behaviour, body if isinstance(body, dict) else {})
        except OSError:
            self.close_connection = True  # the client gave up (timeout): nothing to answer

    def _play(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        # Anthropic's Messages API, on Bedrock (invoke) and on Vertex AI (rawPredict) too.
        anthropic = path.endswith(("/messages", "/invoke", ":rawPredict"))
        if behaviour.kind == "drop":
            self.close_connection = True
            return
        if behaviour.delay and self.owner._closing.wait(behaviour.delay):
            self.close_connection = True
            return
        if behaviour.kind == "ok" and body.get("stream") is True:
            self._stream(behaviour, body, anthropic)
        elif behaviour.kind == "ok":
            reply = _anthropic_reply if anthropic else _openai_reply
            self._send(200, json.dumps(reply(behaviour, body)).encode(), _JSON_HEADER)
        elif behaviour.kind == "status":
            error = _error_body(behaviour, anthropic)
            self._send(
                behaviour.status, json.dumps(error).encode(), _JSON_HEADER + behaviour.headers
            )
        else:
            self._send(behaviour.status, behaviour.body or b"", behaviour.headers)

    def _stream(self, behaviour: Behaviour, body: dict[str, Any], anthropic: bool) -> None:
        """Play ``behaviour`` as a server-sent event stream (chunked transfer encoding)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = _anthropic_events if anthropic else _openai_events
        head, pieces, tail = events(behaviour, body)
        for event in head:
            self._chunk(event)
        for index, event in enumerate(pieces):
            if index in (behaviour.cut_after, behaviour.end_after):
                break
            if index == behaviour.stall_after and self.owner._closing.wait(behaviour.stall):
                break
            if behaviour.chunk_delay and self.owner._closing.wait(behaviour.chunk_delay):
                break
            self._chunk(_corrupt(event) if index == behaviour.malformed_at else event)
        else:
            for event in tail:
                self._chunk(event)
        if behaviour.cut_after is not None and behaviour.cut_after < len(pieces):
            self.close_connection = True  # no last chunk: the body is cut
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, code: int, payload: bytes, headers: tuple[tuple[str, str], ...]) -> None:
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()


def _openai_reply(behaviour: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fault-model"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": behaviour.text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": behaviour.prompt_tokens,
            "completion_tokens": behaviour.completion_tokens,
            "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
        },
    }


def _anthropic_reply(behaviour: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fault-model"),
        "content": [{"type": "text", "text": behaviour.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": behaviour.prompt_tokens,
            "output_tokens": behaviour.completion_tokens,
        },
    }


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def _corrupt(event: bytes) -> bytes:
    """The event with its data cut short (not JSON), its ``event:`` line kept."""
    head, _, data = event.partition(b"data: ")
    return head + b"data: " + data[: len(data) // 2] + b"\n\n"


def _pieces(behaviour: Behaviour) -> list[str]:
    size = max(1, behaviour.chunk_chars)
    return [behaviour.text[i : i + size] for i in range(0, len(behaviour.text), size)]


Events = tuple[list[bytes], list[bytes], list[bytes]]
"""A stream's opening events, its text events and its closing events."""


def _openai_events(behaviour: Behaviour, body: dict[str, Any]) -> Events:
    model = body.get("model", "fault-model")
    base = {"id": "chatcmpl-fault", "object": "chat.completion.chunk", "created": 0}
    base["model"] = model

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    head = [chunk({"role": "assistant", "content": ""})]
    pieces = [chunk({"content": piece}) for piece in _pieces(behaviour)]
    tail = [chunk({}, "stop")]
    options = body.get("stream_options") or {}
    if behaviour.usage and options.get("include_usage"):
        usage = {
            "prompt_tokens": behaviour.prompt_tokens,
            "completion_tokens": behaviour.completion_tokens,
            "total_tokens": behaviour.prompt_tokens + behaviour.completion_tokens,
        }
        tail.append(_sse({**base, "choices": [], "usage": usage}))
    tail.append(b"data: [DONE]\n\n")
    return head, pieces, tail


def _anthropic_events(behaviour: Behaviour, body: dict[str, Any]) -> Events:
    usage_in = {"input_tokens": behaviour.prompt_tokens, "output_tokens": 1}
    message = {
        "id": "msg_fault",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "fault-model"),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage_in if behaviour.usage else {},
    }
    head = [
        _sse({"type": "message_start", "message": message}, "message_start"),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    pieces = [
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
            "content_block_delta",
        )
        for p in _pieces(behaviour)
    ]
    delta: dict[str, Any] = {"type": "message_delta"}
    delta["delta"] = {"stop_reason": "end_turn", "stop_sequence": None}
    delta["usage"] = {"output_tokens": behaviour.completion_tokens} if behaviour.usage else {}
    tail = [
        _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        _sse(delta, "message_delta"),
        _sse({"type": "message_stop"}, "message_stop"),
    ]
    return head, pieces, tail


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _error_body(behaviour: Behaviour, anthropic: bool) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(behaviour.status, "api_error")
    message = behaviour.message or f"fault server says {behaviour.status}"
    if anthropic:
        error: dict[str, Any] = {"type": kind, "message": message}
        if behaviour.code is not None:
            error["details"] = {"error_code": behaviour.code}
        return {"type": "error", "error": error}
    return {"error": {"message": message, "type": kind, "param": None, "code": behaviour.code}}

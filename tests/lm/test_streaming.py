"""Streaming in the OpenAI and Anthropic clients: the real SDKs over real HTTP to the fault
server's SSE streams (cut, stalled, malformed, ended early), and to the real local server.

What must hold: the streamed text equals the reply, reaches the listener as it arrives, a
cut attempt is discarded and retried (or the call fails cleanly after the retries), and the
tokens, dollars and cost cap count the call once, from the attempt that completed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.anthropic_client import AnthropicClient
from gepetto.lm.client import Completion, LMCallRecord, LMClient
from gepetto.lm.errors import LMConnectionError, LMResponseError, LMTimeoutError
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.pricing import StaticPrices
from gepetto.lm.reliability import RetryPolicy
from gepetto.lm.spending import CostCap
from gepetto.lm.streaming import listening, stream_labels

from .fault_server import FaultServer, slow, streamed

T = TypeVar("T")
MODEL = "fault-model"
TEXT = "The new instructions: answer with one word, then stop. " * 4
PRICES = {(p, MODEL): (3.0, 15.0) for p in ("openai", "anthropic")}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OPENAI_CUSTOM_HEADERS", "ANTHROPIC_CUSTOM_HEADERS", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        yield fault_server


@pytest.fixture(params=["openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_client(server: FaultServer, provider: str, **options: Any) -> LMClient:
    options.setdefault("retry", RetryPolicy(max_attempts=3, base_delay=0.01))
    options.setdefault("timeout", 5.0)
    options.setdefault("prices", StaticPrices(PRICES))
    if provider == "openai":
        return OpenAIClient(MODEL, base_url=server.openai_base_url, api_key="k", **options)
    return AnthropicClient(MODEL, base_url=server.url, api_key="k", **options)


class Heard:
    """A stream listener that keeps what it hears: ("open", labels), ("write", text),
    ("discard",), ("close",), with the time each piece arrived."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.times: list[float] = []

    def open_stream(self, labels: tuple[str, ...]) -> Heard:
        self.log.append(("open", labels))
        return self

    def write(self, text: str) -> None:
        self.log.append(("write", text))
        self.times.append(time.monotonic())

    def discard(self) -> None:
        self.log.append(("discard",))

    def close(self) -> None:
        self.log.append(("close",))

    def text(self) -> str:
        """The text since the last discard."""
        text = ""
        for entry in self.log:
            if entry[0] == "write":
                text += entry[1]
            elif entry[0] == "discard":
                text = ""
        return text

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.log]


def call(
    client: LMClient, heard: Heard | None = None, records: list[LMCallRecord] | None = None
) -> Completion:
    """One call of ``client`` in a fresh loop, heard by ``heard`` (if given)."""
    if records is not None:
        client.add_listener(records.append)

    async def main() -> Completion:
        try:
            with listening(heard), stream_labels("instructions"):
                return await client.acomplete("hello")
        finally:
            await client.aclose()

    return asyncio.run(main())


def run(client: LMClient, scenario: Callable[[LMClient], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await scenario(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def exact_cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * 3.0 + output_tokens * 15.0) / 1e6


def test_a_heard_call_streams_its_text_as_it_arrives_with_exact_usage(
    server: FaultServer, provider: str
) -> None:
    server.play(
        streamed(TEXT, prompt_tokens=41, completion_tokens=57, chunk_chars=5, chunk_delay=0.01)
    )
    heard, records = Heard(), list[LMCallRecord]()
    reply = call(make_client(server, provider), heard, records)
    assert reply.text == TEXT
    assert reply.finish_reason in ("stop", "end_turn")
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (41, 57)
    assert reply.usage.cost_usd == pytest.approx(exact_cost(41, 57))
    assert heard.log[0] == ("open", ("instructions",))
    assert heard.kinds()[-1] == "close" and "discard" not in heard.kinds()
    assert heard.text() == TEXT
    assert len(heard.times) == len(range(0, len(TEXT), 5)), "one write per text event"
    assert heard.times[-1] - heard.times[0] > 0.3, "pieces came as they arrived, not at once"
    body = server.requests[0].json
    assert body["stream"] is True
    if provider == "openai":
        assert body["stream_options"] == {"include_usage": True}
    [record] = records
    assert (record.usage.input_tokens, record.usage.output_tokens, record.attempts) == (41, 57, 1)


def test_unheard_calls_do_not_stream_unless_asked(server: FaultServer, provider: str) -> None:
    assert call(make_client(server, provider)).text == "ok"
    assert "stream" not in server.requests[-1].json, "stream=None without a listener"
    server.play(streamed(TEXT))
    assert call(make_client(server, provider, stream=True)).text == TEXT
    assert server.requests[-1].json["stream"] is True, "stream=True streams every call"
    heard = Heard()
    assert call(make_client(server, provider, stream=False), heard).text == "ok"
    assert "stream" not in server.requests[-1].json, "stream=False never streams"
    assert heard.log == [], "nothing is heard from a call that does not stream"
    with pytest.raises(ConfigError, match="stream must be"):
        make_client(server, provider, stream="yes")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"cut_after": 3}, LMConnectionError),
        ({"end_after": 3}, LMConnectionError),
        ({"malformed_at": 3}, LMResponseError),
        ({"stall_after": 3, "stall": 3.0}, LMTimeoutError),
    ],
    ids=["cut", "ended-early", "malformed", "stalled"],
)
def test_a_broken_stream_is_discarded_and_retried_and_counted_once(
    server: FaultServer, provider: str, fault: dict[str, Any], error: type[Exception]
) -> None:
    # The broken attempt would bill other usage: only the completed attempt's may count.
    server.play(
        streamed(TEXT, prompt_tokens=999, completion_tokens=999, **fault),
        streamed(TEXT, prompt_tokens=41, completion_tokens=57),
    )
    cap = CostCap(1.0)
    heard, records = Heard(), list[LMCallRecord]()
    client = make_client(server, provider, timeout=1.0, cost_cap=cap)
    reply = call(client, heard, records)
    assert reply.text == TEXT
    assert len(server.requests) == 2
    kinds = heard.kinds()
    assert kinds.count("discard") == 1 and kinds.count("close") == 1 and kinds[-1] == "close"
    first_try = kinds[: kinds.index("discard")]
    assert first_try.count("write") == 3, "the broken attempt's text was heard, then voided"
    assert heard.text() == TEXT, "the retry's text, from its start"
    [record] = records
    assert record.attempts == 2 and record.faults == {error.__name__: 1}
    assert (record.usage.input_tokens, record.usage.output_tokens) == (41, 57)
    assert record.usage.cost_usd == pytest.approx(exact_cost(41, 57))
    assert cap.spent_usd == pytest.approx(exact_cost(41, 57)), "the cap counts the call once"


def test_a_stream_broken_every_time_fails_cleanly_after_the_retries(
    server: FaultServer, provider: str
) -> None:
    server.play(*(streamed(TEXT, cut_after=2) for _ in range(3)))
    cap = CostCap(1.0)
    heard, records = Heard(), list[LMCallRecord]()
    client = make_client(server, provider, cost_cap=cap)
    with pytest.raises(LMConnectionError, match=r"was cut .*after \d+ chunks") as caught:
        call(client, heard, records)
    assert caught.value.retryable
    assert len(server.requests) == 3
    assert heard.kinds().count("discard") == 3 and heard.kinds()[-1] == "close"
    assert heard.text() == ""
    [record] = records
    assert record.error is not None and record.attempts == 3
    assert (record.usage.input_tokens, record.usage.output_tokens) == (0, 0)
    assert cap.spent_usd == 0.0, "a failed call reports no usage: nothing is charged"


def test_a_slow_stream_outlives_the_timeout_that_a_whole_reply_must_beat(
    server: FaultServer, provider: str
) -> None:
    """``timeout`` bounds each wait for a piece while streaming: a reply that takes 2.4 s
    in all, a piece every 0.15 s, survives a 1 s timeout that the same reply sent whole
    after 2.4 s does not."""
    server.play(streamed(TEXT, chunk_chars=14, chunk_delay=0.15))
    started = time.monotonic()
    reply = call(make_client(server, provider, timeout=1.0, stream=True))
    assert reply.text == TEXT and time.monotonic() - started > 2.0
    server.play(slow(2.4, TEXT))
    with pytest.raises(LMTimeoutError):
        call(make_client(server, provider, timeout=1.0, retry=RetryPolicy(max_attempts=1)))


def test_a_server_that_reports_no_usage_in_the_stream_is_counted_at_the_bound(
    server: FaultServer, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.play(streamed(TEXT, usage=False))
    records: list[LMCallRecord] = []
    with caplog.at_level(logging.WARNING, logger="gepetto.lm"):
        reply = call(make_client(server, provider, max_tokens=200), Heard(), records)
    assert reply.text == TEXT
    assert reply.usage.output_tokens == 200, "the output is counted at max_tokens"
    assert reply.usage.input_tokens > 0
    assert "counted at the call's upper bound" in caplog.text


def test_a_cache_hit_is_heard_whole(server: FaultServer, provider: str, tmp_path: Any) -> None:
    from gepetto.lm.cache import SQLiteResponseCache

    cache = SQLiteResponseCache(tmp_path / "cache.sqlite")
    server.play(streamed(TEXT))
    client = make_client(server, provider, cache=cache, temperature=0)
    first = call(client, Heard())
    heard = Heard()
    again = call(make_client(server, provider, cache=cache, temperature=0), heard)
    assert again.cached and again.text == first.text == TEXT
    assert heard.kinds() == ["open", "write", "close"] and heard.text() == TEXT
    assert len(server.requests) == 1


def test_a_listener_that_raises_does_not_break_the_call(server: FaultServer, provider: str) -> None:
    class Broken(Heard):
        def write(self, text: str) -> None:
            raise RuntimeError("listener bug")

    server.play(streamed(TEXT))
    assert call(make_client(server, provider), Broken()).text == TEXT


def test_concurrent_streams_stay_apart(server: FaultServer, provider: str) -> None:
    texts = [f"reply number {i}: " + "x" * 40 for i in range(4)]
    server.play(*(streamed(t, chunk_chars=3, chunk_delay=0.01) for t in texts))
    opened: list[Heard] = []

    class PerCall:
        def open_stream(self, labels: tuple[str, ...]) -> Heard:
            opened.append(Heard())
            return opened[-1]

    async def scenario(client: LMClient) -> list[str]:
        with listening(PerCall()):
            replies = await asyncio.gather(*(client.acomplete(str(i)) for i in range(4)))
            return [reply.text for reply in replies]

    replies = run(make_client(server, provider), scenario)
    assert sorted(replies) == sorted(texts)
    assert sorted(h.text() for h in opened) == sorted(texts)

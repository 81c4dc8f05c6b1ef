"""Streaming against the real local llama-server (0.5B model): the streamed reply equals the
whole one at temperature 0, the server reports the usage in the stream's last chunk, and a
stream cut in the middle (by a TCP proxy between the client and the real server) is retried
and counted once, its cost exact.

``cache_prompt`` is off: llama-server's reuse of a cached prompt changes the logits slightly,
which at temperature 0 can change the text whether or not the reply streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from gepetto.lm.client import Completion, LMCallRecord, LMClient
from gepetto.lm.local import LocalServer
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.pricing import StaticPrices
from gepetto.lm.reliability import RetryPolicy
from gepetto.lm.streaming import listening

pytestmark = [pytest.mark.llm, pytest.mark.slow]

MODEL = "qwen2.5-coder-0.5b"
PROMPT = "Name three colours, one per line."
PRICES = StaticPrices({("local", MODEL): (2.0, 8.0)})


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalServer]:
    with LocalServer(MODEL, parallel=1) as server:
        yield server


def client(base_url: str, **options: Any) -> OpenAIClient:
    return OpenAIClient(
        MODEL,
        base_url=base_url,
        provider_name="local",
        temperature=0,
        max_tokens=20,
        extra_body={"cache_prompt": False},
        prices=PRICES,
        retry=RetryPolicy(max_attempts=3, base_delay=0.05),
        timeout=120,
        **options,
    )


class Heard:
    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.discards = 0

    def open_stream(self, labels: tuple[str, ...]) -> Heard:
        return self

    def write(self, text: str) -> None:
        self.pieces.append(text)

    def discard(self) -> None:
        self.pieces.clear()
        self.discards += 1

    def close(self) -> None:
        pass


def call(lm: LMClient, heard: Heard | None, records: list[LMCallRecord]) -> Completion:
    lm.add_listener(records.append)

    async def main() -> Completion:
        try:
            with listening(heard):
                return await lm.acomplete(PROMPT)
        finally:
            await lm.aclose()

    return asyncio.run(main())


class CuttingProxy:
    """A TCP proxy to the real server that drops its first ``cuts`` connections once
    ``after_bytes`` bytes of the reply have gone through (mid-stream), then passes
    everything."""

    def __init__(self, port: int, cuts: int, after_bytes: int) -> None:
        self.port = port
        self.cuts = cuts
        self.after_bytes = after_bytes
        self.connections = 0

    async def serve(self, ready: asyncio.Future[int], stop: asyncio.Event) -> None:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        ready.set_result(server.sockets[0].getsockname()[1])
        async with server:
            await stop.wait()

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        cut = self.connections <= self.cuts
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limit: int
        ) -> None:
            sent = 0
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(256):
                    if sent + len(data) > limit:
                        writer.write(data[: limit - sent])
                        await writer.drain()
                        break
                    writer.write(data)
                    await writer.drain()
                    sent += len(data)
            writer.close()

        limit = self.after_bytes if cut else 1 << 62
        await asyncio.gather(pipe(down_r, up_w, 1 << 62), pipe(up_r, down_w, limit))


def test_streamed_reply_equals_the_whole_reply_with_the_same_usage(
    local_server: LocalServer,
) -> None:
    whole_records: list[LMCallRecord] = []
    whole = call(client(local_server.base_url), None, whole_records)
    heard, records = Heard(), list[LMCallRecord]()
    started = time.monotonic()
    streamed = call(client(local_server.base_url), heard, records)
    print(f"whole {whole_records[0].latency_s:.1f}s, streamed {time.monotonic() - started:.1f}s")
    assert streamed.text == whole.text and whole.text.strip()
    assert "".join(heard.pieces) == streamed.text and len(heard.pieces) > 3
    assert streamed.missing_usage == (), "llama-server reports the usage in the last chunk"
    assert streamed.usage == whole.usage
    expected = (whole.usage.input_tokens * 2.0 + whole.usage.output_tokens * 8.0) / 1e6
    assert streamed.usage.cost_usd == pytest.approx(expected) and expected > 0
    assert [r.usage for r in records] == [streamed.usage], "counted once"


def test_a_stream_cut_by_the_network_is_retried_and_counted_once(
    local_server: LocalServer,
) -> None:
    proxy = CuttingProxy(local_server.port, cuts=1, after_bytes=900)
    heard, records = Heard(), list[LMCallRecord]()

    async def main() -> Completion:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        serving = asyncio.ensure_future(proxy.serve(ready, stop))
        port = await ready
        lm = client(f"http://127.0.0.1:{port}/v1")
        lm.add_listener(records.append)
        try:
            with listening(heard):
                return await lm.acomplete(PROMPT)
        finally:
            await lm.aclose()
            stop.set()
            await serving

    reply = asyncio.run(main())
    assert proxy.connections == 2 and heard.discards == 1
    assert "".join(heard.pieces) == reply.text
    [record] = records
    assert record.attempts == 2 and record.faults == {"LMConnectionError": 1}
    assert record.usage == reply.usage and reply.missing_usage == ()
    expected = (reply.usage.input_tokens * 2.0 + reply.usage.output_tokens * 8.0) / 1e6
    assert reply.usage.cost_usd == pytest.approx(expected)

"""The dollar cap (:mod:`gepetto.lm.spending`): reservations, waits, refusals, threads."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.client import LMCallRecord
from gepetto.lm.errors import CostCapReached, is_fatal
from gepetto.lm.openai_client import OpenAIClient
from gepetto.lm.spending import (
    DEFAULT_RESERVED_OUTPUT_TOKENS,
    CostCap,
    check_cost_limit,
    output_token_bound,
    prompt_token_bound,
    usage_count,
)
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer, ok
from .test_cost_cap import COMPLETION_TOKENS, PROMPT_TOKENS, task_client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_from_providers(monkeypatch)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    replies = [ok("no", PROMPT_TOKENS, COMPLETION_TOKENS)] * 200
    with FaultServer(*replies) as fault_server:
        yield fault_server


async def _spend(client: OpenAIClient, calls: int) -> list[BaseException | None]:
    async def one(i: int) -> BaseException | None:
        try:
            await client.acomplete(f"question {i}")
        except CostCapReached as error:
            return error
        return None

    try:
        return await asyncio.gather(*(one(i) for i in range(calls)))
    finally:
        await client.aclose()


def test_concurrent_calls_of_one_client_stop_at_the_cap(server: FaultServer) -> None:
    cap = CostCap(0.1)
    records: list[LMCallRecord] = []
    client = task_client(server, cost_cap=cap)
    client.add_listener(records.append)
    outcomes = asyncio.run(_spend(client, 40))
    refused = [o for o in outcomes if o is not None]
    assert refused and all(is_fatal(e) for e in refused)
    assert "max_cost_usd=$0.1 reached" in str(refused[0])
    spent = sum(r.usage.cost_usd or 0.0 for r in records)
    assert spent <= 0.1
    assert spent == pytest.approx(cap.spent_usd)
    assert len(server.requests) == len(records) == 40 - len(refused)  # refused: never sent
    assert cap.in_flight == 0 and cap.closed


def test_a_call_waits_for_calls_in_flight_instead_of_being_refused() -> None:
    """Worst cases of 0.4 each under a cap of 1.0: the third call waits for a settlement
    (the first two cost 0.1 each), then fits; nothing is refused."""

    async def main() -> list[float]:
        cap = CostCap(1.0)
        first = await cap.reserve(0.4, provider="p", model="m")
        second = await cap.reserve(0.4, provider="p", model="m")
        third = asyncio.ensure_future(cap.reserve(0.4, provider="p", model="m"))
        await asyncio.sleep(0.01)
        assert not third.done()  # 0.8 reserved: 0.4 more does not fit yet
        first.settle(0.1)
        (await third).settle(0.1)
        second.settle(0.1)
        return [cap.spent_usd, cap.reserved_usd]

    spent, reserved = asyncio.run(main())
    assert spent == pytest.approx(0.3)
    assert reserved == 0.0


def test_the_cap_holds_across_threads_and_event_loops() -> None:
    cap = CostCap(2.0)
    peak: list[float] = []
    lock = threading.Lock()

    async def worker(seed: int) -> None:
        rng = random.Random(seed)

        async def call() -> None:
            worst = rng.uniform(0.01, 0.08)
            try:
                reservation = await cap.reserve(worst, provider="p", model="m")
            except CostCapReached:
                return
            with lock:
                peak.append(cap.spent_usd + cap.reserved_usd)
            await asyncio.sleep(rng.uniform(0, 0.005))
            reservation.settle(worst * rng.uniform(0.2, 1.0))

        await asyncio.gather(*(call() for _ in range(60)))

    threads = [threading.Thread(target=asyncio.run, args=(worker(s),)) for s in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert max(peak) <= 2.0 + 1e-9
    assert cap.spent_usd <= 2.0
    assert cap.in_flight == 0


def test_settling_an_unknown_cost_charges_the_whole_reservation() -> None:
    async def main() -> float:
        cap = CostCap(1.0)
        (await cap.reserve(0.3, provider="p", model="m")).settle(None)
        (await cap.reserve(0.2, provider="p", model="m")).release()
        return cap.spent_usd

    assert asyncio.run(main()) == pytest.approx(0.3)


def test_token_bounds() -> None:
    messages = [{"role": "user", "content": "héllo"}]
    assert prompt_token_bound(messages) >= len("héllo".encode())
    assert output_token_bound({"max_tokens": 50}, {}) == 50
    assert output_token_bound({"max_completion_tokens": 30, "max_tokens": 50}, {}) == 30
    assert output_token_bound({"max_tokens": 50, "n": 3}, {}) == 150
    assert output_token_bound({}, {"max_tokens": 7}) == 7
    assert output_token_bound({}, {}) == DEFAULT_RESERVED_OUTPUT_TOKENS
    assert output_token_bound({"max_tokens": None}, {}) == DEFAULT_RESERVED_OUTPUT_TOKENS


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), "1", True, None])
def test_bad_limits_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError, match="max_cost_usd"):
        check_cost_limit(value)


def test_usage_counts_that_cannot_be_trusted_are_none() -> None:
    assert [usage_count(v) for v in (0, 7, -1, None, "3", 2.0, True, 10**12)] == [
        0,
        7,
        None,
        None,
        None,
        None,
        None,
        None,
    ]

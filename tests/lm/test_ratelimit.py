"""Tests of the sliding-window RPM/TPM limiter, on a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from gepetto.errors import ConfigError
from gepetto.lm.client import RateLimiter as RateLimiterProtocol
from gepetto.lm.ratelimit import WINDOW_SECONDS, RateLimiter


class FakeClock:
    """A clock that moves only when told to; ``sleep`` moves it by exactly the delay asked.

    The limiter lets only the head waiter sleep, so the clock stays exact even with many
    concurrent waiters.
    """

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now

    async def sleep(self, delay: float) -> None:
        with self._lock:
            self.sleeps.append(delay)
            self.now += delay
        await asyncio.sleep(0)


class ManualClock(FakeClock):
    """A clock whose ``sleep`` really waits, until the test moves the clock past its end."""

    async def sleep(self, delay: float) -> None:
        with self._lock:
            self.sleeps.append(delay)
            target = self.now + delay
        while self() < target:
            await asyncio.sleep(0)


async def settle(rounds: int = 5) -> None:
    """Let every ready task run a few steps."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def make(clock: FakeClock, rpm: int | None = None, tpm: int | None = None) -> RateLimiter:
    return RateLimiter(rpm, tpm, clock=clock, sleep=clock.sleep)


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=5))


def max_in_any_window(times: list[float]) -> int:
    """The most grant times in any half-open 60-second window [t, t + 60)."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + WINDOW_SECONDS) for t in times)


# ------------------------------------------------------------------ configuration


def test_implements_the_protocol() -> None:
    limiter: RateLimiterProtocol = RateLimiter(10, 1000)
    assert limiter is not None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "10"])
def test_limits_must_be_positive_integers(bad: Any) -> None:
    with pytest.raises(ConfigError, match="requests_per_minute"):
        RateLimiter(requests_per_minute=bad)
    with pytest.raises(ConfigError, match="tokens_per_minute"):
        RateLimiter(tokens_per_minute=bad)


def test_token_counts_are_validated() -> None:
    limiter = make(FakeClock(), rpm=5, tpm=100)
    with pytest.raises(ConfigError, match="estimated_tokens"):
        run(lambda: limiter.acquire(-1))
    with pytest.raises(ConfigError, match="actual_tokens"):
        limiter.record(10, -5)
    with pytest.raises(ConfigError, match="estimated_tokens"):
        limiter.record(1.5, 5)  # type: ignore[arg-type]


def test_no_limits_never_waits() -> None:
    clock = FakeClock()
    limiter = make(clock)

    async def main() -> None:
        for _ in range(1000):
            await limiter.acquire(10**9)

    run(main)
    assert clock.sleeps == []


# ------------------------------------------------------------------ requests per minute


def test_rpm_lets_n_through_then_waits_exactly_until_the_window_frees() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=3)

    async def main() -> None:
        for t in (0.0, 10.0, 20.0):
            clock.set(t)
            await limiter.acquire(1)
        assert clock.sleeps == []
        clock.set(30.0)
        await limiter.acquire(1)  # waits until the t=0 request leaves: t=60
        assert clock.sleeps == [30.0]
        assert clock.now == 60.0
        await limiter.acquire(1)  # then until the t=10 one leaves
        assert clock.now == 70.0

    run(main)
    assert limiter.usage() == (3, 0)


def test_rpm_window_slides() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=2)

    async def main() -> None:
        await limiter.acquire(0)
        await limiter.acquire(0)
        clock.set(61.0)  # both have left the window
        await limiter.acquire(0)
        await limiter.acquire(0)

    run(main)
    assert clock.sleeps == []


# ------------------------------------------------------------------ tokens per minute


def test_tpm_waits_until_enough_tokens_leave_the_window() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)

    async def main() -> None:
        await limiter.acquire(600)
        clock.set(5.0)
        await limiter.acquire(300)
        clock.set(10.0)
        await limiter.acquire(100)  # 1000 exactly: still fits
        assert clock.sleeps == []
        await limiter.acquire(200)  # needs the 600 from t=0 gone
        assert clock.now == 60.0
        await limiter.acquire(500)  # 300 + 100 + 200 + 500 > 1000: needs the t=5 300 gone
        assert clock.now == 65.0

    run(main)
    assert clock.sleeps == [50.0, 5.0]


def test_record_lower_actual_frees_tokens() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)

    async def main() -> None:
        await limiter.acquire(900)
        limiter.record(900, 100)
        await limiter.acquire(800)  # 100 + 800 fits only thanks to the correction

    run(main)
    assert clock.sleeps == []
    assert limiter.usage() == (0, 900)


def test_record_higher_actual_makes_the_next_request_wait() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)

    async def main() -> None:
        await limiter.acquire(100)
        limiter.record(100, 950)
        clock.set(20.0)
        await limiter.acquire(100)  # 950 + 100 > 1000: waits for the corrected entry (t=0)

    run(main)
    assert clock.sleeps == [40.0]


def test_record_corrects_each_request_once() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=10_000)

    async def main() -> None:
        await limiter.acquire(500)
        await limiter.acquire(500)

    run(main)
    limiter.record(500, 100)
    limiter.record(500, 200)
    assert limiter.usage() == (0, 300)
    limiter.record(500, 300)  # no uncorrected 500 left, and lower: ignored
    assert limiter.usage() == (0, 300)


def test_record_after_the_request_left_the_window_counts_extra_from_now() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)
    run(lambda: limiter.acquire(100))
    clock.set(100.0)
    limiter.record(100, 400)  # the t=0 entry is gone; the extra 300 count from t=100
    assert limiter.usage() == (0, 300)
    clock.set(160.0)
    assert limiter.usage() == (0, 0)
    limiter.record(100, 50)  # lower and nothing to correct: ignored
    assert limiter.usage() == (0, 0)


def test_oversize_request_passes_when_the_window_is_empty() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)

    async def main() -> None:
        await limiter.acquire(5000)  # empty window: goes at once
        assert clock.sleeps == []
        await limiter.acquire(1)  # the window is over-full until t=60
        assert clock.now == 60.0

    run(main)


def test_oversize_request_waits_for_an_empty_window_without_deadlock() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)

    async def main() -> None:
        await limiter.acquire(10)
        clock.set(10.0)
        await limiter.acquire(20)
        clock.set(30.0)
        await limiter.acquire(5000)  # needs both earlier entries gone: t=70

    run(main)
    assert clock.now == 70.0
    assert clock.sleeps == [40.0]


def test_rpm_and_tpm_both_apply() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=10, tpm=100)

    async def main() -> None:
        await limiter.acquire(60)
        clock.set(1.0)
        await limiter.acquire(60)  # tokens bind: waits until t=60

    run(main)
    assert clock.sleeps == [59.0]


# ------------------------------------------------------------------ concurrency and order


def test_waiters_are_served_fifo() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=1)
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire(1)
        order.append(i)

    async def main() -> None:
        await limiter.acquire(1)
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(worker(i)))
            await asyncio.sleep(0)  # let it queue before the next one starts
        await asyncio.gather(*tasks)

    run(main)
    assert order == [0, 1, 2, 3, 4]
    assert clock.sleeps == [60.0] * 5


def test_small_request_does_not_overtake_a_waiting_large_one() -> None:
    clock = ManualClock()
    limiter = make(clock, tpm=100)
    order: list[str] = []

    async def worker(name: str, tokens: int) -> None:
        await limiter.acquire(tokens)
        order.append(name)

    async def main() -> None:
        await limiter.acquire(90)
        big = asyncio.create_task(worker("big", 50))
        await settle()
        assert clock.sleeps == [60.0]  # the big one is waiting for t=60
        small = asyncio.create_task(worker("small", 5))  # 90 + 5 fits, but it must queue
        await settle()
        assert order == []
        assert limiter.waiting == 2
        clock.set(60.0)
        await asyncio.gather(big, small)

    run(main)
    assert order == ["big", "small"]
    assert clock.sleeps == [60.0]


def test_newcomers_queue_behind_a_woken_head() -> None:
    clock = ManualClock()
    limiter = make(clock, rpm=2)
    order: list[str] = []

    async def worker(name: str) -> None:
        await limiter.acquire(1)
        order.append(name)

    async def main() -> None:
        await limiter.acquire(1)
        clock.set(30.0)
        await limiter.acquire(1)
        first = asyncio.create_task(worker("first"))
        await settle()
        clock.set(60.0)  # frees one slot, for "first" only
        second = asyncio.create_task(worker("second"))
        await settle()
        assert order == ["first"]
        assert limiter.waiting == 1
        clock.set(90.0)  # the t=30 request leaves
        await asyncio.gather(first, second)

    run(main)
    assert order == ["first", "second"]


def test_gather_of_50_acquires_respects_the_rpm_limit() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=10)
    granted: list[float] = []

    async def one() -> None:
        await limiter.acquire(1)
        granted.append(clock())

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(50)))

    run(main)
    assert len(granted) == 50
    assert max_in_any_window(granted) == 10
    assert sorted(granted) == [60.0 * (i // 10) for i in range(50)]
    assert limiter.waiting == 0


def test_gather_respects_the_tpm_limit() -> None:
    clock = FakeClock()
    limiter = make(clock, tpm=1000)
    granted: list[tuple[float, int]] = []

    async def one(tokens: int) -> None:
        await limiter.acquire(tokens)
        granted.append((clock(), tokens))

    async def main() -> None:
        await asyncio.gather(*(one(100 + 37 * (i % 7)) for i in range(40)))

    run(main)
    assert len(granted) == 40
    for start, _ in granted:
        in_window = sum(t for at, t in granted if start <= at < start + WINDOW_SECONDS)
        assert in_window <= 1000


def test_cancelled_waiter_gives_up_its_place() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=1)
    order: list[str] = []

    async def worker(name: str) -> None:
        await limiter.acquire(1)
        order.append(name)

    async def main() -> None:
        await limiter.acquire(1)
        blocker = asyncio.Event()

        async def stuck_sleep(delay: float) -> None:
            await blocker.wait()  # the head waits "forever" until cancelled

        limiter._sleep = stuck_sleep
        head = asyncio.create_task(worker("head"))
        await asyncio.sleep(0)
        middle = asyncio.create_task(worker("middle"))
        await asyncio.sleep(0)
        last = asyncio.create_task(worker("last"))
        await asyncio.sleep(0)
        assert limiter.waiting == 3
        middle.cancel()
        await asyncio.sleep(0)
        assert limiter.waiting == 2
        limiter._sleep = clock.sleep
        head.cancel()  # the sleeping head: the next in line must take over
        await asyncio.gather(last)
        with pytest.raises(asyncio.CancelledError):
            await head
        with pytest.raises(asyncio.CancelledError):
            await middle

    run(main)
    assert order == ["last"]
    assert limiter.waiting == 0
    assert limiter.usage() == (1, 0)


def test_shared_by_event_loops_in_several_threads() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=5, tpm=10_000)
    granted: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    async def burst() -> None:
        async def one() -> None:
            await limiter.acquire(100)
            with lock:
                granted.append(clock())

        await asyncio.gather(*(one() for _ in range(10)))

    def thread_main() -> None:
        try:
            run(burst)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=thread_main) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert len(granted) == 30
    assert max_in_any_window(granted) <= 5
    assert limiter.waiting == 0


def test_wait_near_the_window_edge_is_short() -> None:
    clock = FakeClock()
    limiter = make(clock, rpm=1)

    async def main() -> None:
        await limiter.acquire(1)
        clock.set(59.99)
        await limiter.acquire(1)

    run(main)
    assert clock.sleeps == [pytest.approx(0.01)]

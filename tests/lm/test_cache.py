"""Tests of the in-memory and SQLite response caches."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gepetto.errors import ConfigError
from gepetto.lm.cache import SCHEMA_VERSION, CacheStats, MemoryResponseCache, SQLiteResponseCache
from gepetto.lm.client import Completion, LMRequest, ResponseCache, Usage

KEY = LMRequest("gpt-4o-mini", ({"role": "user", "content": "hi"},), {"temperature": 0}).cache_key(
    "openai"
)
COMPLETION = Completion("hello there", "gpt-4o-mini-2024-07-18", Usage(12, 3, 0.000004), "stop")


def as_cached(completion: Completion) -> Completion:
    return Completion(
        completion.text, completion.model, completion.usage, completion.finish_reason, True
    )


@pytest.fixture(params=["memory", "sqlite"])
def cache(
    request: pytest.FixtureRequest, tmp_path: Path
) -> MemoryResponseCache | SQLiteResponseCache:
    if request.param == "memory":
        return MemoryResponseCache()
    sqlite_cache = SQLiteResponseCache(tmp_path / "cache.sqlite")
    request.addfinalizer(sqlite_cache.close)
    return sqlite_cache


# ------------------------------------------------------------------ both caches


def test_both_implement_the_protocol() -> None:
    with SQLiteResponseCache(":memory:") as sqlite_cache:
        caches: list[ResponseCache] = [MemoryResponseCache(), sqlite_cache]  # mypy checks this
        for cache in caches:
            cache.put(KEY, COMPLETION)
            assert cache.get(KEY) == as_cached(COMPLETION)


def test_round_trip(cache: MemoryResponseCache | SQLiteResponseCache) -> None:
    assert cache.get(KEY) is None
    cache.put(KEY, COMPLETION)
    assert cache.get(KEY) == as_cached(COMPLETION)
    assert cache.stats() == CacheStats(hits=1, misses=1, entries=1)


def test_unknown_cost_and_finish_reason_round_trip(
    cache: MemoryResponseCache | SQLiteResponseCache,
) -> None:
    completion = Completion("x", "m", Usage(1, 2, None), None)
    cache.put("k", completion)
    assert cache.get("k") == as_cached(completion)


def test_put_replaces(cache: MemoryResponseCache | SQLiteResponseCache) -> None:
    cache.put(KEY, COMPLETION)
    newer = Completion("other", "gpt-4o", Usage(1, 1, 0.5), "length")
    cache.put(KEY, newer)
    assert cache.get(KEY) == as_cached(newer)
    assert cache.stats().entries == 1


def test_keys_must_be_non_empty_strings(cache: MemoryResponseCache | SQLiteResponseCache) -> None:
    with pytest.raises(ConfigError):
        cache.get("")
    with pytest.raises(ConfigError):
        cache.put(None, COMPLETION)  # type: ignore[arg-type]


def test_concurrent_puts_from_threads(cache: MemoryResponseCache | SQLiteResponseCache) -> None:
    errors: list[BaseException] = []

    def writer(thread: int) -> None:
        try:
            for i in range(50):
                key = f"{thread}-{i}"
                cache.put(key, Completion(key, "m", Usage(thread, i, None)))
                assert cache.get(key) is not None
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    assert cache.stats() == CacheStats(hits=400, misses=0, entries=400)
    for t in range(8):
        for i in range(50):
            found = cache.get(f"{t}-{i}")
            assert found is not None
            assert (found.text, found.usage) == (f"{t}-{i}", Usage(t, i, None))


# ------------------------------------------------------------------ SQLite


def test_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "cache.sqlite"
    with SQLiteResponseCache(path) as cache:
        cache.put(KEY, COMPLETION)
    with SQLiteResponseCache(path) as reopened:
        assert reopened.get(KEY) == as_cached(COMPLETION)
        assert reopened.stats() == CacheStats(hits=1, misses=0, entries=1)


def test_schema_version_wal_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    SQLiteResponseCache(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {row[1]: row[5] for row in conn.execute("PRAGMA table_info(completions)")}
    finally:
        conn.close()
    assert set(columns) == {
        "key",
        "text",
        "model",
        "finish_reason",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "created_at",
    }
    assert columns["key"] == 1  # the primary key


def test_stores_only_the_completion(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with SQLiteResponseCache(path) as cache:
        cache.put(KEY, COMPLETION)
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT * FROM completions").fetchone()
    finally:
        conn.close()
    assert row[:7] == (KEY, "hello there", "gpt-4o-mini-2024-07-18", "stop", 12, 3, 0.000004)
    assert isinstance(row[7], float)  # created_at


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        SQLiteResponseCache(path)


def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(ConfigError, match="not a usable response cache"):
        SQLiteResponseCache(path)


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    cache = SQLiteResponseCache(tmp_path / "cache.sqlite")
    cache.close()
    cache.close()
    with pytest.raises(RuntimeError, match="closed"):
        cache.get(KEY)
    with pytest.raises(RuntimeError, match="closed"):
        cache.put(KEY, COMPLETION)


def test_two_handles_on_one_file_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    with SQLiteResponseCache(path) as first, SQLiteResponseCache(path) as second:
        first.put(KEY, COMPLETION)
        assert second.get(KEY) == as_cached(COMPLETION)


@pytest.fixture(scope="module")
def memory_db() -> Iterator[SQLiteResponseCache]:
    with SQLiteResponseCache(":memory:") as cache:
        yield cache


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(),
    model=st.text(min_size=1),
    finish=st.none() | st.text(),
    tokens=st.tuples(st.integers(0, 2**40), st.integers(0, 2**40)),
    cost=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_any_completion_round_trips(
    memory_db: SQLiteResponseCache,
    text: str,
    model: str,
    finish: str | None,
    tokens: tuple[int, int],
    cost: float | None,
) -> None:
    completion = Completion(text, model, Usage(tokens[0], tokens[1], cost), finish)
    memory_db.put("key", completion)
    assert memory_db.get("key") == as_cached(completion)

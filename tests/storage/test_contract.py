"""Every storage backend passes the same contract (gepetto.testing.storage_contract).

The PostgreSQL tests need a real server: ``URL=$(scripts/start-postgres)`` and
``GEPETTO_TEST_POSTGRES_URL=$URL``; each test works in a schema of its own.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gepetto.errors import ConfigError
from gepetto.storage import MemoryStorage, RunHeader, SQLiteStorage, StorageError, open_storage
from gepetto.storage.base import SharedRunStorage
from gepetto.testing.storage_contract import (
    check_journal_contract,
    check_shared_run_across_processes,
    check_shared_run_contract,
)
from tests.storage.conftest import _admin_connection

POSTGRES_URL = os.environ.get("GEPETTO_TEST_POSTGRES_URL")
TestFunction = TypeVar("TestFunction", bound=Callable[..., None])


def postgres_test(test: TestFunction) -> TestFunction:
    """Mark a test that needs the PostgreSQL server (skipped without its URL)."""
    skip = pytest.mark.skipif(
        not POSTGRES_URL,
        reason="GEPETTO_TEST_POSTGRES_URL is unset: run URL=$(scripts/start-postgres) and "
        "export GEPETTO_TEST_POSTGRES_URL=$URL to test the PostgreSQL backend",
    )
    marked: TestFunction = pytest.mark.postgres(pytest.mark.slow(skip(test)))
    return marked


# --- memory -----------------------------------------------------------------------------


def test_memory_journal_contract() -> None:
    storage = MemoryStorage()
    check_journal_contract(lambda: storage)


def test_memory_shared_run_contract() -> None:
    storage = MemoryStorage()
    check_shared_run_contract(lambda: storage, clocked=lambda clock: MemoryStorage(clock=clock))


@pytest.mark.slow
def test_memory_shared_run_contract_with_the_real_clock() -> None:
    storage = MemoryStorage()
    check_shared_run_contract(lambda: storage)  # lease expiry by sleeping


def test_memory_is_a_shared_run_storage() -> None:
    assert isinstance(MemoryStorage(), SharedRunStorage)


# --- SQLite -----------------------------------------------------------------------------


def test_sqlite_journal_contract(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    check_journal_contract(lambda: SQLiteStorage(path))


def test_sqlite_shared_run_contract(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    check_shared_run_contract(
        lambda: SQLiteStorage(path), clocked=lambda clock: SQLiteStorage(path, clock=clock)
    )


@pytest.mark.slow
def test_sqlite_shared_run_across_processes(tmp_path: Path) -> None:
    check_shared_run_across_processes(functools.partial(SQLiteStorage, tmp_path / "j.sqlite"))


def _write_v1_journal(path: Path) -> list[dict[str, Any]]:
    """A journal as gepetto wrote it before store version 2, by hand."""
    records: list[dict[str, Any]] = [
        {"kind": "candidate", "id": 0, "content_hash": "h0", "texts": {"a": "seed"}},
        {"kind": "evaluation", "candidate_hash": "h0", "metric_calls": 3, "iteration": -1},
        {"kind": "iteration", "iteration": 0, "parent_id": 0},
        {"kind": "evaluation", "candidate_hash": "h0", "metric_calls": 4, "iteration": 0},
        {"kind": "candidate", "id": 1, "content_hash": "h1", "texts": {"a": "child"}},
        {"kind": "iteration", "iteration": 1, "parent_id": 1},
        {"kind": "lm_call", "role": "reflection", "metric_calls": 100},
    ]
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, header TEXT NOT NULL);
        CREATE TABLE records (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            body TEXT NOT NULL
        );
        CREATE INDEX records_by_run ON records (run_id, seq);
        PRAGMA user_version = 1;
        """
    )
    for run_id in ("default", "empty"):
        db.execute("INSERT INTO runs VALUES (?, ?)", (run_id, RunHeader(run_id).to_json()))
    db.executemany(
        "INSERT INTO records (run_id, body) VALUES ('default', ?)",
        [(json.dumps(record),) for record in records],
    )
    db.commit()
    db.close()
    return records


def test_sqlite_version_1_journal_opens_migrates_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    records = _write_v1_journal(path)
    storage = SQLiteStorage(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
    assert storage.header("default") == RunHeader("default")
    assert storage.read("default") == list(enumerate(records, start=1))
    assert storage.metric_calls_used("default") == 7
    assert storage.metric_calls_used("empty") == 0
    assert storage.allocate_iteration("default") == 2
    assert storage.allocate_iteration("empty") == 0
    assert storage.admit_candidate("default", {"kind": "candidate", "content_hash": "h1"}) == (
        1,
        None,
    )
    assert storage.admit_candidate("default", {"kind": "candidate", "content_hash": "h2"}) == (
        2,
        8,
    )
    assert storage.reserve("default", "w", 3, 10, 60) is not None
    assert storage.reserve("default", "w", 1, 10, 60) is None
    assert storage.append("default", [{"kind": "note"}]) == [9]
    storage.close()
    reopened = SQLiteStorage(path)
    assert len(reopened.read("default")) == 9
    assert reopened.metric_calls_used("default") == 7
    reopened.close()


def test_sqlite_version_1_journal_opened_by_two_threads_at_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    _write_v1_journal(path)
    opened: list[SQLiteStorage] = []
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            opened.append(SQLiteStorage(path))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [s.metric_calls_used("default") for s in opened] == [7, 7]
    for storage in opened:
        storage.close()


def test_sqlite_refuses_a_newer_store_version(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 3")
    db.close()
    with pytest.raises(StorageError, match="newer gepetto"):
        SQLiteStorage(path)


def test_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError, match="not a readable gepetto journal"):
        SQLiteStorage(path)


# --- PostgreSQL -------------------------------------------------------------------------


def test_postgres_without_psycopg_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psycopg")
    import gepetto.storage.postgres as module

    monkeypatch.setattr(module, "_IMPORT_ERROR", ImportError("No module named 'psycopg'"))
    with pytest.raises(ConfigError, match=r"pip install 'gepetto\[postgres\]'"):
        module.PostgresStorage("postgresql://nobody@127.0.0.1:1/none")


def _postgres(url: str, **options: Any) -> Any:
    from gepetto.storage.postgres import PostgresStorage

    return PostgresStorage(url, **options)


@postgres_test
def test_postgres_journal_contract(postgres_url: str) -> None:
    check_journal_contract(lambda: _postgres(postgres_url))


@postgres_test
def test_postgres_shared_run_contract_with_processes(postgres_url: str) -> None:
    check_shared_run_contract(
        lambda: _postgres(postgres_url),
        clocked=lambda clock: _postgres(postgres_url, clock=clock),
        spawnable=functools.partial(_postgres, postgres_url),
    )


@postgres_test
def test_postgres_many_processes_share_one_budget(postgres_url: str) -> None:
    check_shared_run_across_processes(
        functools.partial(_postgres, postgres_url), workers=8, attempts=40
    )


@postgres_test
def test_postgres_open_storage_by_url(postgres_url: str) -> None:
    from gepetto.storage.postgres import PostgresStorage

    storage = open_storage(postgres_url, run_dir=None)
    assert isinstance(storage, PostgresStorage)
    assert isinstance(storage, SharedRunStorage)
    storage.create(RunHeader("by-url"))
    assert storage.append("by-url", [{"kind": "note"}]) == [1]
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        storage.header("by-url")


@postgres_test
def test_postgres_refuses_a_newer_store_version(postgres_url: str) -> None:
    _postgres(postgres_url).close()
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("UPDATE gepetto_schema SET version = 99")
    with pytest.raises(StorageError, match="newer gepetto"):
        _postgres(postgres_url)


@postgres_test
def test_postgres_reconnects_after_its_connection_is_killed(postgres_url: str) -> None:
    name = f"gepetto-reconnect-{uuid.uuid4().hex[:8]}"
    storage = _postgres(f"{postgres_url}&application_name={name}")
    storage.create(RunHeader("reconnect"))
    storage.append("reconnect", [{"kind": "note", "n": 1}])
    with _admin_connection() as admin:
        killed = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    assert killed == [(True,)]
    with pytest.raises(StorageError):
        storage.read("reconnect")  # the broken connection's error is reported once
    assert [r for _, r in storage.read("reconnect")] == [{"kind": "note", "n": 1}]
    storage.close()


def test_postgres_unreachable_server_is_a_storage_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(StorageError, match="cannot connect") as raised:
        _postgres("postgresql://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "secret" not in str(raised.value), "the password must not be in messages"

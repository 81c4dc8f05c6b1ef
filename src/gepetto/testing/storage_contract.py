"""The contract every journal storage backend passes, as plain functions.

Run them from a test of your backend::

    from gepetto.testing.storage_contract import (
        check_journal_contract,
        check_shared_run_contract,
    )

    def test_my_backend(tmp_path):
        path = tmp_path / "journal.db"
        check_journal_contract(lambda: MyStorage(path))
        check_shared_run_contract(
            functools.partial(MyStorage, path),
            clocked=lambda clock: MyStorage(path, clock=clock),
            spawnable=functools.partial(MyStorage, path),
        )

``make_storage`` is a zero-argument factory. Every call must give a storage on the *same*
data (a second connection to the same file or database, or, for a backend whose data lives
in one object such as :class:`~gepetto.storage.MemoryStorage`, that same object), and
``close()`` of one must leave the data to the next. The checks only use fresh, unique run
ids, so a database that already holds runs (even ones written by a concurrent check) is
fine. A failed check raises :class:`AssertionError` with what went wrong.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import random
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.storage.base import (
    JournalStorage,
    ListsRuns,
    RunExists,
    RunHeader,
    SharedRunStorage,
    StorageError,
)

__all__ = [
    "FakeClock",
    "check_journal_contract",
    "check_shared_run_across_processes",
    "check_shared_run_contract",
]

JournalFactory = Callable[[], JournalStorage]
SharedFactory = Callable[[], SharedRunStorage]
ClockedFactory = Callable[[Callable[[], float]], SharedRunStorage]


class FakeClock:
    """A settable wall clock for lease expiry tests: ``clock()`` returns ``now``."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += seconds


def _need_assertions() -> None:
    if not __debug__:  # pragma: no cover - python -O strips the checks' assert statements
        raise RuntimeError("the storage contract checks need assertions: run without -O")


def _run_id(prefix: str) -> str:
    return f"contract-{prefix}-{uuid.uuid4().hex[:12]}"


def _new_run(storage: JournalStorage, prefix: str) -> str:
    run_id = _run_id(prefix)
    storage.create(RunHeader(run_id, fingerprints={"seed": "abc"}, created_at=1.5))
    return run_id


def _raises(error: type[BaseException], call: Callable[[], object], what: str) -> None:
    try:
        call()
    except error:
        return
    raise AssertionError(f"{what} should raise {error.__name__}")


def _evaluation(calls: int) -> dict[str, Any]:
    return {"kind": "evaluation", "candidate_hash": "h", "metric_calls": calls, "scores": [1.0]}


def _candidate(content_hash: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "candidate",
        "content_hash": content_hash,
        "texts": {"a": content_hash},
        **extra,
    }


def _with_storage(make_storage: JournalFactory, check: Callable[[Any], None]) -> None:
    storage = make_storage()
    try:
        check(storage)
    finally:
        storage.close()


# --- the journal contract -------------------------------------------------------------


def check_journal_contract(make_storage: JournalFactory) -> None:
    """Check a :class:`~gepetto.storage.base.JournalStorage` backend.

    The contract:

    - ``header(run_id)`` is ``None`` for an unknown run; after ``create(header)`` it is equal
      to the header; a second ``create`` of the id raises :class:`RunExists` (a
      :class:`StorageError`) and leaves the first header;
    - ``append(run_id, records)`` returns one sequence number per record, all ``> 0`` and
      strictly increasing within the run, also across calls (``[]`` for no records);
    - ``read(run_id, after)`` returns ``(seq, record)`` for the run's records with
      ``seq > after``, in append order, each record as its JSON round trip (tuples come
      back as lists); only the run's own records; ``[]`` for an unknown run; neither
      mutating an appended dict nor a returned one changes what is stored;
    - a batch with a record that cannot be stored (a dict key that is not a string, a
      circular reference, a lone surrogate) raises :class:`StorageError` and writes
      nothing of the batch; the storage stays usable;
    - ``append`` to an unknown run raises :class:`StorageError`;
    - what one storage wrote, the next one from the factory reads (after ``close``);
    - concurrent appends from threads (sharing one storage or each with its own) all land,
      each batch contiguous in the run's log;
    - a backend that lists its runs (:class:`~gepetto.storage.base.ListsRuns`) lists every
      created run once, and none that was not created.
    """
    _need_assertions()
    _with_storage(make_storage, _check_create_and_header)
    _with_storage(make_storage, _check_run_ids)
    _with_storage(make_storage, _check_append_and_read)
    _with_storage(make_storage, _check_atomic_batches)
    _with_storage(make_storage, _check_unknown_run)
    _check_reopen(make_storage)
    _check_concurrent_appends(make_storage)


def _check_run_ids(storage: JournalStorage) -> None:
    if not isinstance(storage, ListsRuns):
        return
    first, second = _new_run(storage, "list"), _new_run(storage, "list")
    listed = storage.run_ids()
    assert listed.count(first) == 1 and listed.count(second) == 1, (
        f"run_ids() should list each created run once, got {listed!r}"
    )
    assert _run_id("never-created") not in listed


def _check_create_and_header(storage: JournalStorage) -> None:
    run_id = _run_id("header")
    assert storage.header(run_id) is None, "header of an unknown run should be None"
    header = RunHeader(
        run_id,
        schema_version=1,
        fingerprints={"seed": "0123abcd", "trainset": "ffee"},
        config={"reflection_minibatch_size": 3, "nested": {"list": [1, 2.5, None, "é"]}},
        created_at=1234.5,
    )
    storage.create(header)
    assert storage.header(run_id) == header, "the header should read back as created"
    other = RunHeader(run_id, config={"different": True})
    _raises(RunExists, lambda: storage.create(other), "a second create of a run id")
    assert issubclass(RunExists, StorageError)
    assert storage.header(run_id) == header, "a refused create must not change the header"


def _check_append_and_read(storage: JournalStorage) -> None:
    run_id, other = _new_run(storage, "append"), _new_run(storage, "append-other")
    assert storage.read(run_id) == [], "a new run has no records"
    first: list[dict[str, Any]] = [
        {"kind": "iteration", "iteration": 0, "minibatch": ("e1", "e2")},
        {"kind": "note", "text": "ünïcødé ✓ \x00 end", "value": 1.25, "flag": True, "none": None},
        {"kind": "note", "nested": {"deep": [{"x": 1}], "empty": {}}},
    ]
    seqs = storage.append(run_id, first)
    assert len(seqs) == 3, f"append of 3 records returned {seqs!r}"
    assert all(isinstance(s, int) and s > 0 for s in seqs), f"bad sequence numbers {seqs!r}"
    assert seqs == sorted(set(seqs)), f"sequence numbers must increase strictly: {seqs!r}"
    storage.append(other, [{"kind": "note", "run": "other"}])
    assert storage.append(run_id, []) == [], "appending no records returns []"
    more = storage.append(run_id, [{"kind": "note", "n": 4}])
    assert len(more) == 1 and more[0] > seqs[-1], "later appends get larger seqs"
    expected = [
        {"kind": "iteration", "iteration": 0, "minibatch": ["e1", "e2"]},
        *first[1:],
        {"kind": "note", "n": 4},
    ]
    all_seqs = [*seqs, *more]
    assert storage.read(run_id) == list(zip(all_seqs, expected, strict=True))
    assert storage.read(run_id, after=all_seqs[1]) == list(
        zip(all_seqs[2:], expected[2:], strict=True)
    ), "read(after=seq) returns the records after seq"
    assert storage.read(run_id, after=all_seqs[-1]) == []
    assert storage.read(other) == [(storage.read(other)[0][0], {"kind": "note", "run": "other"})]
    _check_copies(storage, run_id)


def _check_copies(storage: JournalStorage, run_id: str) -> None:
    record: dict[str, Any] = {"kind": "note", "list": [1, 2]}
    (seq,) = storage.append(run_id, [record])
    record["list"].append(3)
    read_back = storage.read(run_id, after=seq - 1)
    assert read_back == [(seq, {"kind": "note", "list": [1, 2]})], "append must copy the record"
    read_back[0][1]["list"].append(99)
    assert storage.read(run_id, after=seq - 1) == [(seq, {"kind": "note", "list": [1, 2]})]


def _unstorable_records() -> list[tuple[str, dict[str, Any]]]:
    circular: dict[str, Any] = {"kind": "note"}
    circular["self"] = circular
    return [
        ("a dict key that is not a string", {"kind": "note", "outputs": {("a", "b"): 1}}),
        ("a circular reference", circular),
        ("a lone surrogate", {"kind": "note", "text": "broken \ud800 text"}),
    ]


def _check_atomic_batches(storage: JournalStorage) -> None:
    run_id = _new_run(storage, "atomic")
    (kept,) = storage.append(run_id, [{"kind": "note", "n": 0}])
    for what, bad in _unstorable_records():
        batch = [{"kind": "note", "n": 1}, _evaluation(5), bad, {"kind": "note", "n": 2}]
        append = functools.partial(storage.append, run_id, batch)
        _raises(StorageError, append, f"a record with {what}")
        assert storage.read(run_id) == [(kept, {"kind": "note", "n": 0})], (
            f"a batch with {what} must write nothing"
        )
    (after,) = storage.append(run_id, [{"kind": "note", "n": 3}])
    assert after > kept, "the storage stays usable after a refused batch"


def _check_unknown_run(storage: JournalStorage) -> None:
    run_id = _run_id("unknown")
    _raises(StorageError, lambda: storage.append(run_id, [{"kind": "note"}]), "append to unknown")
    _raises(StorageError, lambda: storage.append(run_id, []), "empty append to an unknown run")
    assert storage.read(run_id) == [], "read of an unknown run returns []"
    assert storage.header(run_id) is None, "a refused append must not create the run"


def _check_reopen(make_storage: JournalFactory) -> None:
    storage = make_storage()
    run_id = _new_run(storage, "reopen")
    header = storage.header(run_id)
    seqs = storage.append(run_id, [{"kind": "note", "n": 1}, {"kind": "note", "n": 2}])
    storage.close()
    reopened = make_storage()
    try:
        assert reopened.header(run_id) == header, "the header survives reopening"
        assert [s for s, _ in reopened.read(run_id)] == seqs, "records survive reopening"
        (seq,) = reopened.append(run_id, [{"kind": "note", "n": 3}])
        assert seq > seqs[-1], "sequence numbers keep increasing after reopening"
    finally:
        reopened.close()


def _check_concurrent_appends(make_storage: JournalFactory, threads: int = 4) -> None:
    shared = make_storage()
    storages = [shared if i % 2 == 0 else make_storage() for i in range(threads)]
    run_id = _new_run(shared, "threads")

    def work(index: int) -> None:
        for batch in range(25):
            storages[index].append(
                run_id, [{"kind": "note", "t": index, "b": batch, "part": p} for p in range(2)]
            )

    _in_threads(work, threads)
    records = [record for _, record in shared.read(run_id)]
    for storage in {id(s): s for s in storages}.values():
        storage.close()
    assert len(records) == threads * 25 * 2, f"{len(records)} of {threads * 50} records landed"
    for first, second in itertools.pairwise(records):
        if first["part"] == 0:
            assert (second["t"], second["b"], second["part"]) == (first["t"], first["b"], 1), (
                "the records of one batch must be contiguous in the run's log"
            )
    for index in range(threads):
        batches = [r["b"] for r in records if r["t"] == index and r["part"] == 0]
        assert batches == list(range(25)), "one thread's batches keep their order"


def _in_threads(work: Callable[[int], None], count: int) -> None:
    """Run ``work(i)`` in ``count`` threads started together; re-raise the first error."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def target(index: int) -> None:
        try:
            barrier.wait()
            work(index)
        except BaseException as error:
            errors.append(error)

    pool = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    assert not any(thread.is_alive() for thread in pool), "a worker thread hung"


# --- the shared-run contract ----------------------------------------------------------


def check_shared_run_contract(
    make_storage: SharedFactory,
    *,
    clocked: ClockedFactory | None = None,
    spawnable: SharedFactory | None = None,
    workers: int = 4,
    attempts: int = 50,
) -> None:
    """Check a :class:`~gepetto.storage.base.SharedRunStorage` backend.

    Args:
        make_storage: the factory (see the module docstring).
        clocked: ``clock -> storage``, a storage on any data whose lease expiry reads the
            given clock; the expiry checks then use a :class:`FakeClock`. Without it they
            use the real clock, with short leases and sleeps.
        spawnable: a picklable factory (e.g. ``functools.partial(SQLiteStorage, path)``):
            also run the concurrency check in ``workers`` processes started with 'spawn'
            (:func:`check_shared_run_across_processes`).
        workers: threads (and processes) of the concurrency checks.
        attempts: reservations each of them tries.

    The contract (on top of the journal contract):

    - ``admit_candidate`` gives new content hashes the ids ``0, 1, 2, ...`` (stored as the
      record's ``"id"``, whatever the given record had; the given dict is not changed) and
      returns ``(id, seq)``; for a hash already in the run (admitted, or appended as a
      candidate record) it writes nothing and returns ``(existing id, None)``; ids continue
      after appended candidate records; a record that is not a candidate with a string
      ``content_hash`` raises :class:`StorageError`;
    - ``allocate_iteration`` returns ``0, 1, 2, ...``, continuing after the largest
      ``iteration`` of the run's ``"iteration"`` records;
    - ``reserve`` grants a lease (a new id, never reused) iff ``used + leased + calls <=
      limit``; ``release`` returns its calls (an unknown or released id is ignored);
      evaluation records appended count in ``used``; ``calls < 0`` or ``ttl <= 0`` raise
      :class:`StorageError`;
    - a lease stops counting ``ttl`` seconds after its creation or its worker's last
      ``heartbeat``; a heartbeat extends only that worker's unexpired leases (an expired
      lease is not revived);
    - ``metric_calls_used`` is the sum of ``metric_calls`` of the ``"evaluation"`` records;
    - every operation on an unknown run raises :class:`StorageError`;
    - counters, candidate ids and leases survive reopening;
    - under concurrent use (threads; processes with ``spawnable``) the budget is never
      over-committed, a reservation is refused only when it did not fit, and ids and
      iteration numbers are never handed out twice.
    """
    _need_assertions()
    _with_storage(make_storage, _check_admit_candidate)
    _with_storage(make_storage, _check_allocate_iteration)
    _with_storage(make_storage, _check_reserve_and_release)
    _with_storage(make_storage, _check_reserve_with_evaluations)
    _with_storage(make_storage, _check_metric_calls_used)
    _with_storage(make_storage, _check_unknown_run_shared)
    if clocked is not None:
        _check_expiry_fake_clock(clocked)
    else:
        _with_storage(make_storage, _check_expiry_real_clock)
    _check_reopen_shared(make_storage)
    _check_shared_threads(make_storage, workers, attempts)
    if spawnable is not None:
        check_shared_run_across_processes(spawnable, workers=workers, attempts=attempts)


def _check_admit_candidate(storage: SharedRunStorage) -> None:
    run_id = _new_run(storage, "admit")
    given = _candidate("h0", id=99, parents=[])
    first = storage.admit_candidate(run_id, given)
    assert given == _candidate("h0", id=99, parents=[]), "admit must not change the given dict"
    assert first[0] == 0 and isinstance(first[1], int), f"first admission gave {first!r}"
    assert storage.read(run_id) == [(first[1], {**given, "id": 0})], "the record, with its id"
    second = storage.admit_candidate(run_id, _candidate("h1"))
    assert second[0] == 1 and second[1] is not None and second[1] > first[1]
    assert storage.admit_candidate(run_id, _candidate("h0", texts={"a": "other"})) == (0, None)
    assert len(storage.read(run_id)) == 2, "a known content hash writes nothing"
    ids = [storage.admit_candidate(run_id, _candidate(f"h{i}"))[0] for i in range(2, 8)]
    assert ids == list(range(2, 8)), f"ids must be 0, 1, 2, ...; got {ids}"
    storage.append(run_id, [_candidate("appended", id=8, parents=[0])])
    assert storage.admit_candidate(run_id, _candidate("appended")) == (8, None)
    assert storage.admit_candidate(run_id, _candidate("h9"))[0] == 9, "ids continue after appends"
    for bad in ({"kind": "evaluation", "content_hash": "x"}, {"kind": "candidate"}):
        admit = functools.partial(storage.admit_candidate, run_id, bad)
        _raises(StorageError, admit, f"admit {bad}")
    assert len(storage.read(run_id)) == 10


def _check_allocate_iteration(storage: SharedRunStorage) -> None:
    fresh = _new_run(storage, "iterations")
    assert [storage.allocate_iteration(fresh) for _ in range(3)] == [0, 1, 2]
    storage.append(fresh, [{"kind": "iteration", "iteration": 1, "parent_id": 0}])
    assert storage.allocate_iteration(fresh) == 3, "an old iteration record changes nothing"
    resumed = _new_run(storage, "iterations-resumed")
    storage.append(
        resumed,
        [{"kind": "iteration", "iteration": i, "parent_id": 0} for i in (0, 1, 2, 7, 4)]
        + [{"kind": "decision", "iteration": 50}],
    )
    assert storage.allocate_iteration(resumed) == 8, "continue after the largest iteration"
    storage.append(resumed, [{"kind": "iteration", "iteration": 8, "parent_id": 0}])
    assert storage.allocate_iteration(resumed) == 9
    storage.append(resumed, [{"kind": "iteration", "iteration": 20, "parent_id": 0}])
    assert storage.allocate_iteration(resumed) == 21


def _check_reserve_and_release(storage: SharedRunStorage) -> None:
    run_id, other = _new_run(storage, "reserve"), _new_run(storage, "reserve-other")
    first = storage.reserve(run_id, "w1", 4, 10, 3600)
    second = storage.reserve(run_id, "w2", 4, 10, 3600)
    assert first is not None and second is not None and first != second
    assert storage.reserve(run_id, "w1", 3, 10, 3600) is None, "4 + 4 + 3 > 10 is refused"
    third = storage.reserve(run_id, "w1", 2, 10, 3600)
    assert third is not None, "4 + 4 + 2 == 10 fits"
    assert storage.reserve(run_id, "w3", 1, 10, 3600) is None
    assert storage.reserve(run_id, "w3", 0, 10, 3600) is not None, "0 calls always fit"
    assert storage.reserve(other, "w1", 10, 10, 3600) is not None, "runs have their own budget"
    storage.release(run_id, second)
    fourth = storage.reserve(run_id, "w3", 4, 10, 3600)
    assert fourth is not None, "a released lease returns its calls"
    storage.release(run_id, second)  # again: ignored
    storage.release(run_id, 10**12)  # unknown: ignored
    assert storage.reserve(run_id, "w3", 1, 10, 3600) is None, "a second release returns nothing"
    ids = {first, second, third, fourth}
    storage.release(run_id, fourth)
    again = storage.reserve(run_id, "w3", 1, 10, 3600)
    assert again is not None and again not in ids, "lease ids are never reused"
    assert storage.metric_calls_used(run_id) == 0, "leases are not used calls"
    _raises(StorageError, lambda: storage.reserve(run_id, "w", -1, 10, 60), "negative calls")
    _raises(StorageError, lambda: storage.reserve(run_id, "w", 1, 10, 0), "ttl 0")
    _raises(StorageError, lambda: storage.heartbeat(run_id, "w", -1), "heartbeat with ttl < 0")


def _check_reserve_with_evaluations(storage: SharedRunStorage) -> None:
    run_id = _new_run(storage, "reserve-used")
    storage.append(run_id, [_evaluation(12)])
    assert storage.reserve(run_id, "w", 9, 20, 3600) is None, "12 used + 9 > 20"
    lease = storage.reserve(run_id, "w", 8, 20, 3600)
    assert lease is not None
    storage.append(run_id, [_evaluation(8)])  # the evaluation is recorded, then released
    assert storage.reserve(run_id, "w", 0, 20, 3600) is None, "20 used + 8 leased > 20"
    storage.release(run_id, lease)
    assert storage.metric_calls_used(run_id) == 20
    assert storage.reserve(run_id, "w", 1, 20, 3600) is None, "the budget is spent"
    assert storage.reserve(run_id, "w", 0, 20, 3600) is not None
    assert storage.reserve(run_id, "w", 0, 15, 3600) is None, "a smaller limit than used"
    assert storage.reserve(run_id, "w", 5, 25, 3600) is not None, "a larger limit"


def _check_metric_calls_used(storage: SharedRunStorage) -> None:
    run_id = _new_run(storage, "used")
    assert storage.metric_calls_used(run_id) == 0
    storage.append(
        run_id,
        [
            _evaluation(3),
            _candidate("c", id=0),
            {"kind": "iteration", "iteration": 0, "metric_calls": 50},
            {"kind": "lm_call", "metric_calls": 100},
            _evaluation(0),
        ],
    )
    storage.append(run_id, [_evaluation(4)])
    assert storage.metric_calls_used(run_id) == 7, "only evaluation records count"
    storage.admit_candidate(run_id, _candidate("d"))
    storage.allocate_iteration(run_id)
    assert storage.metric_calls_used(run_id) == 7
    bad: dict[Any, Any] = {1j: 0}
    _raises(StorageError, lambda: storage.append(run_id, [_evaluation(5), bad]), "bad batch")
    assert storage.metric_calls_used(run_id) == 7, "a refused batch counts nothing"


def _check_unknown_run_shared(storage: SharedRunStorage) -> None:
    run_id = _run_id("unknown-shared")
    calls: list[tuple[str, Callable[[], object]]] = [
        ("admit_candidate", lambda: storage.admit_candidate(run_id, _candidate("x"))),
        ("allocate_iteration", lambda: storage.allocate_iteration(run_id)),
        ("reserve", lambda: storage.reserve(run_id, "w", 1, 10, 60)),
        ("release", lambda: storage.release(run_id, 1)),
        ("heartbeat", lambda: storage.heartbeat(run_id, "w", 60)),
        ("metric_calls_used", lambda: storage.metric_calls_used(run_id)),
    ]
    for name, call in calls:
        _raises(StorageError, call, f"{name} on an unknown run")
    assert storage.header(run_id) is None, "nothing may create the run"


def _check_expiry_fake_clock(clocked: ClockedFactory) -> None:
    clock = FakeClock()
    storage = clocked(clock)
    try:
        run_id = _new_run(storage, "expiry")
        lease = storage.reserve(run_id, "w1", 6, 10, 30)
        assert lease is not None
        clock.advance(29.9)
        assert storage.reserve(run_id, "w2", 5, 10, 30) is None, "a lease counts until its ttl"
        clock.advance(0.2)
        assert storage.reserve(run_id, "w2", 5, 10, 30) is not None, "an expired lease is free"
        storage.release(run_id, lease)  # expired: ignored
        storage.append(run_id, [_evaluation(4)])
        clock.advance(10_000)
        assert storage.reserve(run_id, "w3", 7, 10, 30) is None, "used calls never expire"
        assert storage.reserve(run_id, "w3", 6, 10, 30) is not None
        _check_heartbeat_fake_clock(storage, clock)
    finally:
        storage.close()


def _check_heartbeat_fake_clock(storage: SharedRunStorage, clock: FakeClock) -> None:
    run_id = _new_run(storage, "heartbeat")
    assert storage.reserve(run_id, "w1", 5, 10, 30) is not None  # expires at +30
    assert storage.reserve(run_id, "w2", 5, 10, 30) is not None  # expires at +30
    clock.advance(20)
    storage.heartbeat(run_id, "w1", 30)  # w1's lease now expires at +50, w2's still at +30
    clock.advance(15)  # +35
    assert storage.reserve(run_id, "w3", 6, 10, 30) is None, "the heartbeat kept w1's lease"
    assert storage.reserve(run_id, "w3", 5, 10, 30) is not None, "w2's lease expired"  # +65
    clock.advance(20)  # +55: w1's lease expired at +50
    storage.heartbeat(run_id, "w1", 1000)
    assert storage.reserve(run_id, "w4", 5, 10, 30) is not None, "a heartbeat must not revive"
    assert storage.reserve(run_id, "w4", 1, 10, 30) is None


def _check_expiry_real_clock(storage: SharedRunStorage) -> None:
    run_id = _new_run(storage, "expiry-real")
    assert storage.reserve(run_id, "w1", 6, 10, 1.0) is not None
    assert storage.reserve(run_id, "w2", 5, 10, 1.0) is None, "a lease counts until its ttl"
    time.sleep(1.2)
    assert storage.reserve(run_id, "w2", 5, 10, 1.0) is not None, "an expired lease is free"
    storage.heartbeat(run_id, "w2", 3600)
    time.sleep(1.2)
    assert storage.reserve(run_id, "w3", 6, 10, 1.0) is None, "the heartbeat kept the lease"


def _check_reopen_shared(make_storage: SharedFactory) -> None:
    storage = make_storage()
    run_id = _new_run(storage, "reopen-shared")
    storage.admit_candidate(run_id, _candidate("h0"))
    storage.admit_candidate(run_id, _candidate("h1"))
    for _ in range(3):
        storage.allocate_iteration(run_id)
    storage.append(run_id, [_evaluation(5)])
    lease = storage.reserve(run_id, "w", 3, 10, 3600)
    assert lease is not None
    storage.close()
    reopened = make_storage()
    try:
        assert reopened.metric_calls_used(run_id) == 5, "used calls survive reopening"
        assert reopened.admit_candidate(run_id, _candidate("h0")) == (0, None)
        assert reopened.admit_candidate(run_id, _candidate("h2"))[0] == 2
        assert reopened.allocate_iteration(run_id) == 3, "iteration numbers survive reopening"
        assert reopened.reserve(run_id, "w", 3, 10, 3600) is None, "leases survive reopening"
        assert reopened.reserve(run_id, "w", 2, 10, 3600) is not None
        reopened.release(run_id, lease)
        assert reopened.reserve(run_id, "w", 3, 10, 3600) is not None
    finally:
        reopened.close()


# --- concurrency ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """The runs and sizes of one concurrency check (sent to worker processes)."""

    budget_run: str  # reservations only, against `limit`
    ample_run: str  # reservations only, against a limit that covers them all
    flow_run: str  # reserve, append the evaluation, release, against `flow_limit`
    ids_run: str  # admit_candidate and allocate_iteration
    attempts: int
    seed: int
    limit: int = 500
    flow_limit: int = 300
    hashes: int = 20


@dataclass
class _Outcome:
    """What one worker was granted."""

    granted: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    ample: list[int] = field(default_factory=list)
    ample_refused: list[int] = field(default_factory=list)
    flow: list[int] = field(default_factory=list)
    iterations: list[int] = field(default_factory=list)
    admitted: dict[str, int] = field(default_factory=dict)


def _make_plan(storage: SharedRunStorage, attempts: int) -> _Plan:
    return _Plan(
        budget_run=_new_run(storage, "budget"),
        ample_run=_new_run(storage, "ample"),
        flow_run=_new_run(storage, "flow"),
        ids_run=_new_run(storage, "ids"),
        attempts=attempts,
        seed=random.randrange(1_000_000),
    )


def _work(storage: SharedRunStorage, plan: _Plan, index: int) -> _Outcome:
    """One worker's share of a concurrency check."""
    rng = random.Random(plan.seed * 1000 + index)
    name = f"worker-{index}"
    hashes = [f"c{i}" for i in range(plan.hashes)]
    rng.shuffle(hashes)
    out = _Outcome()
    for attempt in range(plan.attempts):
        calls = rng.randint(1, 10)
        granted = storage.reserve(plan.budget_run, name, calls, plan.limit, 3600) is not None
        (out.granted if granted else out.refused).append(calls)
        calls = rng.randint(1, 10)
        granted = storage.reserve(plan.ample_run, name, calls, 10**9, 3600) is not None
        (out.ample if granted else out.ample_refused).append(calls)
        calls = rng.randint(1, 10)
        lease = storage.reserve(plan.flow_run, name, calls, plan.flow_limit, 3600)
        if lease is not None:
            storage.append(plan.flow_run, [_evaluation(calls)])
            storage.release(plan.flow_run, lease)
            out.flow.append(calls)
        content_hash = hashes[attempt % plan.hashes]
        out.admitted[content_hash] = storage.admit_candidate(
            plan.ids_run, _candidate(content_hash)
        )[0]
        out.iterations.append(storage.allocate_iteration(plan.ids_run))
    return out


def _verify(storage: SharedRunStorage, plan: _Plan, outcomes: Sequence[_Outcome]) -> None:
    """Check what concurrent workers were granted against the contract."""
    granted = sum(sum(o.granted) for o in outcomes)
    assert granted <= plan.limit, f"reservations over-committed: {granted} > {plan.limit}"
    refused = [c for o in outcomes for c in o.refused]
    assert all(granted + c > plan.limit for c in refused), (
        f"a reservation was refused though it fit ({granted} granted of {plan.limit})"
    )
    _check_all_leased(storage, plan.budget_run, granted, plan.limit)
    assert not any(o.ample_refused for o in outcomes), "a reservation that fit was refused"
    ample = sum(sum(o.ample) for o in outcomes)
    _check_all_leased(storage, plan.ample_run, ample, 10**9)
    used = storage.metric_calls_used(plan.flow_run)
    flow = sum(sum(o.flow) for o in outcomes)
    assert used == flow, f"flow run: {used} calls used but {flow} granted"
    assert used <= plan.flow_limit, f"flow run over-committed: {used} > {plan.flow_limit}"
    logged = sum(r["metric_calls"] for _, r in storage.read(plan.flow_run))
    assert logged == used, "metric_calls_used must equal the evaluation records' sum"
    _verify_ids(storage, plan, outcomes)


def _check_all_leased(storage: SharedRunStorage, run_id: str, leased: int, limit: int) -> None:
    """The storage's own account agrees: exactly ``limit - leased`` calls are left."""
    rest = storage.reserve(run_id, "verify", limit - leased, limit, 3600)
    assert rest is not None, f"{limit - leased} calls should be left of {limit} ({run_id})"
    assert storage.reserve(run_id, "verify", 1, limit, 3600) is None, f"over-commit ({run_id})"


def _verify_ids(storage: SharedRunStorage, plan: _Plan, outcomes: Sequence[_Outcome]) -> None:
    iterations = sorted(i for o in outcomes for i in o.iterations)
    assert iterations == list(range(len(iterations))), "iteration numbers were handed out twice"
    ids: dict[str, int] = {}
    for outcome in outcomes:
        for content_hash, number in outcome.admitted.items():
            assert ids.setdefault(content_hash, number) == number, f"two ids for {content_hash}"
    assert sorted(ids.values()) == list(range(plan.hashes)), f"candidate ids {sorted(ids.values())}"
    logged = {r["content_hash"]: r["id"] for _, r in storage.read(plan.ids_run)}
    assert len(storage.read(plan.ids_run)) == plan.hashes, "a candidate was written twice"
    assert logged == ids, "the candidate records carry the ids admit_candidate returned"


def _check_shared_threads(make_storage: SharedFactory, workers: int, attempts: int) -> None:
    shared = make_storage()
    storages = [shared if i % 2 == 0 else make_storage() for i in range(workers)]
    outcomes: list[_Outcome] = [_Outcome() for _ in range(workers)]
    try:
        plan = _make_plan(shared, attempts)

        def work(index: int) -> None:
            outcomes[index] = _work(storages[index], plan, index)

        _in_threads(work, workers)
        _verify(shared, plan, outcomes)
    finally:
        for storage in {id(s): s for s in storages}.values():
            storage.close()


def check_shared_run_across_processes(
    spawnable: SharedFactory, *, workers: int = 4, attempts: int = 50, timeout: float = 240
) -> None:
    """The concurrency check of :func:`check_shared_run_contract` in real processes.

    ``workers`` processes started with 'spawn' each build a storage with ``spawnable`` (a
    picklable factory) and, all at once, try ``attempts`` reservations of 1 to 10 calls on
    each of three runs: against a limit of 500 (far less than asked: the sum granted must be
    ``<= 500`` and every refused size must not have fit), against a limit that covers all
    (everything granted, like one process alone), and with each reservation followed by its
    evaluation record and ``release`` (``metric_calls_used`` equals the sum granted, within
    its limit); they also admit the same 20 candidate hashes (one id each, ids ``0..19``) and
    allocate iteration numbers (each once).
    """
    _need_assertions()
    context = multiprocessing.get_context("spawn")
    storage = spawnable()
    processes: list[Any] = []
    try:
        plan = _make_plan(storage, attempts)
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [
            context.Process(target=_process_main, args=(spawnable, plan, i, barrier, results))
            for i in range(workers)
        ]
        for process in processes:
            process.start()
        outcomes = _collect(processes, results, time.monotonic() + timeout)
        _verify(storage, plan, outcomes)
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
        storage.close()


def _process_main(
    spawnable: SharedFactory, plan: _Plan, index: int, barrier: Any, results: Any
) -> None:
    """A worker process: build a storage, wait for the others, work, report."""
    try:
        storage = spawnable()
        try:
            barrier.wait(timeout=120)
            results.put((index, _work(storage, plan, index), None))
        finally:
            storage.close()
    except BaseException:
        barrier.abort()
        results.put((index, None, traceback.format_exc()))


def _collect(processes: Sequence[Any], results: Any, deadline: float) -> list[_Outcome]:
    import queue

    outcomes: dict[int, _Outcome] = {}
    while len(outcomes) < len(processes):
        try:
            index, outcome, error = results.get(timeout=1.0)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not dead, f"a worker process died (exit codes {dead})"
            assert time.monotonic() < deadline, "the worker processes did not finish in time"
            continue
        assert error is None, f"worker process {index} failed:\n{error}"
        outcomes[index] = outcome
    return [outcomes[i] for i in sorted(outcomes)]

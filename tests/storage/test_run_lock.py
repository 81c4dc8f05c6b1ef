"""One run, one process: a second process (or a second optimize() of this process) on the
same run is refused before it pays for anything, until the first ends or dies.

Real processes on a real SQLite run folder: a *holder* process runs ``optimize`` and stops
inside its first adapter call until the test lets it go (``HOLDER`` below), so the test
knows the run is in progress while it starts others.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import Optimizer
from gepetto.errors import ConfigError
from gepetto.records import record_from_dict
from gepetto.state import RunState
from gepetto.storage import SQLiteStorage, StorageError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

BUDGET = 40
WORDS = [f"w{i}" for i in range(6)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}
TASK = "keyword task"

HOLDER = r"""
import pathlib, sys, time
import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

run_dir, go, calls, budget = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4]
worker = sys.argv[5] if len(sys.argv) > 5 else None

class Holding(KeywordAdapter):
    def fingerprint(self):
        return "keyword task"

    def evaluate(self, batch, candidate, capture_traces=False):
        with open(calls, "a") as file:
            file.write(f"{len(batch)}\n")
        if not go.exists():
            print("READY", flush=True)
            while not go.exists():
                time.sleep(0.01)
        return super().evaluate(batch, candidate, capture_traces)

words = [f"w{i}" for i in range(6)]
result = gepetto.optimize(
    {"instructions": "Answer."}, keyword_dataset(words, copies=2), keyword_dataset(words),
    adapter=Holding(), reflection_lm=FeedbackFollowingLM(), max_metric_calls=int(budget),
    run_dir=run_dir, display_progress_bar=False, worker=worker,
)
print("RESULT", result.total_metric_calls, flush=True)
"""


class Counting(KeywordAdapter):
    """Counts the metric calls it is paid for (examples evaluated)."""

    def __init__(self) -> None:
        super().__init__()
        self.paid = 0

    def fingerprint(self) -> str:
        return TASK  # the holder's adapter: the same task

    def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
        self.paid += len(batch)
        return super().evaluate(batch, candidate, capture_traces)


class Holder:
    """A process running the workload on ``run_dir``, held inside its first adapter call."""

    def __init__(self, tmp_path: Path, run_dir: Path, name: str, worker: str = "") -> None:
        script = tmp_path / "holder.py"
        script.write_text(HOLDER)
        self.go = tmp_path / f"{name}.go"
        self.calls = tmp_path / f"{name}.calls"
        arguments = [str(run_dir), str(self.go), str(self.calls), str(BUDGET)]
        self.process = subprocess.Popen(
            [sys.executable, str(script), *arguments, *([worker] if worker else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until_held(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("READY"):  # (concurrent calls may each say it)
            self.process.kill()
            _, err = self.process.communicate(timeout=30)
            pytest.fail(f"the holder did not start its run: {line!r}\n{err}")

    def finish(self) -> tuple[int, str, str]:
        self.go.touch()
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, err

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)

    def executed(self) -> int:
        text = self.calls.read_text() if self.calls.exists() else ""
        return sum(int(line) for line in text.split())


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        if holder.process.poll() is None:
            holder.kill()


def run(run_dir: Path, adapter: KeywordAdapter, lm: Any = None, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=adapter,
        reflection_lm=lm or FeedbackFollowingLM(),
        max_metric_calls=BUDGET,
        run_dir=run_dir,
        display_progress_bar=False,
        **options,
    )


def journaled_calls(run_dir: Path) -> int:
    storage = SQLiteStorage(run_dir / "journal.sqlite")
    try:
        records = [record_from_dict(body) for _, body in storage.read("default")]
    finally:
        storage.close()
    state = RunState(len(VAL))
    for record in records:  # the journal replays: candidate ids in order, nothing repeated
        state.append(record)
    return state.total_metric_calls


def test_a_second_process_on_the_run_is_refused_and_the_budget_kept(
    tmp_path: Path, holders: list[Holder]
) -> None:
    run_dir = tmp_path / "run"
    first = Holder(tmp_path, run_dir, "first")
    holders.append(first)
    first.wait_until_held()

    second = Holder(tmp_path, run_dir, "second")  # a real second process, same run_dir
    holders.append(second)
    code, out, err = second.finish()
    assert code != 0 and "RESULT" not in out
    assert "RunInUse" in err and f"in use by process {first.process.pid}" in err, err
    assert second.executed() == 0, "the refused process paid for an evaluation"

    code, out, err = first.finish()
    assert code == 0, err
    assert first.executed() <= BUDGET
    assert journaled_calls(run_dir) <= BUDGET

    third = run(run_dir, adapter := Counting())  # the finished run resumes at once
    assert adapter.evaluate_calls == 0
    assert third.total_metric_calls == journaled_calls(run_dir) <= BUDGET


def test_a_killed_process_frees_the_run_for_a_resume(tmp_path: Path, holders: list[Holder]) -> None:
    run_dir = tmp_path / "run"
    holder = Holder(tmp_path, run_dir, "holder")
    holders.append(holder)
    holder.wait_until_held()
    adapter, lm = Counting(), FeedbackFollowingLM()
    with pytest.raises(StorageError, match=f"in use by process {holder.process.pid}"):
        run(run_dir, adapter, lm)
    assert adapter.evaluate_calls == 0 and lm.calls == 0

    holder.kill()  # SIGKILL: the kernel frees the lock with the process
    result = run(run_dir, adapter, lm)
    assert result.total_metric_calls <= BUDGET
    assert journaled_calls(run_dir) == result.total_metric_calls


def test_a_second_open_in_the_same_process_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    storage = SQLiteStorage(run_dir / "journal.sqlite")
    holder = Optimizer(
        SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=storage, adapter_fingerprint=TASK
    )
    adapter = Counting()
    with pytest.raises(StorageError, match="another optimize\\(\\) of this process"):
        run(run_dir, adapter)
    other = SQLiteStorage(run_dir / "journal.sqlite")  # a second storage object: refused too
    with pytest.raises(StorageError, match="in use"):
        Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=other)
    assert adapter.evaluate_calls == 0
    # The same storage object may open the run again (a notebook cell run once more).
    again = Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=storage)
    holder.release()
    again.release()
    assert run(run_dir, adapter).total_metric_calls <= BUDGET
    other.close()
    storage.close()


def test_two_runs_at_once_in_threads_pay_one_budget(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    outcomes: list[object] = []
    adapters = [Counting(), Counting()]
    barrier = threading.Barrier(2)

    def attempt(adapter: Counting) -> None:
        barrier.wait()
        try:
            outcomes.append(run(run_dir, adapter, handle_signals=False).total_metric_calls)
        except StorageError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=attempt, args=(a,)) for a in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One of them ran the run (the other was refused, or came after it and resumed it).
    assert any(isinstance(outcome, int) for outcome in outcomes), outcomes
    assert sum(a.paid for a in adapters) == journaled_calls(run_dir) <= BUDGET


def test_workers_share_the_run_but_never_with_a_lone_process(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    stores = [SQLiteStorage(path) for _ in range(3)]

    def optimizer(storage: SQLiteStorage, worker: str | None) -> Optimizer:
        return Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=storage, worker=worker)

    first, second = optimizer(stores[0], "a"), optimizer(stores[1], "b")
    with pytest.raises(StorageError, match="being run by worker processes"):
        optimizer(stores[2], None)
    first.release()
    second.release()
    lone = optimizer(stores[2], None)
    with pytest.raises(StorageError, match="without worker="):
        optimizer(stores[0], "a")
    with pytest.raises(StorageError, match="already being run in this process without worker"):
        optimizer(stores[2], "c")
    lone.release()
    optimizer(stores[0], "a").release()
    for storage in stores:
        storage.close()


def test_worker_processes_still_share_one_run_dir(tmp_path: Path, holders: list[Holder]) -> None:
    run_dir = tmp_path / "run"
    first = Holder(tmp_path, run_dir, "first", worker="w1")
    holders.append(first)
    first.wait_until_held()  # w1 validates the seed and waits there
    second = Holder(tmp_path, run_dir, "second", worker="w2")
    holders.append(second)
    adapter = Counting()
    with pytest.raises(StorageError, match="being run by worker processes"):
        run(run_dir, adapter)  # a lone process cannot join them
    second.go.touch()
    results = [first.finish(), second.finish()]
    for code, out, err in results:
        assert code == 0 and "RESULT" in out, err
    assert adapter.paid == 0
    assert journaled_calls(run_dir) <= BUDGET
    assert first.executed() + second.executed() <= BUDGET


def test_the_run_is_freed_when_optimize_fails_after_opening_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    adapter = Counting()
    with pytest.raises(ConfigError, match="curr_param"):
        run(run_dir, adapter, reflection_prompt_template="no placeholders")
    assert run(run_dir, adapter).total_metric_calls <= BUDGET  # same process, right after


def test_a_finished_run_frees_its_lock_while_its_storage_stays_open(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    opt = Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=storage)
    opt.abort("stopped by the test")
    other = SQLiteStorage(tmp_path / "journal.sqlite")
    resumed = Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=other)
    assert resumed.run_id == "default"
    resumed.release()
    other.close()
    storage.close()

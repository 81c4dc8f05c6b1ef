"""executor=: a sync adapter's evaluations on a thread pool, a process pool and a real Dask
cluster on 127.0.0.1 give the result of a run without one (K=1, deterministic evaluations),
with the adapter loaded once per worker process; a Dask worker killed mid-evaluation costs
no metric call twice; what cannot be shipped is refused before any LM call."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.executors import ExecutorBroken, RemoteEvaluations
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
SEED = {"instructions": "Answer."}


def dataset(split: str) -> list[dict[str, Any]]:
    return [{"id": f"{split}{i}", "needs": word} for i, word in enumerate(WORDS)]


class LoggedAdapter(KeywordAdapter):
    """KeywordAdapter that sleeps ``delay`` per example and appends, to ``log``, a line when
    it is loaded in a process and when it starts and finishes each example (with the pid)."""

    def __init__(self, log: str, delay: float) -> None:
        super().__init__()
        self.log = log
        self.delay = delay

    def _write(self, line: str) -> None:
        with open(self.log, "a") as out:
            out.write(f"{line} {os.getpid()} {threading.current_thread().name}\n")

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._write("load - -")

    def evaluate(  # type: ignore[override]
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        text = candidate["instructions"].replace(" ", "_")
        for example in batch:
            self._write(f"start {text} {example['id']}")
            time.sleep(self.delay)
            self._write(f"done {text} {example['id']}")
        return self._run(batch, candidate, capture_traces)


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def run(adapter: Any, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        trainset=dataset("train"),
        valset=dataset("val"),
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(words_per_call=1),
        max_metric_calls=60,
        reflection_minibatch_size=3,
        max_concurrency=2,
        seed=3,
        display_progress_bar=False,
        **options,
    )


def same_run(result: gepetto.Result, reference: gepetto.Result) -> None:
    assert result.candidates == reference.candidates
    assert result.val_aggregate_scores == reference.val_aggregate_scores
    assert result.parents == reference.parents
    assert result.total_metric_calls == reference.total_metric_calls <= 60
    assert result.best_score == reference.best_score


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> gepetto.Result:
    log = tmp_path_factory.mktemp("reference") / "log"
    result = run(LoggedAdapter(str(log), 0.0))
    assert result.best_score is not None and result.best_score > result.seed_score  # it learns
    return result


def test_thread_pool_runs_the_evaluations_in_its_threads(
    tmp_path: Path, reference: gepetto.Result
) -> None:
    log = tmp_path / "log"
    with ThreadPoolExecutor(2, thread_name_prefix="user-pool") as pool:
        result = run(LoggedAdapter(str(log), 0.0), executor=pool)
    same_run(result, reference)
    threads = {line[4] for line in lines(log) if line[0] == "start"}
    assert threads and all(name.startswith("user-pool") for name in threads)
    assert not any(line[0] == "load" for line in lines(log))  # nothing copied


@pytest.mark.slow
def test_process_pool_loads_the_adapter_once_per_worker(
    tmp_path: Path, reference: gepetto.Result
) -> None:
    log = tmp_path / "log"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        result = run(LoggedAdapter(str(log), 0.0), executor=pool)
    same_run(result, reference)
    records = lines(log)
    loads = Counter(line[3] for line in records if line[0] == "load")
    workers = {line[3] for line in records if line[0] == "start"}
    assert os.getpid() not in {int(pid) for pid in workers}  # evaluated in the workers
    assert set(loads) == workers and set(loads.values()) == {1}  # loaded once per worker
    # Every example was evaluated once: nothing paid twice.
    started = Counter((line[1], line[2]) for line in records if line[0] == "start")
    assert sum(started.values()) == result.total_metric_calls
    assert set(started.values()) == {1}


@pytest.mark.slow
def test_a_dead_process_pool_stops_the_run_with_what_to_do(tmp_path: Path) -> None:
    class Killer(threading.Thread):
        def run(self) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                started = [line for line in lines(tmp_path / "log") if line[0] == "start"]
                if len(started) >= 5:
                    os.kill(int(started[-1][3]), signal.SIGKILL)
                    return
                time.sleep(0.02)

    killer = Killer()
    killer.start()
    with (
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool,
        pytest.raises(ExecutorBroken, match="resume it with the same run_dir"),
    ):
        run(LoggedAdapter(str(tmp_path / "log"), 0.2), executor=pool)
    killer.join()


def test_examples_travel_by_reference(tmp_path: Path) -> None:
    train, val = dataset("train"), dataset("val")
    adapter = LoggedAdapter(str(tmp_path / "log"), 0.0)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = RemoteEvaluations(pool, adapter, {"train": train, "val": val})
        sent = remote._by_reference("evaluate", (val[1:3], SEED, False))
        assert sent[0].split == "val" and sent[0].indices == (1, 2)
        outside = [{"id": "test0", "needs": "alpha"}]
        assert remote._by_reference("evaluate", (outside, SEED, False))[0] == outside

        async def one_after_the_other() -> list[Any]:
            return [
                await remote.call("evaluate", val[:2], {"instructions": "alpha"}, False),
                await remote.call("evaluate", outside, {"instructions": "alpha"}, False),
            ]

        first, second = asyncio.run(one_after_the_other())
        assert first.scores == [1.0, 0.0] and second.scores == [1.0]
        assert (remote.payload_sends, remote.reloads) == (1, 0)  # one worker, loaded once
    # A worker that lacks the payload (one the pool started anew) asks for it.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        remote = RemoteEvaluations(pool, adapter, {"train": train, "val": val})
        remote._loaded_in.add(-1)  # as if the pool's one worker had loaded it
        result = asyncio.run(remote.call("evaluate", val[:1], {"instructions": "alpha"}, False))
        assert result.scores == [1.0] and (remote.payload_sends, remote.reloads) == (1, 1)


class Unpicklable(KeywordAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()  # an open resource: cannot go to another process


class AsyncAdapter(KeywordAdapter):
    async def evaluate(  # type: ignore[override]
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> Any:
        return self._run(batch, candidate, capture_traces)


def test_what_cannot_be_shipped_is_refused_before_any_lm_call(tmp_path: Path) -> None:
    lm = ScriptedLM(["```\nnever\n```"])
    with ProcessPoolExecutor(1) as pool:
        with pytest.raises(ConfigError, match=r"Unpicklable .*cannot be pickled.*module level"):
            gepetto.optimize(
                SEED, dataset("train"), adapter=Unpicklable(), reflection_lm=lm, executor=pool,
                run_dir=tmp_path / "run", max_metric_calls=10,
            )  # fmt: skip
        with pytest.raises(ConfigError, match="evaluate is async"):
            gepetto.optimize(
                SEED, dataset("train"), adapter=AsyncAdapter(), reflection_lm=lm, executor=pool,
                max_metric_calls=10,
            )  # fmt: skip
    assert lm.prompts == []
    assert not (tmp_path / "run").exists()  # refused before the run was opened
    with pytest.raises(ConfigError, match=r"executor must be a concurrent\.futures\.Executor"):
        gepetto.optimize(
            SEED, dataset("train"), adapter=KeywordAdapter(), reflection_lm=lm, executor="dask",
            max_metric_calls=10,
        )  # fmt: skip


@pytest.mark.slow
def test_dask_worker_killed_mid_evaluation_loses_and_double_counts_nothing(
    tmp_path: Path, reference: gepetto.Result
) -> None:
    distributed = pytest.importorskip("distributed")
    log = tmp_path / "log"
    # 127.0.0.1 only: distributed's own address detection opens a socket to a public address.
    with (
        distributed.LocalCluster(
            n_workers=4,  # four worker processes, one killed mid-run
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(4, timeout=120)
        outcome: dict[str, Any] = {}

        def optimize() -> None:
            try:
                outcome["result"] = run(LoggedAdapter(str(log), 0.15), executor=client)
            except BaseException as error:  # reported by the assertion below
                outcome["error"] = error

        runner = threading.Thread(target=optimize)
        runner.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline:  # kill one in its 8th example
            started = [line for line in lines(log) if line[0] == "start"]
            if len(started) >= 8:
                killed = started[-1]
                os.kill(int(killed[3]), signal.SIGKILL)
            time.sleep(0.01)
        runner.join(timeout=240)
        assert not runner.is_alive()
    assert killed is not None
    assert "error" not in outcome, repr(outcome.get("error"))
    same_run(outcome["result"], reference)
    records = lines(log)
    # The killed worker never finished that example; another worker evaluated it again.
    key = (killed[1], killed[2])
    finished = [line for line in records if line[0] == "done" and (line[1], line[2]) == key]
    assert finished and all(line[3] != killed[3] for line in finished)
    # The run paid once for each evaluation it used, whatever ran twice on the workers.
    done = Counter((line[1], line[2]) for line in records if line[0] == "done")
    assert len(done) == outcome["result"].total_metric_calls
    # The evaluations went on on the surviving workers (which of the three Dask picks for
    # the two calls in flight is its choice: under load it may keep using the same ones).
    after_kill = records[records.index(killed) :]
    survivors = {line[3] for line in after_kill if line[0] == "done"}
    assert survivors and killed[3] not in survivors, survivors

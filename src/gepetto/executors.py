"""Evaluations on an executor: threads, processes, or a Dask cluster (``executor=``).

:class:`RemoteEvaluations` runs a sync adapter's ``evaluate`` (and ``batch_evaluate``) on a
:class:`concurrent.futures.Executor` or a Dask ``distributed.Client``; everything else of the
run (reflection, ``make_reflective_dataset``, the budget, the journal) stays in the calling
process. The contract:

- **Threads** (:class:`~concurrent.futures.ThreadPoolExecutor`): the adapter object itself
  is called in the pool's threads; nothing is copied.
- **Processes** (:class:`~concurrent.futures.ProcessPoolExecutor`, or any other executor):
  the adapter and the train/validation examples are pickled once, in the calling process
  (:func:`check_shippable` refuses what cannot be, before any LM call), and loaded once per
  worker process, into a per-process registry keyed by the run's token. Calls carry that
  payload until every worker of the pool (``max_workers``) has answered one; later calls
  go without it, and a worker that lacks it (one the pool started anew) answers so and
  gets the call again with it. So a worker unpickles it once, and it crosses the pipe
  about as many times as calls were in flight while the pool warmed up (measured against
  sending it with every call in docs/parallelism.md).
  Examples of the train and validation sets travel as ``(split, index)`` references;
  other examples (the testset) travel by value. A worker that dies breaks a process pool
  for good: the evaluations in flight fail with :class:`ExecutorBroken`, which stops the
  run (resume it from its ``run_dir``).
- **Dask** (``distributed.Client``): the same payload is scattered to the workers once
  (``client.scatter(..., broadcast=True)``) and every task names it, so Dask keeps it in
  each worker's memory and copies it to a new worker from a peer. Tasks are submitted with
  ``pure=False`` (two evaluations of the same candidate are not merged by Dask: the run's
  own cache and in-flight table do that). A worker killed mid-evaluation is handled by
  Dask's scheduler: its tasks run again on another worker (up to Dask's
  ``distributed.scheduler.allowed-failures``, 3 by default), and the run gets one result per
  evaluation. A task that Dask cancels instead (seen when the dead worker held data the
  task needed) is submitted again after scattering the payload anew, up to 4 times.

Results come back as each call finishes (the run's evaluator splits an evaluation into
``max_concurrency`` calls). The budget is the calling process's: an evaluation is counted
once, when its result arrives, however often a worker had to start it; so with Dask an
evaluation re-run after a worker's death is paid once, and a candidate's evaluations are
never sent twice (the run's evaluation cache and its table of evaluations in flight are
consulted before anything is submitted).

What an adapter returns from a worker (outputs, trajectories) must be picklable too.
Ray is not supported by this module and untested (its client probes outside addresses).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import pickle
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from gepetto.errors import ConfigError, GepettoError

__all__ = [
    "ExecutorBroken",
    "RemoteEvaluations",
    "check_executor",
    "check_shippable",
    "executor_kind",
]

_NEED_PAYLOAD = "gepetto: this worker has not loaded the run's adapter yet"
_MAX_LOADED = 4  # runs whose payload a worker process keeps (oldest dropped first)
_LOADED: dict[str, _Payload] = {}
_LOADED_LOCK = threading.Lock()


_DASK_RESUBMISSIONS = 4


class _CancelledByExecutor(GepettoError):
    """The executor cancelled a call the run had not cancelled."""


class ExecutorBroken(GepettoError):
    """The executor can run nothing more (a worker process died and broke the pool)."""


@dataclass(frozen=True, slots=True)
class _Payload:
    """What a worker needs once per run: the adapter and the examples referenced by index."""

    adapter: Any
    datasets: dict[str, Sequence[Any]]


@dataclass(frozen=True, slots=True)
class _Examples:
    """Examples sent by reference: indices into a split of the payload's datasets."""

    split: str
    indices: tuple[int, ...]


def executor_kind(executor: object) -> str:
    """``"threads"``, ``"processes"`` or ``"dask"``: how calls reach the executor's workers.

    Raises:
        ConfigError: for anything that is neither an Executor nor a Dask client.
    """
    if _is_dask_client(executor):
        return "dask"
    if isinstance(executor, ThreadPoolExecutor):
        return "threads"
    if isinstance(executor, Executor):
        return "processes"  # a process pool or an unknown executor: the payload is pickled
    raise ConfigError(
        f"executor must be a concurrent.futures.Executor (ThreadPoolExecutor, "
        f"ProcessPoolExecutor) or a Dask distributed.Client, got {type(executor).__name__}"
    )


def check_executor(executor: object) -> object:
    """``executor`` if it is usable (see :func:`executor_kind`), for the option group."""
    if executor is not None:
        executor_kind(executor)
        if _is_dask_client(executor) and getattr(executor, "asynchronous", False):
            raise ConfigError(
                "executor= got an asynchronous Dask Client; pass a synchronous one "
                "(distributed.Client(...) without asynchronous=True)"
            )
    return executor


def _is_dask_client(executor: object) -> bool:
    kind = type(executor)
    return kind.__module__.startswith("distributed") and kind.__name__ == "Client"


def check_shippable(
    executor: object, adapter: object, datasets: dict[str, Sequence[Any]]
) -> bytes | None:
    """The pickled payload (adapter and datasets) an executor's workers will load, or
    ``None`` for threads, where nothing is copied.

    Raises:
        ConfigError: an async ``evaluate`` (an executor runs sync calls), or an adapter or
            example that cannot be pickled, with what to change.
    """
    kind = executor_kind(executor)
    name = type(adapter).__name__
    if inspect.iscoroutinefunction(getattr(adapter, "evaluate", None)):
        raise ConfigError(
            f"executor= runs the adapter's evaluate in the executor's workers, but "
            f"{name}.evaluate is async; give it a sync evaluate, or leave executor= out "
            "(an async adapter already runs its evaluations concurrently)"
        )
    if kind == "threads":
        return None
    payload = _Payload(adapter, {split: list(items) for split, items in datasets.items()})
    try:
        return _dumps(payload, allow_cloudpickle=kind == "dask")
    except Exception as error:
        raise ConfigError(
            f"executor= ({type(executor).__name__}) sends the adapter and the train/validation "
            f"examples to other processes, and {name} (or an example) cannot be pickled: "
            f"{type(error).__name__}: {error}. Define the adapter's class at module level, "
            "keep no open client, lock, thread or file in it (create them lazily in the worker, "
            "e.g. on first use), and use picklable examples; or pass a ThreadPoolExecutor"
        ) from error


def _dumps(payload: _Payload, *, allow_cloudpickle: bool) -> bytes:
    try:
        return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if not allow_cloudpickle:
            raise
        import cloudpickle  # type: ignore[import-untyped]  # (distributed needs it)

        return bytes(cloudpickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def _run_in_worker(token: str, payload: Any, method: str, args: tuple[Any, ...]) -> Any:
    """Runs in a worker: load the run's payload once per process, then call the adapter;
    returns ``(process id, what the adapter returned)``, or :data:`_NEED_PAYLOAD`."""
    with _LOADED_LOCK:
        loaded = _LOADED.get(token)
        if loaded is None:
            if payload is None:
                return _NEED_PAYLOAD
            loaded = pickle.loads(payload) if isinstance(payload, bytes) else payload
            while len(_LOADED) >= _MAX_LOADED:
                del _LOADED[next(iter(_LOADED))]
            _LOADED[token] = loaded
    resolved = _resolve(loaded, method, args)
    return os.getpid(), getattr(loaded.adapter, method)(*resolved)


def _resolve(loaded: _Payload, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    def examples(batch: Any) -> list[Any]:
        if isinstance(batch, _Examples):
            items = loaded.datasets[batch.split]
            return [items[i] for i in batch.indices]
        return list(batch)

    if method == "evaluate":
        batch, candidate, capture_traces = args
        return (examples(batch), candidate, capture_traces)
    (items,) = args
    return ([(candidate, examples(batch)) for candidate, batch in items],)


class RemoteEvaluations:
    """Runs an adapter's ``evaluate``/``batch_evaluate`` on ``executor``'s workers.

    Args:
        executor: a :class:`concurrent.futures.Executor` or a Dask ``distributed.Client``.
        adapter: the (sync) adapter.
        datasets: the run's examples by split (``{"train": ..., "val": ...}``); the ones
            evaluated travel as indices into these.
        payload: what :func:`check_shippable` returned for the same arguments (pickled once,
            up front); computed here when not given.
    """

    def __init__(
        self,
        executor: object,
        adapter: object,
        datasets: dict[str, Sequence[Any]],
        payload: bytes | None = None,
    ) -> None:
        self.kind = executor_kind(executor)
        self.executor = executor
        self.adapter = adapter
        self.token = uuid.uuid4().hex
        if payload is None:
            payload = check_shippable(executor, adapter, datasets)
        self.payload = payload
        self.payload_sends = 0
        """How many calls carried the payload (processes)."""
        self.reloads = 0
        """How many calls were sent again with it (a worker that lacked it)."""
        self.resubmissions = 0
        """How many calls Dask cancelled and were submitted again."""
        self._index: dict[int, tuple[str, int]] = {}
        self._datasets = datasets  # keeps the examples alive, so their ids stay theirs
        for split, items in datasets.items():
            for i, example in enumerate(items):
                self._index.setdefault(id(example), (split, i))
        self._scattered: Any = None
        self._loaded_in: set[int] = set()  # worker processes known to hold the payload
        workers = getattr(executor, "_max_workers", None)  # a process pool's size
        self._workers: int | None = workers if isinstance(workers, int) else None
        self._dask_executor: Any = None
        self._scatter_lock = threading.Lock()

    async def call(self, method: str, *args: Any) -> Any:
        """``adapter.<method>(*args)`` on a worker (``evaluate`` or ``batch_evaluate``).

        Raises:
            ExecutorBroken: the executor can run nothing more (a dead process pool).
        """
        loop = asyncio.get_running_loop()
        if self.kind == "threads":
            function = functools.partial(getattr(self.adapter, method), *args)
            return await loop.run_in_executor(self._executor(), function)
        sent = self._by_reference(method, args)
        if self.kind == "dask":
            for _ in range(_DASK_RESUBMISSIONS):
                scattered = await loop.run_in_executor(None, self._scatter)
                try:
                    return (await self._submit(scattered, method, sent))[1]
                except _CancelledByExecutor:
                    # Dask cancelled the task (the worker that held its input died before
                    # the data was copied): scatter the payload again and resubmit.
                    self.resubmissions += 1
                    self._forget_scattered()
            raise ExecutorBroken(
                f"Dask cancelled an evaluation {_DASK_RESUBMISSIONS} times (its workers keep "
                "dying); the run stops, resume it with the same run_dir"
            )
        # While some worker of the pool may not have loaded the payload, calls carry it;
        # then they go without, and a worker that still lacks it (restarted) asks for it.
        warm = self._workers is not None and len(self._loaded_in) >= self._workers
        self.payload_sends += not warm
        result = await self._submit(None if warm else self.payload, method, sent)
        if isinstance(result, str) and result == _NEED_PAYLOAD:
            self.reloads += 1
            self.payload_sends += 1
            result = await self._submit(self.payload, method, sent)
        self._loaded_in.add(result[0])
        return result[1]

    async def _submit(self, payload: Any, method: str, args: tuple[Any, ...]) -> Any:
        executor = self._executor()
        future = executor.submit(_run_in_worker, self.token, payload, method, args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise _CancelledByExecutor from None  # not cancelled by the run
            raise
        except BrokenProcessPool as error:
            raise ExecutorBroken(
                f"the process pool of executor= broke ({error}): a worker process died "
                "(killed, or out of memory). The run stops; resume it with the same run_dir "
                "and a new pool, or use a Dask cluster, whose scheduler runs a dead worker's "
                "evaluations again on another worker"
            ) from error

    def _executor(self) -> Executor:
        if self.kind != "dask":
            executor: Executor = self.executor  # type: ignore[assignment]
            return executor
        if self._dask_executor is None:
            self._dask_executor = self.executor.get_executor(pure=False)  # type: ignore[attr-defined]
        dask_executor: Executor = self._dask_executor
        return dask_executor

    def _scatter(self) -> Any:
        """The payload on every Dask worker (scattered once, on first use)."""
        with self._scatter_lock:
            if self._scattered is None:
                client: Any = self.executor
                self._scattered = client.scatter(self.payload, broadcast=True, hash=False)
            return self._scattered

    def _by_reference(self, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if method == "evaluate":
            batch, candidate, capture_traces = args
            return (self._reference(batch), candidate, capture_traces)
        (items,) = args
        return ([(candidate, self._reference(batch)) for candidate, batch in items],)

    def _reference(self, batch: Sequence[Any]) -> _Examples | list[Any]:
        places = [self._index.get(id(example)) for example in batch]
        if not places or any(place is None for place in places):
            return list(batch)
        splits = {place[0] for place in places if place is not None}
        if len(splits) != 1:
            return list(batch)
        indices = tuple(place[1] for place in places if place is not None)
        return _Examples(next(iter(splits)), indices)

    def _forget_scattered(self) -> None:
        with self._scatter_lock:
            self._scattered = None

    def close(self) -> None:
        """Release the scattered payload (Dask); the executor itself stays the caller's."""
        scattered, self._scattered = self._scattered, None
        if scattered is not None:
            with contextlib.suppress(Exception):  # the client may be closed already
                scattered.release()

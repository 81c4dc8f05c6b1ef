"""The async driver: does the optimizer's tasks with the adapter and the reflection LM.

:class:`Driver` asks the :class:`~gepetto.engine.optimizer.Optimizer` for tasks, runs each
one as an asyncio task (evaluations through the :class:`~gepetto.evaluation.Evaluator`,
reflections through the adapter's ``make_reflective_dataset`` and a proposer), and tells the
results back in task-id order, until the optimizer is finished.

Signals (when the driver owns the event loop's main thread): the first SIGINT/SIGTERM asks
the optimizer to stop starting proposals, so the ones in flight finish and the best so far
is returned; a second one cancels the work in flight and returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gepetto.adapter import AdapterRunner, ReflectiveDataset, call_maybe_async, check_proposed_texts
from gepetto.engine.context import EvaluateTask, MergeTask, ReflectTask, Task, current_task
from gepetto.engine.optimizer import Optimizer
from gepetto.errors import AdapterContractError, GepettoError
from gepetto.evaluation import Evaluator, ScoredBatch
from gepetto.lm.client import LMCallRecord, LMClient
from gepetto.lm.errors import CostCapReached, is_fatal
from gepetto.lm.streaming import listening
from gepetto.proposers.reflective import ProposalOutcome, ReflectiveProposer
from gepetto.result import Result
from gepetto.types import printable

__all__ = ["Driver", "ProposalFunction"]

logger = logging.getLogger("gepetto")

HEARTBEAT_INTERVAL = 5.0
"""Seconds between heartbeats of a worker's budget leases (shared runs)."""

WAIT_FOR_OTHERS_POLL = 0.2
"""Seconds between checks while a shared run's worker waits for another to seed it."""

ProposalFunction = Callable[[dict[str, str], ReflectiveDataset, list[str]], Any]
"""gepa's ``custom_candidate_proposer``: (candidate, reflective_dataset, components) -> texts."""


class Driver:
    """Runs an optimizer to the end with real work.

    Args:
        optimizer: the state machine to drive.
        runner: the checked adapter.
        proposer: the reflective proposer (``None`` when texts come from the adapter's
            ``propose_new_texts`` or from ``custom_proposer``).
        custom_proposer: gepa's ``custom_candidate_proposer``.
        max_concurrency: most adapter calls in flight at once.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        runner: AdapterRunner,
        *,
        proposer: ReflectiveProposer | None,
        custom_proposer: ProposalFunction | None = None,
        max_concurrency: int = 8,
        metered_lms: Sequence[tuple[str, LMClient]] = (),
    ) -> None:
        self.optimizer = optimizer
        self.metered_lms = list(metered_lms)
        self.runner = runner
        self.proposer = proposer
        self.custom_proposer = custom_proposer
        self.evaluator = Evaluator(runner, max_concurrency)
        self._signals_seen = 0
        self._hard_stop = asyncio.Event()

    async def run(self, *, handle_signals: bool = False) -> Result:
        """Drive the optimizer until it finishes; return its result."""
        installed = self._install_signal_handlers() if handle_signals else []
        listeners = self._attach_lm_listeners()
        try:
            await self._loop()
        except GepettoError as error:
            # Stopped by an error (an adapter contract violation mid-run, ...): the run's
            # records are complete and flushed, and the error carries what was paid for.
            self.optimizer.abort(f"stopped by {type(error).__name__}: {printable(str(error))}")
            error.result = self.optimizer.result()
            raise
        finally:
            for client, listener in listeners:
                client.remove_listener(listener)
            self._remove_signal_handlers(installed)
        return self.optimizer.result()

    def _attach_lm_listeners(self) -> list[tuple[LMClient, Callable[[LMCallRecord], None]]]:
        """Forward every call of the run's LM clients to the optimizer's accounting.

        Calls may come from worker threads (sync adapters); they are handed to the event
        loop's thread so the state is only ever touched there.
        """
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def forwarder(role: str) -> Callable[[LMCallRecord], None]:
            def forward(call: LMCallRecord) -> None:
                task = current_task.get()
                if threading.get_ident() == loop_thread:
                    self.optimizer.record_lm_call(role, call, task)
                else:
                    loop.call_soon_threadsafe(self.optimizer.record_lm_call, role, call, task)

            return forward

        attached = []
        for role, client in self.metered_lms:
            listener = forwarder(role)
            client.add_listener(listener)
            attached.append((client, listener))
        return attached

    async def _loop(self) -> None:
        optimizer = self.optimizer
        running: dict[asyncio.Task[Any], Task] = {}
        hard_stop = asyncio.ensure_future(self._hard_stop.wait())
        try:
            while True:
                while (task := optimizer.ask()) is not None:
                    running[asyncio.ensure_future(self._perform(task))] = task
                if not running:
                    if not optimizer.waiting_for_others:
                        return
                    await asyncio.sleep(WAIT_FOR_OTHERS_POLL)  # another worker seeds the run
                    continue
                done, _ = await asyncio.wait(
                    [*running, hard_stop],
                    timeout=HEARTBEAT_INTERVAL,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                optimizer.heartbeat()
                if hard_stop in done:
                    await self._cancel(running)
                    optimizer.abort("interrupted twice: stopped without finishing work in flight")
                    return
                for future in sorted(done, key=lambda f: running[f].id):
                    task = running.pop(future)
                    error = future.exception()
                    if error is not None and is_fatal(error):
                        logger.error("stopping the run: %s", error)
                        if isinstance(error, CostCapReached):
                            await self._finish_paid_work(running)
                            optimizer.abort(f"stopped by the cost cap: {error}")
                        else:
                            await self._cancel(running)
                            optimizer.abort(f"stopped by an LM error: {error}")
                        return
                    optimizer.tell(task.id, future.result())
        except BaseException:
            await self._cancel(running)
            raise
        finally:
            hard_stop.cancel()

    async def _finish_paid_work(self, running: dict[asyncio.Task[Any], Task]) -> None:
        """After the dollar cap refused a call: let the calls already sent come back (they
        are paid for), and tell the tasks that completed, so nothing bought is lost.

        The cap is closed by then, so no task starts a new call; the ones that needed one
        fail with :class:`CostCapReached` and are dropped with the rest of the run's work in
        flight by the abort that follows. Calls made outside the driver's tasks (an adapter's
        stray coroutines, worker threads) are waited for through the cap itself.
        """
        await asyncio.gather(*running, return_exceptions=True)
        for cap in {id(c.cost_cap): c.cost_cap for _, c in self.metered_lms if c.cost_cap}.values():
            await cap.wait_idle()
        for future in sorted(running, key=lambda f: running[f].id):
            task = running.pop(future)
            if not future.cancelled() and future.exception() is None:
                self.optimizer.tell(task.id, future.result())

    @staticmethod
    async def _cancel(running: Mapping[asyncio.Task[Any], Task]) -> None:
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def _perform(self, task: Task) -> ScoredBatch | ProposalOutcome:
        current_task.set(task)  # this asyncio task's own context: its LM calls are attributed
        if isinstance(task, EvaluateTask):

            def retry_budget(calls: int) -> int:
                return self.optimizer.reserve_retries(task.id, calls)

            return await self.evaluator.evaluate(
                task.candidate, task.examples, task.capture_traces, retry_budget
            )
        if isinstance(task, MergeTask):
            return await self._merge(task)
        return await self._reflect(task)

    async def _merge(self, task: MergeTask) -> ProposalOutcome:
        if self.proposer is None:  # refused by optimize(); kept for external drivers
            raise AdapterContractError(
                "merge_strategy='reflective' needs the reflection LM's proposer (a "
                "reflection_lm, and no custom_candidate_proposer or propose_new_texts)"
            )
        with listening(self.optimizer.stream_listener(task)):
            return await self.proposer.merge(task.first, task.second, task.components, task.wins)

    async def _reflect(self, task: ReflectTask) -> ProposalOutcome:
        components = list(task.components)
        try:
            dataset = await self.runner.make_reflective_dataset(
                task.candidate, task.eval_batch, components
            )
        except AdapterContractError:
            raise
        except Exception as error:
            if is_fatal(error):
                raise
            logger.warning("make_reflective_dataset failed", exc_info=True)
            reason = f"make_reflective_dataset failed: {type(error).__name__}: {error}"
            return ProposalOutcome({}, dict.fromkeys(components, reason), lm_calls=0)
        # The proposal's streamed LM calls (not the dataset's: an adapter may call its task
        # model there) hand their text to events and the store as it arrives.
        if self.custom_proposer is not None or self.runner.proposes_texts:
            with listening(self.optimizer.stream_listener(task)):
                return await self._custom_proposal(task.candidate, dataset, components)
        if self.proposer is None:  # guarded by optimize(); kept for external drivers
            raise AdapterContractError("no reflection_lm and no propose_new_texts to use")
        perfect = self.optimizer.config.perfect_score
        failed = [score < perfect for score in task.eval_batch.scores]
        with listening(self.optimizer.stream_listener(task)):
            return await self.proposer.propose(
                task.candidate, dataset, components, task.rejected, failed, task.tried
            )

    async def _custom_proposal(
        self, candidate: dict[str, str], dataset: ReflectiveDataset, components: list[str]
    ) -> ProposalOutcome:
        try:
            if self.custom_proposer is not None:
                raw = await call_maybe_async(self.custom_proposer, candidate, dataset, components)
                texts = check_proposed_texts(raw, "custom_candidate_proposer")
            else:
                texts = await self.runner.propose_new_texts(candidate, dataset, components)
        except AdapterContractError:
            raise
        except Exception as error:
            if is_fatal(error):
                raise
            logger.warning("the custom proposer failed", exc_info=True)
            reason = f"reflection LM failed: {type(error).__name__}: {error}"
            return ProposalOutcome({}, dict.fromkeys(components, reason), lm_calls=1)
        return ProposalOutcome(texts, lm_calls=1, reflective_dataset=dataset)

    # ----- signals -------------------------------------------------------------------------

    def _install_signal_handlers(self) -> Sequence[tuple[signal.Signals, Any]]:
        if threading.current_thread() is not threading.main_thread():
            return []
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-Unix loops
                continue
            installed.append((sig, previous))
        return installed

    def _remove_signal_handlers(self, installed: Sequence[tuple[signal.Signals, Any]]) -> None:
        if not installed:
            return
        loop = asyncio.get_running_loop()
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals_seen += 1
        if self._signals_seen == 1:
            logger.warning(
                "%s received: finishing the work in flight, then returning the best so far "
                "(send it again to stop at once)",
                sig.name,
            )
            self.optimizer.request_stop(f"interrupted by {sig.name}")
        else:
            logger.warning("%s received again: stopping now", sig.name)
            self._hard_stop.set()

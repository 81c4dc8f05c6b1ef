"""Streamed reflection text reaches events and the run's store as it arrives; replay and
resume ignore it (a streamed run resumes and ends exactly as one that does not stream)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.events import ReflectionDelta, ReflectionFinished
from gepetto.records import ReflectionStreamed, record_from_dict
from gepetto.storage import SQLiteStorage
from gepetto.testing import (
    FeedbackFollowingLM,
    KeywordAdapter,
    ScriptedLM,
    StreamingScriptedLM,
    keyword_dataset,
)

WORDS = [f"w{i}" for i in range(6)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}


def run(run_dir: Path, lm: Any, budget: int = 60, callbacks: Any = ()) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        TRAIN,
        VAL,
        adapter=KeywordAdapter(),
        reflection_lm=lm,
        max_metric_calls=budget,
        run_dir=run_dir,
        display_progress_bar=False,
        callbacks=list(callbacks),
    )


def stored(run_dir: Path) -> list[Any]:
    storage = SQLiteStorage(run_dir / "journal.sqlite")
    try:
        return [record_from_dict(data) for _, data in storage.read("default")]
    finally:
        storage.close()


def summary(result: gepetto.Result) -> dict[str, Any]:
    data = result.to_dict()
    return {k: data[k] for k in ("candidates", "parents", "val_subscores", "total_metric_calls")}


def streams_of(records: list[Any]) -> dict[tuple[int, int], list[ReflectionStreamed]]:
    streams: dict[tuple[int, int], list[ReflectionStreamed]] = defaultdict(list)
    for record in records:
        if isinstance(record, ReflectionStreamed):
            streams[(record.iteration, record.stream)].append(record)
    return streams


def test_streamed_text_reaches_events_and_store_and_equals_the_reply(tmp_path: Path) -> None:
    deltas: list[ReflectionDelta] = []
    replies: dict[int, str] = {}

    class Watcher:
        def on_reflection_delta(self, event: ReflectionDelta) -> None:
            deltas.append(event)

        def on_reflection_finished(self, event: ReflectionFinished) -> None:
            replies[event.iteration] = event.replies["instructions"]

    lm = StreamingScriptedLM(FeedbackFollowingLM(), chunk_chars=3, chunk_delay=0.002)
    result = run(tmp_path / "a", lm, callbacks=[Watcher()])
    assert result.num_candidates > 1, "the run improved (so reflections happened)"
    streams = streams_of(stored(tmp_path / "a"))
    assert {iteration for iteration, _ in streams} == set(replies), "every reflection streamed"
    for (iteration, _), records in streams.items():
        assert [r.seq for r in records] == list(range(len(records))), "seq from 0, in order"
        assert [r.done for r in records] == [False] * (len(records) - 1) + [True]
        assert records[0].components == ("instructions",)
        assert "".join(r.text for r in records) == replies[iteration]
        assert not any(r.discarded for r in records)
    by_stream: dict[tuple[int, int], list[ReflectionDelta]] = defaultdict(list)
    for event in deltas:
        by_stream[(event.iteration, event.stream)].append(event)
    assert set(by_stream) == set(streams)
    for (iteration, _), events in by_stream.items():
        assert [e.seq for e in events] == list(range(len(events)))
        assert events[-1].done and not any(e.done for e in events[:-1])
        assert "".join(e.text for e in events) == replies[iteration]
        assert all(e.task_id is not None for e in events)
    # Not in events.jsonl: one line per piece would swamp it (the reply is in
    # reflection_finished).
    assert "reflection_delta" not in (tmp_path / "a" / "events.jsonl").read_text()


def test_a_streamed_run_ends_and_resumes_as_one_that_does_not_stream(tmp_path: Path) -> None:
    plain = run(tmp_path / "plain", ScriptedLM(FeedbackFollowingLM()), budget=40)
    streamed = run(tmp_path / "streamed", StreamingScriptedLM(FeedbackFollowingLM()), budget=40)
    assert summary(streamed) == summary(plain)
    assert streams_of(stored(tmp_path / "streamed")), "the streamed run wrote progress records"
    assert not streams_of(stored(tmp_path / "plain")), "a run that does not stream writes none"
    # Resuming the streamed journal (it holds progress records) extends it as the plain one.
    extended_plain = run(tmp_path / "plain", ScriptedLM(FeedbackFollowingLM()), budget=90)
    extended = run(tmp_path / "streamed", StreamingScriptedLM(FeedbackFollowingLM()), budget=90)
    assert summary(extended) == summary(extended_plain)
    again = run(tmp_path / "streamed", StreamingScriptedLM(FeedbackFollowingLM()), budget=90)
    assert again.total_metric_calls == extended.total_metric_calls, "nothing paid twice"


def test_a_reader_of_the_store_sees_the_text_within_a_second_at_most_four_records_a_second(
    tmp_path: Path,
) -> None:
    """A long reply streamed over about 3 s: a second process-like reader (its own SQLite
    connection, polling) sees each piece within 1 s of its event, and each stream is
    written in at most about 4 records per second."""
    reply = "```\n" + " ".join(f"w{i % 6} word{i}" for i in range(60)) + "\n```"
    lm = StreamingScriptedLM([reply], repeat_last=True, chunk_chars=4, chunk_delay=0.02)
    emitted: list[tuple[float, int]] = []  # (time, characters of the reply so far)
    spans: dict[tuple[int, int], list[float]] = defaultdict(list)  # delta times per stream

    class Watcher:
        def __init__(self) -> None:
            self.length = 0

        def on_reflection_delta(self, event: ReflectionDelta) -> None:
            self.length = 0 if event.seq == 0 else self.length
            self.length += len(event.text)
            emitted.append((time.monotonic(), self.length))
            spans[(event.iteration, event.stream)].append(time.monotonic())

    seen: list[tuple[float, int]] = []  # (time, characters the reader had read)
    stop = threading.Event()

    def reader() -> None:
        path = tmp_path / "run" / "journal.sqlite"
        while not path.exists() and not stop.is_set():
            time.sleep(0.01)
        storage = SQLiteStorage(path)
        try:
            while True:
                last = stop.is_set()  # one more read once the run is over
                records = [record_from_dict(d) for _, d in storage.read("default")]
                streams = streams_of(records)
                if streams:
                    first = streams[min(streams)]
                    seen.append((time.monotonic(), sum(len(r.text) for r in first)))
                if last:
                    break
                time.sleep(0.05)
        finally:
            storage.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        run(tmp_path / "run", lm, budget=12, callbacks=[Watcher()])
    finally:
        stop.set()
        thread.join()
    first_stream = emitted[: len(reply) // 4 + 2]
    for at, length in first_stream:
        caught_up = next((t for t, n in seen if n >= length), None)
        assert caught_up is not None and caught_up - at < 1.0, (at, length, seen[-3:])
    records = streams_of(stored(tmp_path / "run"))
    for key, stream in records.items():
        duration = spans[key][-1] - spans[key][0]  # as long as it took on this machine
        assert len(stream) <= duration * 4 + 3, (len(stream), duration)
        assert len(stream) >= 3, "the text went to the store in pieces, not all at the end"


def test_a_run_with_a_streaming_client_retries_a_cut_reflection_and_counts_it_once(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The real OpenAI client streams the reflection from the fault server; the first
    stream is cut mid-reply. The store shows the cut stream discarded and the retry's whole
    text; the run's tokens and dollars count the completed attempts only."""
    from gepetto.lm.openai_client import OpenAIClient
    from gepetto.lm.pricing import StaticPrices
    from gepetto.lm.reliability import RetryPolicy
    from tests.lm.fault_server import FaultServer, streamed

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    reply = "Better instructions:\n```\nAnswer with " + " ".join(WORDS) + ".\n```"
    with FaultServer() as server:
        server.play(
            streamed(reply, prompt_tokens=900, completion_tokens=900, cut_after=4),
            *(streamed(reply, prompt_tokens=50, completion_tokens=20) for _ in range(20)),
        )
        client = OpenAIClient(
            "fault-model",
            base_url=server.openai_base_url,
            api_key="k",
            prices=StaticPrices({("openai", "fault-model"): (1.0, 2.0)}),
            retry=RetryPolicy(max_attempts=3, base_delay=0.01),
        )
        replies: dict[int, str] = {}

        class Watcher:
            def on_reflection_finished(self, event: ReflectionFinished) -> None:
                replies[event.iteration] = event.replies.get("instructions", "")

        result = run(tmp_path / "run", client, budget=24, callbacks=[Watcher()])
        requests = len(server.requests)
    streams = streams_of(stored(tmp_path / "run"))
    first = min(replies)
    cut, retried = streams[(first, 0)], streams[(first, 1)]
    assert cut[-1].done and cut[-1].discarded and cut[-1].text == ""
    # What was written of the cut stream (its first piece at once; text still waiting for
    # the throttle when the cut came is dropped, being void) is a start of the reply.
    written = "".join(r.text for r in cut)
    assert written and reply.startswith(written) and len(written) <= 4 * 4
    assert [r.seq for r in retried] == list(range(len(retried))) and retried[-1].done
    assert "".join(r.text for r in retried) == reply == replies[first]
    usage = result.lm_usage["reflection"]
    completed = requests - 1  # every request but the cut one completed
    assert usage["calls"] == completed  # the cut attempt and its retry make one call
    assert (usage["input_tokens"], usage["output_tokens"]) == (50 * completed, 20 * completed)
    assert usage["cost_usd"] == pytest.approx(completed * (50 * 1.0 + 20 * 2.0) / 1e6)


def test_text_streamed_from_another_thread_is_handed_to_the_loop(tmp_path: Path) -> None:
    """An LM that streams from a worker thread (its context copied there): the pieces are
    written by the run's loop, in order, and the store holds the whole reply."""
    import asyncio
    import contextvars

    from gepetto.lm.streaming import open_stream

    follow = FeedbackFollowingLM()
    writer_threads: set[int] = set()

    async def threaded_lm(prompt: Any) -> str:
        reply = follow(prompt)

        def stream_in_thread() -> None:
            writer_threads.add(threading.get_ident())
            stream = open_stream()
            assert stream is not None
            for start in range(0, len(reply), 5):
                stream.write(reply[start : start + 5])
                time.sleep(0.002)
            stream.close()

        context = contextvars.copy_context()
        await asyncio.get_running_loop().run_in_executor(None, context.run, stream_in_thread)
        return reply

    replies: dict[int, str] = {}

    class Watcher:
        def on_reflection_finished(self, event: ReflectionFinished) -> None:
            replies[event.iteration] = event.replies["instructions"]

    run(tmp_path / "run", threaded_lm, budget=30, callbacks=[Watcher()])
    assert threading.get_ident() not in writer_threads
    streams = streams_of(stored(tmp_path / "run"))
    assert {iteration for iteration, _ in streams} == set(replies)
    for (iteration, _), records in streams.items():
        assert [r.seq for r in records] == list(range(len(records))) and records[-1].done
        assert "".join(r.text for r in records) == replies[iteration]


def test_an_ask_tell_caller_streams_by_hand_without_an_event_loop() -> None:
    from gepetto import EvaluateTask, Optimizer, ProposalOutcome
    from gepetto.lm.streaming import listening, open_stream
    from gepetto.storage import MemoryStorage

    storage = MemoryStorage()
    opt = Optimizer(SEED, TRAIN, VAL, max_metric_calls=20, storage=storage)
    adapter = KeywordAdapter()
    text = "```\nAnswer with " + " ".join(WORDS) + "\n```"
    while (task := opt.ask()) is not None:
        if isinstance(task, EvaluateTask):
            opt.tell(task.id, adapter.evaluate(task.examples, task.candidate, task.capture_traces))
            continue
        with listening(opt.stream_listener(task)):
            stream = open_stream()
            assert stream is not None
            for piece in ("```\nAnswer", " with ", text[len("```\nAnswer with ") :]):
                stream.write(piece)
            stream.close()
        opt.tell(task.id, ProposalOutcome({"instructions": text.strip("`\n")}, lm_calls=1))
    records = [record_from_dict(d) for _, d in storage.read("default")]
    [stream_records] = streams_of(records).values()
    assert "".join(r.text for r in stream_records) == text and stream_records[-1].done
    assert stream_records[0].text == "```\nAnswer", "the first piece at once"

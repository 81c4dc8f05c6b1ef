"""A run whose real reflection model (a local model through the OpenAI client) streams: its
text reaches the store while it is written and equals the reply the step received.

The 0.5B model reflects here (the point is the streaming, not the proposal's quality; the
1.5B's prompt processing alone took over 15 minutes on the shared 2-core machine)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import gepetto
from gepetto.events import ReflectionDelta, ReflectionFinished
from gepetto.lm.registry import resolve_lm
from gepetto.records import ReflectionStreamed, record_from_dict
from gepetto.storage import SQLiteStorage
from gepetto.testing import KeywordAdapter, keyword_dataset

pytestmark = [pytest.mark.llm, pytest.mark.slow]

# Loading the model and one or two reflections of at most 40 tokens: about a minute on two
# idle cores, much more when the machine is shared.

WORDS = ["apple", "river", "stone"]


@pytest.mark.timeout(900)
def test_a_real_reflection_streams_into_the_store(tmp_path: Path) -> None:
    reflection = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=40)
    deltas: list[tuple[float, str, int]] = []
    replies: list[str] = []

    class Watcher:
        def on_reflection_delta(self, event: ReflectionDelta) -> None:
            deltas.append((time.monotonic(), event.text, event.iteration))

        def on_reflection_finished(self, event: ReflectionFinished) -> None:
            replies.extend(event.replies.values())

    try:
        result = gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(WORDS),
            keyword_dataset(WORDS),
            adapter=KeywordAdapter(),
            reflection_lm=reflection,
            max_metric_calls=9,
            reflection_minibatch_size=3,
            run_dir=tmp_path / "run",
            display_progress_bar=False,
            callbacks=[Watcher()],
        )
    finally:
        asyncio.run(reflection.aclose())
    assert result.lm_usage["reflection"]["calls"] >= 1 and replies
    storage = SQLiteStorage(tmp_path / "run" / "journal.sqlite")
    records = [record_from_dict(d) for _, d in storage.read("default")]
    storage.close()
    streamed = [r for r in records if isinstance(r, ReflectionStreamed)]
    iteration = streamed[0].iteration
    streams = sorted({r.stream for r in streamed if r.iteration == iteration})
    texts = []
    for number in streams:  # one stream per reflection call (a reply asked for again: two)
        stream = [r for r in streamed if (r.iteration, r.stream) == (iteration, number)]
        assert [r.seq for r in stream] == list(range(len(stream))) and stream[-1].done
        texts.append("".join(r.text for r in stream))
    first = [r for r in streamed if (r.iteration, r.stream) == (iteration, 0)]
    assert replies[0] == texts[-1], "the store holds the whole reply the step received"
    assert "".join(text for _, text, i in deltas if i == iteration) == "".join(texts)
    took = deltas[-1][0] - deltas[0][0]
    print(f"reflection streamed for {took:.1f} s in {len(deltas)} deltas, {len(first)} records")
    assert len(first) >= 3, "written in pieces while the model wrote"
    assert len(first) <= took * 4 + 3, "at most about 4 records a second"

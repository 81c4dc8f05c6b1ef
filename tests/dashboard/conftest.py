"""A real gepetto run in progress, paced by the test: the dashboard's subject.

:class:`LiveRun` runs ``gepetto.optimize`` in a background thread, writing to a SQLite run
folder. Its reflection model is a :class:`~gepetto.testing.StreamingScriptedLM` over a
:class:`~gepetto.testing.FeedbackFollowingLM` (each reply adds one missing word, so most
proposals are accepted), behind a gate: each reflection waits for a permit from the test
(:meth:`LiveRun.allow`), so the test decides when the run makes its next candidate, and the
reply streams in small pieces (slow enough to watch it grow).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, StreamingScriptedLM

WORDS = [f"w{i}" for i in range(10)]
PREAMBLE = (
    "Reading the feedback: the answers miss words the examples ask for. The instructions "
    "should name them, so that every answer contains them. New text:\n"
)


class GatedReplies:
    """Reflection replies that each wait for a permit (``allow``); ``open`` ends the waiting."""

    def __init__(self) -> None:
        self.inner = FeedbackFollowingLM()
        self.permits = threading.Semaphore(0)
        self.opened = threading.Event()
        self.calls = 0

    def allow(self, count: int = 1) -> None:
        for _ in range(count):
            self.permits.release()

    def __call__(self, prompt: Any) -> str:
        deadline = time.monotonic() + 120
        while not self.opened.is_set() and not self.permits.acquire(timeout=0.05):
            if time.monotonic() > deadline:
                raise RuntimeError("the test gave the reflection no permit in 120 s")
        self.calls += 1
        return PREAMBLE + self.inner(prompt)


class LiveRun:
    """A run in a background thread (see the module docstring)."""

    def __init__(self, run_dir: Path, *, budget: int = 600, chunk_delay: float = 0.02) -> None:
        self.run_dir = run_dir
        self.gate = GatedReplies()
        self.lm = StreamingScriptedLM(self.gate, chunk_chars=6, chunk_delay=chunk_delay)
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(budget,), daemon=True)
        self._thread.start()

    def _run(self, budget: int) -> None:
        try:
            self.result = gepetto.optimize(
                {"instructions": "Answer."},
                [{"needs": w} for w in WORDS] * 2,
                [{"needs": w} for w in WORDS],
                adapter=KeywordAdapter(),
                reflection_lm=self.lm,
                max_metric_calls=budget,
                run_dir=self.run_dir,
                display_progress_bar=False,
            )
        except BaseException as error:  # reported by finish()
            self.error = error

    def allow(self, count: int = 1) -> None:
        """Let ``count`` more reflections happen."""
        self.gate.allow(count)

    def candidates(self) -> int:
        """Candidates in the store now (read like any outside reader)."""
        journal = self.run_dir / "journal.sqlite"
        if not journal.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
                rows = db.execute("SELECT body FROM records").fetchall()
        except sqlite3.Error:
            return 0
        return sum('"kind":"candidate"' in body for (body,) in rows)

    def wait_for_candidates(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.candidates() < count:
            if self.error is not None:
                raise AssertionError(f"the run failed: {self.error!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the run has {self.candidates()} candidates, not {count}")
            time.sleep(0.05)

    def finish(self) -> Any:
        """Let the run go on without waiting and return its result."""
        self.lm.chunk_delay = 0.0
        self.gate.opened.set()
        self._thread.join(timeout=120)
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[LiveRun]:
    run = LiveRun(tmp_path / "live")
    run.wait_for_candidates(1)
    yield run
    run.finish()


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    """A short finished run (for the list and the comparison)."""
    run_dir = tmp_path / "finished"
    gepetto.optimize(
        {"instructions": "Answer."},
        [{"needs": w} for w in WORDS] * 2,
        [{"needs": w} for w in WORDS],
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(words_per_call=2),
        max_metric_calls=120,
        run_dir=run_dir,
        display_progress_bar=False,
    )
    return run_dir


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the server of ``scripts/start-postgres`` (dropped after)."""
    import os
    import uuid
    from urllib.parse import quote

    url = os.environ.get("GEPETTO_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("GEPETTO_TEST_POSTGRES_URL is unset (run scripts/start-postgres)")
    import psycopg

    schema = f"gepetto_dash_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in url else "?"
    yield f"{url}{separator}options={quote(f'-csearch_path={schema}')}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")

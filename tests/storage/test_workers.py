"""Several real worker processes on one run through a real PostgreSQL server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gepetto.records import record_from_dict
from gepetto.state import RunState

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BUDGET = 400
WORKER = r"""
import json, sys, time
import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

url, name, count_file = sys.argv[1], sys.argv[2], sys.argv[3]

class Slow(KeywordAdapter):
    def evaluate(self, batch, candidate, capture_traces=False):
        time.sleep(0.02)
        with open(count_file, "a") as f:
            f.write(f"{len(batch)}\n")
        return super().evaluate(batch, candidate, capture_traces)

class Announce:
    def on_iteration_finished(self, event):
        print("ITERATION", event.iteration, flush=True)

words = [f"w{i}" for i in range(16)]
result = gepetto.optimize(
    {"instructions": "Answer."}, keyword_dataset(words, copies=2), keyword_dataset(words),
    adapter=Slow(), reflection_lm=FeedbackFollowingLM(), max_metric_calls=BUDGET,
    storage=url, worker=name, max_concurrency=2, callbacks=[Announce()],
    display_progress_bar=False,
)
print("RESULT", json.dumps({"candidates": result.candidates, "calls": result.total_metric_calls,
                            "stop": result.stop_reason}), flush=True)
""".replace("BUDGET", str(BUDGET))


def start(tmp_path: Path, url: str, name: str) -> subprocess.Popen[str]:
    script = tmp_path / "worker.py"  # written once, before any worker starts
    return subprocess.Popen(
        [sys.executable, str(script), url, name, str(tmp_path / f"{name}.calls")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def executed_calls(tmp_path: Path, name: str) -> int:
    path = tmp_path / f"{name}.calls"
    return sum(int(line) for line in path.read_text().split()) if path.exists() else 0


def test_four_workers_share_one_run_and_survive_a_killed_worker(
    tmp_path: Path, postgres_url: str
) -> None:
    names = ["w1", "w2", "w3", "w4"]
    (tmp_path / "worker.py").write_text(WORKER)
    workers = {name: start(tmp_path, postgres_url, name) for name in names}
    victim = workers["w4"]
    assert victim.stdout is not None
    while True:  # let the victim do some work, then kill it without warning
        line = victim.stdout.readline()
        assert line, victim.stderr.read() if victim.stderr else "worker died early"
        if line.startswith("ITERATION"):
            break
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    results = {}
    for name in names[:3]:
        out, err = workers[name].communicate(timeout=180)
        assert workers[name].returncode == 0, err
        lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
        assert lines, f"{name} printed no result:\n{out[-2000:]}\n{err[-2000:]}"
        line = lines[0]
        results[name] = json.loads(line.removeprefix("RESULT "))

    from gepetto.storage.postgres import PostgresStorage

    storage = PostgresStorage(postgres_url)
    records = [record_from_dict(body) for _, body in storage.read("default")]
    used = storage.metric_calls_used("default")
    storage.close()

    # One budget, never exceeded; executed calls exceed it at most by the victim's lost work.
    assert used <= BUDGET
    executed = sum(executed_calls(tmp_path, name) for name in names)
    assert executed <= BUDGET + 2 * 16  # the killed worker's in-flight batches (at most 2)
    # One pool: no duplicate candidates, and every surviving worker sees all of it.
    candidates = [r for r in records if r.kind == "candidate"]
    assert len({c.content_hash for c in candidates}) == len(candidates)
    assert [c.id for c in candidates] == list(range(len(candidates)))
    pool = [dict(c.texts) for c in candidates]
    for result in results.values():  # each saw the whole pool as it was when it finished
        assert result["candidates"] == pool[: len(result["candidates"])]
    assert max(len(r["candidates"]) for r in results.values()) == len(pool)
    # The work was really shared: candidates came from iterations of several workers.
    worker_of = {r.iteration: r.worker for r in records if r.kind == "iteration"}
    contributors = Counter(worker_of.get(c.iteration) for c in candidates if c.iteration >= 0)
    assert len(contributors) >= 2, contributors
    # Replaying the journal gives a consistent state.
    state = RunState(16)
    for record in records:
        state.append(record)
    assert len(state.candidates) == len(pool)
    # No iteration number was handed out twice.
    iterations = [r.iteration for r in records if r.kind == "iteration"]
    assert len(iterations) == len(set(iterations))

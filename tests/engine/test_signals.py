"""SIGINT/SIGTERM on a real process: first finish cleanly, second stop at once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys, time
import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

class Slow(KeywordAdapter):
    def evaluate(self, batch, candidate, capture_traces=False):
        time.sleep(float(sys.argv[1]))
        return super().evaluate(batch, candidate, capture_traces)

class Announce:
    def on_iteration_finished(self, event):
        print("ITERATION", event.iteration, flush=True)

words = [f"w{i}" for i in range(40)]
result = gepetto.optimize(
    {"instructions": "Answer."}, keyword_dataset(words), keyword_dataset(words[:4]),
    adapter=Slow(), reflection_lm=FeedbackFollowingLM(), max_metric_calls=10_000,
    max_concurrency=1, callbacks=[Announce()], display_progress_bar=False,
)
print("RESULT", json.dumps({"stop": result.stop_reason, "n": result.num_candidates,
                            "iterations": result.num_iterations, "at": time.time()}), flush=True)
"""


def start(tmp_path: Path, delay: float) -> subprocess.Popen[str]:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(delay)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_iterations(process: subprocess.Popen[str], count: int) -> None:
    assert process.stdout is not None
    seen = 0
    while seen < count:
        line = process.stdout.readline()
        assert line, "the run ended before the signal was sent"
        seen += line.startswith("ITERATION")


def final_result(process: subprocess.Popen[str]) -> dict[str, object]:
    out, err = process.communicate(timeout=20)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result printed; stderr:\n{err}"
    data: dict[str, object] = json.loads(lines[-1].removeprefix("RESULT "))
    return data


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_finishes_cleanly_and_returns_best(
    tmp_path: Path, sig: signal.Signals
) -> None:
    process = start(tmp_path, delay=0.05)
    wait_for_iterations(process, 2)
    sent = time.monotonic()
    process.send_signal(sig)
    data = final_result(process)
    assert time.monotonic() - sent < 5
    assert process.returncode == 0
    assert data["stop"] == f"interrupted by {sig.name}"
    assert isinstance(data["iterations"], int) and data["iterations"] >= 2


def test_second_signal_stops_at_once(tmp_path: Path) -> None:
    process = start(tmp_path, delay=2.0)  # each evaluation takes 2 s
    wait_for_iterations(process, 1)
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    sent = time.time()
    process.send_signal(signal.SIGINT)
    data = final_result(process)
    returned_after = float(data["at"]) - sent  # type: ignore[arg-type]
    # The result is returned at once; the sleeping worker thread ends in the background.
    assert returned_after < 1.0, "the second signal must not wait for the evaluation"
    assert "interrupted twice" in str(data["stop"])

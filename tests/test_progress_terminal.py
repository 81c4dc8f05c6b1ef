"""The progress display in a real terminal (tmux), and its absence when not a TTY."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import time, gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

class Slow(KeywordAdapter):
    def evaluate(self, batch, candidate, capture_traces=False):
        time.sleep(0.2)
        return super().evaluate(batch, candidate, capture_traces)

words = [f"w{i}" for i in range(12)]
result = gepetto.optimize(
    {"instructions": "Answer."}, keyword_dataset(words), keyword_dataset(words[:6]),
    adapter=Slow(), reflection_lm=FeedbackFollowingLM(), max_metric_calls=60, max_concurrency=2,
)
print("DONE", result.total_metric_calls)
"""


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by .ci/run")
def test_progress_bar_in_a_real_terminal(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    session = f"gepetto-progress-{time.monotonic_ns()}"
    command = f"{sys.executable} {script}; sleep 60"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "20", command], check=True
    )
    try:
        screens = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            screens.append(screen)
            if "DONE" in screen:
                break
            time.sleep(0.3)
        final = screens[-1]
        assert "DONE" in final
        done = int(final.split("DONE")[1].split()[0])
        assert 0 < done <= 60
        assert "gepetto" in final and f"{done}/60" in final and "calls" in final
        assert "best" in final and "$0.00" in final
        # The bar was visible and moving before the end.
        assert any("calls" in s and "DONE" not in s for s in screens)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def test_no_progress_bar_when_not_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "DONE" in done.stdout
    assert "calls" not in done.stderr

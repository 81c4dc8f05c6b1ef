"""``gepetto optimize`` on a tiny ticket-routing task with the real local models."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gepetto.cli import ExitCode
from gepetto.runview import open_run, summary
from tests.cli.test_commands import _env, gepetto

pytestmark = [pytest.mark.llm, pytest.mark.slow]

DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


def _tiny_task(folder: Path) -> Path:
    """The example TOML task on 3 training and 3 validation tickets."""
    for split in ("train", "val"):
        lines = (DATA / f"tickets_{split}.jsonl").read_text().splitlines()[:3]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    task = folder / "task.toml"
    task.write_text(
        'seed_candidate = { instructions = "Read the customer message and tell me what it is '
        'about." }\n'
        'trainset = "train.jsonl"\n'
        'valset = "val.jsonl"\n'
        'evaluator = "gepetto.adapters:exact_match_evaluator()"\n'
        "[options]\n"
        "reflection_minibatch_size = 2\n"
        "reflection_lm_kwargs = { temperature = 0.7, max_tokens = 300 }\n"
    )
    return task


@pytest.mark.timeout(480)
def test_optimize_a_tiny_task_with_the_local_models(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "gepetto", "optimize", str(_tiny_task(tmp_path)),
        "--budget", "8",
        "--model", "local/qwen2.5-coder-0.5b",
        "--reflection-model", "local/qwen2.5-coder-1.5b",
        "--run-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        pytest.fail("gepetto optimize took over 360 s")
    finally:  # stop it as a user would (Ctrl-C), so its model servers stop too
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGINT)  # a second Ctrl-C stops at once
                process.wait(timeout=30)
    assert process.returncode == ExitCode.OK, err
    assert "stopped: " in out
    with open_run(tmp_path / "run") as view:
        head = summary(view)
        assert head.status == "finished" and head.budget_total == 8
        assert 3 <= head.budget_used <= 8  # the seed's 3 validation calls, then a step
        assert head.lm_calls["task"] >= 3
        reflections = view.state.reflections
    if head.budget_used > 5:  # the run got to a reflection: the 1.5B model answered
        assert head.lm_calls.get("reflection", 0) >= 1 and reflections
    shown = gepetto("status", tmp_path / "run", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["lm_calls"]["task"] == head.lm_calls["task"]

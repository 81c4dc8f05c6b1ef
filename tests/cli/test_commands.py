"""The ``gepetto`` command in real subprocesses, on a scripted task (no model needed).

Each test runs ``python -m gepetto ...`` as a user would, and checks the exit code of
docs/cli.md and what is printed: results on standard output, one line on standard error
for every refused input, never a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gepetto.cli import ExitCode
from gepetto.runview import open_run, summary
from gepetto.storage import SQLiteStorage

SRC = Path(__file__).resolve().parents[2] / "src"

SLOW_TASK = """
from gepetto.testing import AsyncKeywordAdapter, FeedbackFollowingLM, keyword_dataset

WORDS = ["w" + str(i) for i in range(12)]
seed_candidate = {"instructions": "Answer."}
trainset = keyword_dataset(WORDS)
valset = keyword_dataset(WORDS)
adapter = AsyncKeywordAdapter(delay=%(delay)s)
reflection_lm = FeedbackFollowingLM(words_per_call=1)
options = {"max_metric_calls": %(budget)s, "reflection_minibatch_size": 2}
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(SRC),
        HF_HUB_OFFLINE="1",
        DO_NOT_TRACK="1",
        ANONYMIZED_TELEMETRY="False",
        MLFLOW_DISABLE_TELEMETRY="true",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        COLUMNS="100",
    )
    env.pop("GEPETTO_TRACEBACK", None)
    return env


def gepetto(*args: object, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gepetto", *map(str, args)],
        check=False,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _task(folder: Path, *, delay: float = 0.0, budget: int = 60) -> Path:
    path = folder / "task.py"
    path.write_text(textwrap.dedent(SLOW_TASK % {"delay": delay, "budget": budget}))
    return path


def _one_error_line(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gepetto: error: ")
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of the scripted task (made once with ``gepetto optimize``)."""
    folder = tmp_path_factory.mktemp("cli")
    result = gepetto("optimize", _task(folder), "--run-dir", "runs/a", "-q", cwd=folder)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "best: candidate" in result.stdout and "runs/a" in result.stdout
    return folder / "runs" / "a"


def test_optimize_interrupt_resume(tmp_path: Path) -> None:
    task = _task(tmp_path, delay=0.15, budget=200)
    process = subprocess.Popen(
        [sys.executable, "-m", "gepetto", "optimize", str(task), "--run-dir", "run"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = tmp_path / "run"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the run has made its second candidate
        events = run / "events.jsonl"
        if events.exists() and '"candidate_id": 2' in events.read_text():
            break
        time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("the run made no candidate in 60 s")
    status = gepetto("status", run, "--json", cwd=tmp_path)
    assert json.loads(status.stdout)["status"] == "live"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "stopped: interrupted by SIGINT" in out
    assert "iteration" in err  # the log lines of the run went to standard error
    with open_run(run) as view:
        stopped = summary(view)
    assert stopped.status == "interrupted" and stopped.budget_used < 200

    resumed = gepetto("resume", run, "--budget", 220, "-q", cwd=tmp_path)
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert "resuming" in resumed.stdout
    with open_run(run) as view:
        after = summary(view)
    assert after.status == "finished" and after.budget_total == 220
    assert after.budget_used > stopped.budget_used
    assert after.pool_size > stopped.pool_size
    assert after.best_score is not None and stopped.best_score is not None
    assert after.best_score >= stopped.best_score


def test_status_show_export(done: Path) -> None:
    folder = done.parent.parent
    status = gepetto("status", done, cwd=folder)
    assert status.returncode == 0 and "status     finished: " in status.stdout
    with open_run(done) as view:
        head = summary(view)
    assert f"best       candidate {head.best_id}: {head.best_score:.4f}" in status.stdout

    shown = gepetto("show", done, 1, cwd=folder)
    assert shown.returncode == 0
    assert "--- diff to candidate 0: instructions ---" in shown.stdout
    assert "-Answer." in shown.stdout and "--- reflection prompt: instructions ---" in shown.stdout
    assert "--- reflection reply: instructions ---" in shown.stdout
    best = json.loads(gepetto("show", done, "--json", cwd=folder).stdout)
    assert best["id"] == head.best_id and best["role"] == "best"

    exported = json.loads(gepetto("export", done, cwd=folder).stdout)
    assert exported["candidate"] == dict(head.best_texts)
    assert exported["score"] == head.best_score
    text = gepetto("export", done, "--format", "text", cwd=folder).stdout
    assert text == head.best_texts["instructions"] + "\n"
    lines = gepetto("export", done, "--all", cwd=folder).stdout.splitlines()
    header = json.loads(lines[0])
    assert header["kind"] == "header" and header["records"] == len(lines) - 1
    assert json.loads(lines[-1])["seq"] == head.last_seq


def test_compare_and_report(done: Path, tmp_path: Path) -> None:
    other = gepetto("optimize", _task(tmp_path, budget=30), "--run-dir", "b", "-q", cwd=tmp_path)
    assert other.returncode == 0, other.stderr
    compared = gepetto("compare", done, tmp_path / "b", cwd=tmp_path)
    assert compared.returncode == 0
    assert "--- best A -> best B: instructions ---" in compared.stdout
    data = json.loads(gepetto("compare", done, tmp_path / "b", "--json", cwd=tmp_path).stdout)
    assert data["a_mean_shared"] > data["b_mean_shared"]

    report = gepetto("report", done, "-o", tmp_path / "report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    files = [Path(line) for line in report.stdout.splitlines()]
    names = {path.name for path in files}
    assert {"report.html", "progress_calls.png", "front.png", "lineage.png"} <= names
    for path in files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(files) - 1
    assert "http://" not in page and "https://" not in page  # nothing loaded from anywhere


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _one_error_line(gepetto("status", tmp_path / "nope", cwd=tmp_path), 2, "does not exist")
    _one_error_line(gepetto("status", tmp_path, cwd=tmp_path), 2, "is not a run")
    _one_error_line(gepetto("optimize", tmp_path / "missing.py", cwd=tmp_path), 2, "does not exist")
    _one_error_line(gepetto("status", tmp_path, "--colour", cwd=tmp_path), 2, "--colour")
    _one_error_line(gepetto("frobnicate", cwd=tmp_path), 2, "frobnicate")
    bad = tmp_path / "bad.py"
    bad.write_text(_task(tmp_path).read_text().replace("reflection_minibatch_size", "minibath"))
    _one_error_line(
        gepetto("optimize", bad, "--run-dir", "x", cwd=tmp_path), 2, "'minibath' is not"
    )
    assert not (tmp_path / "x").exists()  # refused before anything was made
    broken = tmp_path / "broken.py"
    broken.write_text("seed_candidate = {'a': 'b'}\nraise ValueError('no data here')\n")
    _one_error_line(gepetto("optimize", broken, cwd=tmp_path), 2, "ValueError: no data here")
    _one_error_line(gepetto("optimize", _task(tmp_path), "--budget", "0", cwd=tmp_path), 2)
    toml = tmp_path / "task.toml"
    toml.write_text('seed_candidate = { a = "b" }\ntrainset = "nowhere.jsonl"\n')
    _one_error_line(gepetto("optimize", toml, cwd=tmp_path), 2, "cannot be read")


def test_damaged_journals_exit_3(done: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "journal.sqlite").write_bytes(b"this is not a database " * 100)
    _one_error_line(gepetto("status", garbage, cwd=tmp_path), 3, "journal.sqlite")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "journal.sqlite").write_bytes((done / "journal.sqlite").read_bytes())
    with sqlite3.connect(damaged / "journal.sqlite") as db:
        db.execute("UPDATE records SET body = '{not json' WHERE seq = 3")
    _one_error_line(gepetto("show", damaged, cwd=tmp_path), 3, "record 3")
    _one_error_line(gepetto("report", damaged, cwd=tmp_path), 3, "damaged")


def test_a_run_held_by_another_process_exits_4(tmp_path: Path) -> None:
    first = gepetto("optimize", _task(tmp_path, budget=20), "--run-dir", "r", "-q", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    holder = SQLiteStorage(tmp_path / "r" / "journal.sqlite")
    held = holder.lock_run("default")
    try:
        result = gepetto("resume", tmp_path / "r", "--budget", 40, "-q", cwd=tmp_path)
    finally:
        held.release()
        holder.close()
    assert result.returncode == ExitCode.RUN_IN_USE, result.stderr
    assert "Traceback" not in result.stderr and "gepetto: error:" in result.stderr


def test_dashboard_port_in_use_exits_5(done: Path, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = gepetto("dashboard", done, "--port", port, cwd=tmp_path)
    _one_error_line(result, 5, f"port {port}", "in use")
    _one_error_line(gepetto("dashboard", tmp_path, cwd=tmp_path), 2, "is not a run")


def test_help_and_models(tmp_path: Path) -> None:
    top = gepetto("--help", cwd=tmp_path)
    assert top.returncode == 0 and "Exit codes:" in top.stdout
    assert "gepetto optimize examples/task_keywords.py" in top.stdout
    for command in ("optimize", "resume", "status", "show", "export", "compare", "report"):
        page = gepetto(command, "--help", cwd=tmp_path)
        assert page.returncode == 0 and "Example" in page.stdout, command
    resolved = gepetto("models", "--resolve", "openai/gpt-4.1-mini", "--json", cwd=tmp_path)
    data = json.loads(resolved.stdout)
    assert data["provider"] == "openai" and data["endpoint"] == "https://api.openai.com/v1"
    assert data["key_variables"][0]["name"] == "OPENAI_API_KEY"
    _one_error_line(gepetto("models", "--resolve", "opnai/x", cwd=tmp_path), 2, "'openai'")


def test_a_key_is_never_printed(tmp_path: Path) -> None:
    env_key = "sk-test-" + "9" * 24
    result = subprocess.run(
        [sys.executable, "-m", "gepetto", "models", "--resolve", "openai/gpt-4.1", "--json"],
        check=False,
        cwd=tmp_path,
        env={**_env(), "OPENAI_API_KEY": env_key, "OPENAI_BASE_URL": "https://u:pw@h.test/v1?k=s"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert env_key not in result.stdout and "pw" not in result.stdout and "k=s" not in result.stdout
    data = json.loads(result.stdout)
    assert data["key_variables"] == [{"name": "OPENAI_API_KEY", "set": True}]


def test_a_failing_adapter_exits_1(tmp_path: Path) -> None:
    task = tmp_path / "failing.py"
    task.write_text(
        textwrap.dedent(
            """
            from gepetto.testing import FeedbackFollowingLM, FlakyAdapter, KeywordAdapter

            seed_candidate = {"instructions": "Answer."}
            trainset = [{"needs": "alpha"}, {"needs": "beta"}]
            adapter = FlakyAdapter(KeywordAdapter(), lambda example: True)
            reflection_lm = FeedbackFollowingLM()
            options = {"max_metric_calls": 10}
            """
        )
    )
    result = gepetto("optimize", task, "--run-dir", "f", "-q", cwd=tmp_path)
    _one_error_line(result, 1, "boom")

"""A key in a base URL is sent where it must go and stored or shown nowhere.

Regression: with ``OPENAI_BASE_URL=http://127.0.0.1:PORT/v1?key=sk-...`` (or a user-info
``http://user:sk-...@host/v1``, or ``base_url=`` given in code) the secret was written to the
journal, ``events.jsonl``, the Result JSON and the log (and the SDK mangled the request path).
These runs are real optimizations against the local fault server, with faults whose error
messages name the endpoint or echo the secret; afterwards every file of the run directory,
the Result JSON, every event and the captured log lines (all loggers, DEBUG) are searched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gepetto
from tests.lm.isolation import isolate_from_providers

from .fault_server import FaultServer, ok, status

QUERY_SECRET = "sk-query-SECRET-7f3a9c"
USER_SECRET = "sk-userinfo-SECRET-2b8e4d"
DATA = [{"input": f"question {i}", "answer": "yes"} for i in range(3)]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_from_providers(monkeypatch)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    script = [
        status(500, message="upstream failed"),
        status(404, message=f"Invalid URL (POST /v1/chat/completions?key={QUERY_SECRET})"),
        status(503),
    ]
    with FaultServer(*script, *[ok("```\nno\n```")] * 400) as fault_server:
        yield fault_server


def run_and_collect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, **options: Any
) -> tuple[gepetto.Result, str]:
    """Run an optimization in ``tmp_path/run``; return it and everything it left behind."""
    events: list[Any] = []
    caplog.set_level(logging.DEBUG)
    result = gepetto.optimize(
        {"instructions": "Answer."},
        DATA,
        task_lm="openai/gpt-4.1-mini",
        max_metric_calls=9,
        run_dir=tmp_path / "run",
        callbacks=[events.append],
        display_progress_bar=False,
        reflection_retries=0,
        **options,
    )
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "events.jsonl" for p in files)
    assert any(p.name.startswith("journal") for p in files)
    stored = b"\n".join(p.read_bytes() for p in files).decode("utf-8", "replace")
    shown = [
        stored,
        json.dumps(result.to_dict()),
        str(result.stop_reason),
        caplog.text,
        *(repr(e) for e in events),
        *(json.dumps(dataclasses.asdict(e), default=str) for e in events),
    ]
    assert any("lm_call" in text or "LMCallFinished" in text for text in shown)
    return result, "\n".join(shown)


def assert_sent_not_shown(server: FaultServer, everything: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in everything
    assert server.requests, "the run made no request"
    for request in server.requests:
        assert request.path == f"/v1/chat/completions?key={QUERY_SECRET}"


def test_a_key_in_the_query_of_openai_base_url_is_sent_but_never_stored(
    server: FaultServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.openai_base_url}?key={QUERY_SECRET}")
    result, everything = run_and_collect(tmp_path, caplog, reflection_lm="openai/gpt-4.1-mini")
    assert_sent_not_shown(server, everything, QUERY_SECRET)
    assert "?***" in everything  # the endpoint is still named, redacted
    assert result.lm_usage["task"]["faults"]  # the faults (and their messages) were recorded


def test_user_info_and_an_explicit_base_url_are_never_stored(
    server: FaultServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_user = f"http://user:{USER_SECRET}@127.0.0.1:{server.port}/v1?key={QUERY_SECRET}"
    monkeypatch.setenv("OPENAI_BASE_URL", with_user)
    _, everything = run_and_collect(
        tmp_path,
        caplog,
        reflection_lm="openai/gpt-4.1-mini",
        reflection_lm_kwargs={"base_url": with_user, "api_key": "sk-explicit-SECRET-91c"},
    )
    assert_sent_not_shown(server, everything, QUERY_SECRET, USER_SECRET, "sk-explicit-SECRET-91c")

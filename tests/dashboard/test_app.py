"""The dashboard's server over real HTTP on 127.0.0.1: what it serves, what it refuses, what it
never shows, and the errors that stop it from starting."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.dashboard import DashboardError, DashboardServer, PortInUse, SourceError
from gepetto.dashboard._followed import FollowedRun
from gepetto.dashboard._server import bind
from gepetto.dashboard._sources import open_run_store
from gepetto.storage import SQLiteStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter
from tests.dashboard.conftest import LiveRun


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, body
    return json.loads(body)


def test_every_view_of_a_finished_run(finished_run: Path) -> None:
    with DashboardServer([str(finished_run)], port=0) as server:
        runs = get_json(server.url + "api/runs")["runs"]
        assert [(r["key"], r["status"]) for r in runs] == [("default", "finished")]
        base = server.url + "api/runs/default/"
        summary = get_json(base + "summary")
        assert summary["pool_size"] == runs[0]["candidates"] > 1
        assert summary["best_score"] > 0 and summary["last_decisions"]
        points = get_json(base + "progress")["points"]
        assert [p["best_score"] for p in points] == sorted(p["best_score"] for p in points)
        matrix = get_json(base + "matrix")
        assert len(matrix["scores"]) == summary["pool_size"]
        assert {len(row) for row in matrix["scores"]} == {10}
        lineage = get_json(base + "lineage")
        assert len(lineage["nodes"]) == summary["pool_size"]
        assert {d["outcome"] for d in lineage["decisions"]} >= {"accepted"}
        best = get_json(base + f"candidates/{summary['best_id']}")
        parent = str(best["parents"][0])
        assert "+Answer." in best["diffs"][parent]["instructions"]
        assert best["reflection"]["prompts"]["instructions"].startswith("Improve")
        assert get(base + "candidates/999")[0] == 404
        assert get(server.url + "api/runs/nope/summary")[0] == 404
        status, headers, body = get(server.url)
        assert status == 200 and b"static/app.js" in body
        assert "default-src 'self'" in headers["content-security-policy"]


def test_only_get_is_served(finished_run: Path) -> None:
    with DashboardServer([str(finished_run)], port=0) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            request = urllib.request.Request(server.url + "api/runs", data=b"{}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 405, method


def test_a_foreign_host_name_is_refused(finished_run: Path) -> None:
    """A page of another site that resolves its own name to 127.0.0.1 (DNS rebinding)
    cannot read the runs."""
    with DashboardServer([str(finished_run)], port=0) as server:
        assert get(server.url + "api/runs", Host="evil.example")[0] == 400
        assert get(server.url + "api/runs", Host=f"localhost:{server.port}")[0] == 200


def test_the_store_is_opened_read_only(finished_run: Path) -> None:
    journal = finished_run / "journal.sqlite"
    store = open_run_store(str(finished_run))
    try:
        with pytest.raises(gepetto.GepettoError, match="read-only"):
            store.storage.append("default", [{"kind": "decision"}])
        raw = store.storage._db  # type: ignore[attr-defined]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            raw.execute("DELETE FROM records")
    finally:
        store.close()
    assert SQLiteStorage(journal).read("default")  # nothing was lost


def test_secrets_never_reach_the_page(tmp_path: Path) -> None:
    key = "sk-proj-" + "A1b2C3d4" * 5
    url = "https://user:hunter22@api.example.com/v1?api_key=abcdef123456"
    gepetto.optimize(
        {"instructions": f"Answer. Use {key} at {url}"},
        [{"needs": "w1"}] * 2,
        [{"needs": "w1"}],
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=20,
        run_dir=tmp_path / "run",
        display_progress_bar=False,
    )
    with DashboardServer([str(tmp_path / "run")], port=0) as server:
        bodies = [
            get(server.url + f"api/runs/default/{name}")[2]
            for name in ("summary", "lineage", "candidates/0", "candidates/1", "matrix")
        ]
    text = b"".join(bodies).decode()
    assert "Answer. Use" in text
    assert key not in text and "hunter22" not in text and "abcdef123456" not in text
    assert "https://***@api.example.com/v1?***" in text


def test_a_path_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        DashboardServer([str(tmp_path / "missing")], port=0)
    assert not (tmp_path / "missing").exists(), "nothing was created"
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"holds no journal\.sqlite"):
        DashboardServer([str(tmp_path / "empty")], port=0)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is no database at all" * 100)
    with pytest.raises(SourceError, match="not a readable gepetto journal"):
        DashboardServer([str(text)], port=0)
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE things (x)")
    with pytest.raises(SourceError, match="not a gepetto journal"):
        DashboardServer([str(other)], port=0)
    with pytest.raises(SourceError, match="not a run store"):
        DashboardServer(["http://example.com/run"], port=0)


def test_a_damaged_journal_is_a_clear_error(finished_run: Path) -> None:
    journal = finished_run / "journal.sqlite"
    with sqlite3.connect(journal) as db:
        db.execute('UPDATE records SET body = \'{"kind": "cand\' WHERE seq = 3')
    with pytest.raises(SourceError, match=r"record 3 of run 'default' .* is damaged") as error:
        DashboardServer([str(finished_run)], port=0)
    assert "\n" not in str(error.value)
    empty = finished_run.parent / "zero" / "journal.sqlite"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty"):
        DashboardServer([str(empty.parent)], port=0)


def test_a_port_in_use_is_a_clear_error(finished_run: Path) -> None:
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            DashboardServer([str(finished_run)], port=port)
    finally:
        taken.close()
    with pytest.raises(DashboardError, match="not a port number"):
        DashboardServer([str(finished_run)], port=70000)


def test_serve_prints_its_url_blocks_and_stops_on_ctrl_c(finished_run: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = f"from gepetto.dashboard import serve; serve([{str(finished_run)!r}], port={port})"
    server = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(gepetto.__file__).parents[1])},
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        assert get_json(f"http://127.0.0.1:{port}/api/runs")["runs"]
        live = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/live?run=default", timeout=10)
        assert live.readline()  # a page stays connected while the server stops
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=20)
    finally:
        server.kill()
    assert server.returncode == 0, errors
    assert "Traceback" not in errors, errors


def test_several_sources_and_the_comparison(tmp_path: Path, finished_run: Path) -> None:
    second = tmp_path / "second"
    gepetto.optimize(
        {"instructions": "Reply."},
        [{"needs": "w1"}, {"needs": "w2"}] * 2,
        [{"needs": "w1"}, {"needs": "w2"}],
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=30,
        run_dir=second,
        display_progress_bar=False,
    )
    with DashboardServer(
        [str(finished_run), f"sqlite:///{second}/journal.sqlite"], port=0
    ) as server:
        keys = [r["key"] for r in get_json(server.url + "api/runs")["runs"]]
        assert keys == ["1.default", "2.default"]
        compared = get_json(server.url + "api/compare?a=1.default&b=2.default")
        assert compared["a"]["best_texts"]["instructions"].startswith("Answer.")
        assert compared["b"]["best_texts"]["instructions"].startswith("Reply.")
        assert "instructions" in compared["best_diffs"]
        assert get(server.url + "api/compare?a=1.default&b=nope")[0] == 404


def read_events(url: str, until: Any, timeout: float = 20) -> list[tuple[str, Any]]:
    """Server-sent events from ``url`` until ``until(events)`` holds."""
    events: list[tuple[str, Any]] = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        name = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: ") and name:
                events.append((name, json.loads(line.removeprefix("data: "))))
                if until(events):
                    return events
    raise AssertionError(f"timed out; events: {events[-5:]}")


def test_the_live_channel_follows_a_run_in_progress(tmp_path: Path) -> None:
    run = LiveRun(tmp_path / "live", chunk_delay=0.05)
    try:
        run.wait_for_candidates(1)
        with DashboardServer([str(run.run_dir)], port=0, poll_interval=0.1) as server:
            live = server.url + "api/live?run=default"
            first = read_events(live, lambda events: any(n == "update" for n, _ in events))
            start_seq = next(data["seq"] for name, data in first if name == "update")
            assert next(data for name, data in first if name == "update")["running"] is True
            run.allow(1)

            def grew_and_moved(events: list[tuple[str, Any]]) -> bool:
                texts = [d["text"] for n, d in events if n == "reflection" and d["text"]]
                moved = [d["seq"] for n, d in events if n == "update" and d["seq"] > start_seq]
                return (
                    len(set(texts)) >= 3
                    and any(d["done"] for n, d in events if n == "reflection")
                    and bool(moved)
                )

            events = read_events(live, grew_and_moved)
            texts = [d["text"] for n, d in events if n == "reflection" and d["text"]]
            assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
            assert texts[-1].startswith("Reading the feedback") and "```" in texts[-1]
            run.wait_for_candidates(2)
            summary = get_json(server.url + "api/runs/default/summary")
            deadline = time.monotonic() + 5
            while summary["pool_size"] < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
                summary = get_json(server.url + "api/runs/default/summary")
            assert summary["pool_size"] >= 2
    finally:
        run.finish()


def test_streamed_pieces_make_one_text_per_call(finished_run: Path) -> None:
    """The contract of ReflectionStreamed: ``seq`` 0 starts a call's text over (a retried
    attempt), ``discarded`` voids it, another ``(iteration, stream)`` is another call."""
    storage = SQLiteStorage(finished_run / "journal.sqlite")

    def piece(seq: int, text: str, **extra: Any) -> dict[str, Any]:
        return {
            "kind": "reflection_stream",
            "iteration": 7,
            "components": ["instructions"],
            "seq": seq,
            "text": text,
            "done": False,
            "stream": 0,
            **extra,
        }

    try:
        storage.append("default", [piece(0, "Hel"), piece(1, "lo")])
        store = open_run_store(str(finished_run))
        view = FollowedRun(store, "default")
        assert view.streamed_reflection()["text"] == "Hello"
        storage.append("default", [piece(2, "", done=True, discarded=True)])
        view.refresh()
        assert view.streamed_reflection()["discarded"] is True
        storage.append("default", [piece(0, "Again"), piece(1, "!", done=True)])
        view.refresh()
        shown = view.streamed_reflection()
        assert (shown["text"], shown["done"], shown["discarded"]) == ("Again!", True, False)
        storage.append("default", [piece(0, "Other", stream=1)])
        view.refresh()
        assert (view.streamed_reflection()["stream"], view.streamed_reflection()["text"]) == (
            1,
            "Other",
        )
        assert view.streamed_reflection()["streams"] == 2
        store.close()
    finally:
        storage.close()


def test_every_asset_ships_in_the_package_and_loads_nothing_from_elsewhere() -> None:
    static = resources.files("gepetto.dashboard") / "static"
    names = sorted(entry.name for entry in static.iterdir())
    assert names == ["app.js", "charts.js", "favicon.svg", "index.html", "style.css"]
    for name in names:
        text = (static / name).read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[a-z]{2,}[^\s\"')]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
        assert "@import" not in text and "cdn" not in text.lower(), name


@pytest.mark.slow
@pytest.mark.postgres
def test_a_postgresql_store_with_several_runs(postgres_url: str) -> None:
    for run_id, words in (("first", ["w1"]), ("second", ["w1", "w2"])):
        gepetto.optimize(
            {"instructions": "Answer."},
            [{"needs": w} for w in words] * 2,
            [{"needs": w} for w in words],
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=24,
            storage=postgres_url,
            run_id=run_id,
            display_progress_bar=False,
        )
    with DashboardServer([postgres_url], port=0) as server:
        runs = get_json(server.url + "api/runs")["runs"]
        assert [r["key"] for r in runs] == ["first", "second"]
        assert all(r["candidates"] >= 2 for r in runs)
        assert runs[0]["source"].startswith("postgresql://***@127.0.0.1:")  # user, options hidden
        summary = get_json(server.url + "api/runs/second/summary")
        assert summary["best_score"] == 1.0
        store = server.dashboard.stores[0]
        with pytest.raises(gepetto.GepettoError, match="read-only"):
            store.storage.append("first", [{"kind": "decision"}])
        import psycopg

        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            store.storage._conn.execute("DELETE FROM records")  # type: ignore[attr-defined]

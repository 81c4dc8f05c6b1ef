"""WandbTracker: a real offline W&B run checked through the files W&B writes, plus fakes.

The real run uses ``WANDB_MODE=offline`` with every W&B directory under ``tmp_path`` and no
API key. Network use is watched twice: Python sockets may only reach loopback or Unix
sockets (W&B's Python side talks to its local ``wandb-core`` service process), and
``WANDB_BASE_URL`` and the HTTP(S) proxy variables point at a local sentinel port that must
see no connection (that covers the ``wandb-core`` process too, whose sockets Python does not
see).

W&B 0.31 writes no ``files/wandb-summary.json`` for an offline run and has no public reader
of its ``.wandb`` log, so the test reads the log itself: LevelDB log framing (32 KiB blocks,
7-byte chunk headers) of ``wandb.proto.wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import ipaddress
import json
import select
import socket
import struct
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
SEED = {"instructions": "Answer."}


def run_optimization(callbacks: list[object] | None = None) -> gepetto.Result:
    return gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        display_progress_bar=False,
        callbacks=callbacks,
    )


# ----- no network -------------------------------------------------------------------------


class Sentinel:
    """A loopback TCP port that counts the connections it receives."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.connections: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._server], [], [], 0.05)
            if ready:
                conn, address = self._server.accept()
                self.connections.append(address)
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()


def _is_local(family: int, address: Any) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if family not in (socket.AF_INET, socket.AF_INET6):
        return True  # netlink and friends: not network traffic
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Python sockets may only connect to loopback or Unix sockets; returns the attempts."""
    attempts: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if not _is_local(self.family, address):
            attempts.append(address)
            raise OSError(f"test forbids network: connect to {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _is_local(self.family, address):
            attempts.append(address)
            raise OSError(f"test forbids network: connect to {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1", b"localhost"):
            attempts.append(("getaddrinfo", host))
            raise OSError(f"test forbids network: DNS lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


@pytest.fixture
def offline_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[Any]
) -> Iterator[Sentinel]:
    """Offline W&B with all its directories under ``tmp_path``, no key, a sentinel server."""
    pytest.importorskip("wandb")
    sentinel = Sentinel()
    url = f"http://127.0.0.1:{sentinel.port}"
    for name in ("WANDB_API_KEY", "WANDB_ENTITY", "WANDB_RUN_ID", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "WANDB_BASE_URL": url,
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield sentinel
    finally:
        sentinel.close()


# ----- reading the offline run directory -------------------------------------------------

_BLOCK = 32 * 1024
_HEADER = 7  # crc32 (4), length (2), chunk type (1)
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """The records of a ``.wandb`` transaction log (LevelDB log framing, W&B header)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"not a W&B transaction log: {data[:7]!r}"
    payloads: list[bytes] = []
    pending = b""
    pos = 7
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:
            pos += left_in_block  # block trailer padding
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left_in_block  # zero padding up to the next block
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            payloads.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            payloads.append(pending + chunk)
            pending = b""
    records = []
    for payload in payloads:
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(payload)
        records.append(record)
    return records


def _item_key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def history_rows(records: list[Any]) -> list[dict[str, Any]]:
    return [
        {_item_key(i): json.loads(i.value_json) for i in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]


def final_summary(records: list[Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                summary[_item_key(item)] = json.loads(item.value_json)
    return summary


def run_config(records: list[Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for record in records:
        kind = record.WhichOneof("record_type")
        updates = record.run.config.update if kind == "run" else ()
        updates = record.config.update if kind == "config" else updates
        for item in updates:
            config[_item_key(item)] = json.loads(item.value_json)
    return config


def artifact_files(records: list[Any]) -> dict[str, Any]:
    """``{name: parsed JSON}`` of the gepetto-result artifact, from its staged files."""
    artifacts = [
        r.artifact
        for r in records
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "gepetto-result"
    ]
    assert len(artifacts) == 1
    return {
        entry.path: json.loads(Path(entry.local_path).read_text(encoding="utf-8"))
        for entry in artifacts[0].manifest.contents
    }


# ----- the real offline run --------------------------------------------------------------


def test_offline_run_files_hold_the_result(
    tmp_path: Path, offline_wandb: Sentinel, no_network: list[Any]
) -> None:
    import wandb

    from gepetto.observe.wandb import WandbTracker

    tracker = WandbTracker(run_name="keyword-test", dir=tmp_path, mode="offline")
    result = run_optimization([tracker])
    assert wandb.run is None  # the tracker finished the run it started
    wandb.teardown()  # stops the service process, which completes the run's files

    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1, run_dirs
    logs = list(run_dirs[0].glob("run-*.wandb"))
    assert len(logs) == 1
    records = read_records(logs[0])
    kinds = {r.WhichOneof("record_type") for r in records}
    assert {"run", "history", "summary", "artifact", "exit"} <= kinds  # finished cleanly

    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.project == "gepetto"
    assert run_record.display_name == "keyword-test"
    config = run_config(records)
    assert config["seed"] == 0
    assert config["max_metric_calls"] == 60
    assert config["valset_size"] == len(WORDS)
    assert config["components"] == ["instructions"]

    # History: one row per finished iteration (step = iteration), then the final row (at
    # the step of the last iteration started: it may have been cut short by the budget).
    rows = history_rows(records)
    iteration_rows = [row for row in rows if "front_size" in row]
    assert [row["_step"] for row in iteration_rows] == list(range(result.num_iterations))
    best = [row["best_score"] for row in iteration_rows]
    assert best == sorted(best)
    assert all(row["cost_usd"] == 0 for row in iteration_rows)
    final = rows[-1]
    assert final["_step"] >= result.num_iterations - 1
    assert final["best_score"] == result.best_score
    assert final["metric_calls"] == result.total_metric_calls
    assert final["pool_size"] == result.num_candidates
    assert final["best_candidate/_type"] == "table-file"
    table = json.loads((run_dirs[0] / "files" / final["best_candidate/path"]).read_text())
    assert table["columns"] == ["component", "text"]
    assert table["data"] == [[k, v] for k, v in result.best_candidate.items()]
    # One candidate value per step (the seed shares step 0 with iteration 0's candidate);
    # the ``candidates`` table at the end has them all.
    logged_scores = {
        row["candidate/id"]: row["candidate/val_score"] for row in rows if "candidate/id" in row
    }
    assert logged_scores.items() <= dict(enumerate(result.val_aggregate_scores)).items()
    assert max(logged_scores) == result.num_candidates - 1
    table = json.loads((run_dirs[0] / "files" / final["candidates/path"]).read_text())
    assert [row[0] for row in table["data"]] == list(range(result.num_candidates))
    assert [row[2] for row in table["data"]] == result.val_aggregate_scores
    assert [row[5] for row in table["data"]] == [c["instructions"] for c in result.candidates]

    # Summary: the final numbers of the Result.
    summary = final_summary(records)
    assert summary["best_score"] == result.best_score
    assert summary["metric_calls"] == result.total_metric_calls
    assert summary["best_id"] == result.best_idx
    assert summary["seed_score"] == result.seed_score
    assert summary["iterations"] == result.num_iterations
    assert summary["num_candidates"] == result.num_candidates
    assert summary["stop_reason"] == result.stop_reason
    assert summary["cost_usd"] == 0
    summary_file = run_dirs[0] / "files" / "wandb-summary.json"
    if summary_file.exists():  # written by other wandb versions, not by 0.31 offline
        on_disk = json.loads(summary_file.read_text(encoding="utf-8"))
        assert on_disk["best_score"] == result.best_score
        assert on_disk["metric_calls"] == result.total_metric_calls

    # Artifact: best_candidate.json and result.json, equal to the Result.
    files = artifact_files(records)
    assert files["result.json"] == result.to_dict()
    assert files["best_candidate.json"] == result.best_candidate
    assert gepetto.Result.from_dict(files["result.json"]).best_score == result.best_score

    # Nothing left the machine.
    assert no_network == []
    assert offline_wandb.connections == []


# ----- fakes: failures, attaching, the missing package ---------------------------------


class FakeArtifact:
    def __init__(self, name: str, type: str, **kwargs: Any) -> None:
        self.name, self.type, self.kwargs = name, type, kwargs
        self.files: dict[str, str] = {}

    @contextmanager
    def new_file(self, name: str, mode: str = "x", encoding: str | None = None) -> Iterator[Any]:
        import io

        buffer = io.StringIO()
        yield buffer
        self.files[name] = buffer.getvalue()


class FakeRun:
    def __init__(self, fail_on_log: bool = False) -> None:
        self.id = "fake123"
        self.config_updates: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.logged: list[tuple[dict[str, Any], int | None]] = []
        self.artifacts: list[FakeArtifact] = []
        self.finished = 0
        self.fail_on_log = fail_on_log
        self.config = types.SimpleNamespace(
            update=lambda values, allow_val_change=False: self.config_updates.append(values)
        )

    def define_metric(self, name: str, step_metric: str | None = None) -> None:
        pass

    def log(self, data: dict[str, Any], step: int | None = None, commit: Any = None) -> None:
        if self.fail_on_log:
            raise RuntimeError("W&B is down")
        self.logged.append((data, step))

    def log_artifact(self, artifact: FakeArtifact) -> None:
        self.artifacts.append(artifact)

    def finish(self) -> None:
        self.finished += 1


def fake_wandb(
    active: FakeRun | None = None, *, init_error: bool = False, fail_on_log: bool = False
) -> types.SimpleNamespace:
    module = types.SimpleNamespace(run=active, inits=[], Artifact=FakeArtifact)
    module.Table = lambda columns, data: {"columns": columns, "data": data}

    def init(**kwargs: Any) -> FakeRun:
        if init_error:
            raise RuntimeError("wandb.init failed")
        module.inits.append(kwargs)
        run = FakeRun(fail_on_log=fail_on_log)
        module.created = run
        return run

    module.init = init
    return module


@pytest.mark.parametrize("failure", ["init", "log"])
def test_a_failing_tracker_does_not_change_the_result(
    monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    from gepetto.observe.wandb import WandbTracker

    baseline = run_optimization()
    module = fake_wandb(init_error=failure == "init", fail_on_log=failure == "log")
    monkeypatch.setitem(sys.modules, "wandb", module)
    tracker = WandbTracker(mode="offline")
    assert run_optimization([tracker]).to_dict() == baseline.to_dict()


def test_fake_run_gets_steps_summary_artifact_and_is_finished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gepetto.observe.wandb import WandbTracker

    module = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", module)
    tracker = WandbTracker("proj", "name", mode="offline", init_kwargs={"tags": ["t"]})
    result = run_optimization([tracker])

    (kwargs,) = module.inits
    assert kwargs["project"] == "proj"
    assert kwargs["name"] == "name"
    assert kwargs["mode"] == "offline"
    assert kwargs["tags"] == ["t"]
    assert kwargs["config"]["seed"] == 0
    assert "reinit" not in kwargs
    run = module.created
    steps = [step for _, step in run.logged]
    assert steps == sorted(steps)
    assert steps[-1] >= result.num_iterations - 1
    assert run.summary["best_score"] == result.best_score
    assert run.summary["metric_calls"] == result.total_metric_calls
    (artifact,) = run.artifacts
    assert artifact.type == "gepetto-result"
    assert json.loads(artifact.files["result.json"]) == result.to_dict()
    assert json.loads(artifact.files["best_candidate.json"]) == result.best_candidate
    assert run.finished == 1
    tracker.finish()
    assert run.finished == 1  # idempotent


def test_attach_to_active_run_neither_starts_nor_finishes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gepetto.observe.wandb import WandbTracker

    active = FakeRun()
    module = fake_wandb(active)
    monkeypatch.setitem(sys.modules, "wandb", module)
    tracker = WandbTracker(attach_to_active_run=True, key_prefix="gepetto/")
    result = run_optimization([tracker])

    assert module.inits == []
    assert active.finished == 0
    assert all(step is None for _, step in active.logged)  # the user's step counter rules
    assert all(key.startswith("gepetto/") for data, _ in active.logged for key in data)
    assert active.config_updates[0]["gepetto/seed"] == 0
    assert active.summary["gepetto/best_score"] == result.best_score
    assert active.artifacts[0].name == "gepetto-gepetto-result-fake123"


def test_a_second_run_leaves_the_active_run_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from gepetto.observe.wandb import WandbTracker

    active = FakeRun()
    module = fake_wandb(active)
    monkeypatch.setitem(sys.modules, "wandb", module)
    run_optimization([WandbTracker()])
    assert module.inits[0]["reinit"] == "create_new"
    assert active.logged == []
    assert active.finished == 0


def test_missing_wandb_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from gepetto.observe.wandb import WandbTracker

    monkeypatch.setitem(sys.modules, "wandb", None)  # makes ``import wandb`` fail
    with pytest.raises(ConfigError, match=r"pip install 'gepetto\[wandb\]'"):
        WandbTracker()


# ----- gepa's flat keywords: use_wandb and its options ------------------------------------

SECRET_KEY = "0123456789abcdef0123456789abcdef01234567"


def test_use_wandb_keywords_attach_a_tracker_and_keep_the_key_secret(
    tmp_path: Path,
    offline_wandb: Sentinel,
    no_network: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import wandb

    caplog.set_level("DEBUG")
    run_dir = tmp_path / "run"
    result = gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        display_progress_bar=False,
        run_dir=run_dir,
        use_wandb=True,
        wandb_api_key=SECRET_KEY,
        wandb_init_kwargs={"name": "from-keywords", "dir": str(tmp_path)},
        tracking_key_prefix="gepa/",
    )
    assert wandb.run is None  # the tracker finished the run it started
    wandb.teardown()
    (run_path,) = sorted((tmp_path / "wandb").glob("offline-run-*"))
    (log,) = run_path.glob("run-*.wandb")
    records = read_records(log)
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.display_name == "from-keywords"
    config = run_config(records)
    assert config["gepa/seed"] == 0  # tracking_key_prefix prefixes every key
    assert final_summary(records)["gepa/best_score"] == result.best_score
    # The API key is a secret: not in the journal, the event log or any log line.
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path
    assert SECRET_KEY not in caplog.text
    assert SECRET_KEY not in repr(gepetto.TrackingConfig(wandb_api_key=SECRET_KEY))
    assert no_network == []
    assert offline_wandb.connections == []


def test_wandb_api_key_goes_to_wandb_init_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    module = fake_wandb()
    module.Settings = types.SimpleNamespace
    monkeypatch.setitem(sys.modules, "wandb", module)
    active = FakeRun()
    gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=30,
        display_progress_bar=False,
        use_wandb=True,
        wandb_api_key=SECRET_KEY,
        wandb_init_kwargs={"tags": ["t"]},
    )
    (kwargs,) = module.inits
    assert kwargs["settings"].api_key == SECRET_KEY
    assert kwargs["tags"] == ["t"]
    # wandb_attach_existing: an active run is logged into, neither started nor finished.
    module.run = active
    gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=30,
        display_progress_bar=False,
        use_wandb=True,
        wandb_attach_existing=True,
    )
    assert len(module.inits) == 1
    assert active.logged and active.finished == 0


def metric_definitions(records: list[Any]) -> dict[str, Any]:
    """``{name or glob: MetricRecord}`` of the run's ``define_metric`` calls."""
    return {
        r.metric.name or r.metric.glob_name: r.metric
        for r in records
        if r.WhichOneof("record_type") == "metric"
    }


@pytest.mark.parametrize("prefix", ["", "gepetto/"])
def test_wandb_step_metric_is_every_metrics_x_axis(
    tmp_path: Path, offline_wandb: Sentinel, no_network: list[Any], prefix: str
) -> None:
    """gepa's ``wandb_step_metric``: declared once the run exists, the x-axis of every key
    the tracker logs (``prefix*``), and logged with each row instead of ``step=``."""
    import wandb

    result = gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        display_progress_bar=False,
        use_wandb=True,
        wandb_init_kwargs={"dir": str(tmp_path), "mode": "offline"},
        tracking_key_prefix=prefix,
        config=gepetto.GEPAConfig(tracking=gepetto.TrackingConfig(wandb_step_metric="outer")),
    )
    wandb.teardown()
    [log] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = read_records(log)
    metrics = metric_definitions(records)
    assert not metrics["outer"].options.hidden
    assert metrics[f"{prefix}*"].step_metric == "outer"
    # gepetto's own per-key definitions (on "iteration") would win over the glob: none.
    assert f"{prefix}best_score" not in metrics
    rows = history_rows(records)
    iteration_rows = [row for row in rows if f"{prefix}front_size" in row]
    assert [row["outer"] for row in iteration_rows] == list(range(result.num_iterations))
    assert all("outer" in row for row in rows)
    # W&B's own step just counts the rows (no explicit step= was passed).
    assert [row["_step"] for row in rows] == list(range(len(rows)))
    assert no_network == [] and offline_wandb.connections == []

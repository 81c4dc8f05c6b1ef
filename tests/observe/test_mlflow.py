"""MLflowTracker: a scripted run logged to a local SQLite tracking store, read back."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

# Telemetry off before MLflow is imported (tests/conftest.py does it too).
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
import alembic  # noqa: F401 - the SQLite tracking store needs it
import mlflow
import sqlalchemy  # noqa: F401 - the SQLite tracking store needs it

import gepetto
from gepetto import events
from gepetto.errors import ConfigError
from gepetto.observe.mlflow import MLflowTracker
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Telemetry off, and any attempt to open a network connection fails the test."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            raise AssertionError(f"network connection attempted to {address!r}")
        real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


def run(callbacks: list[Any], max_metric_calls: int = 40) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=max_metric_calls,
        display_progress_bar=False,
        callbacks=callbacks,
    )


def history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def read_json(client: Any, run_id: str, path: str, dst: Path) -> Any:
    dst.mkdir(parents=True, exist_ok=True)
    local = client.download_artifacts(run_id, path, str(dst))
    return json.loads(Path(local).read_text(encoding="utf-8"))


def test_run_is_logged_and_reads_back(uri: str, tmp_path: Path) -> None:
    seen: list[events.Event] = []
    tracker = MLflowTracker(
        uri, "gepetto-test", "scripted", artifact_location=tmp_path / "artifacts"
    )
    result = run([tracker, seen.append])

    client = mlflow.MlflowClient(tracking_uri=uri)
    assert tracker.run_id is not None
    stored = client.get_run(tracker.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name == "scripted"
    assert client.get_experiment(stored.info.experiment_id).name == "gepetto-test"

    # Per-iteration metrics, step = iteration.
    iterations = [e for e in seen if isinstance(e, events.IterationFinished)]
    assert iterations
    assert history(client, tracker.run_id, "best_score") == [
        (e.iteration, e.best_score) for e in iterations
    ]
    assert history(client, tracker.run_id, "best_score")[-1][1] == result.best_score
    assert history(client, tracker.run_id, "metric_calls") == [
        (e.iteration, float(e.metric_calls_used)) for e in iterations
    ]
    for key, attribute in [
        ("pool_size", "pool_size"),
        ("front_size", "front_size"),
        ("cost_usd", "cost_usd"),
    ]:
        assert history(client, tracker.run_id, key) == [
            (e.iteration, float(getattr(e, attribute))) for e in iterations
        ]
    # One point per candidate, step = candidate id.
    assert history(client, tracker.run_id, "candidate_val_score") == list(
        enumerate(result.val_aggregate_scores)
    )

    metrics = stored.data.metrics
    assert metrics["final_metric_calls"] == result.total_metric_calls
    assert metrics["metric_calls"] <= result.total_metric_calls
    assert metrics["final_best_score"] == result.best_score
    assert metrics["final_best_id"] == result.best_idx
    assert metrics["final_iterations"] == result.num_iterations
    assert metrics["final_pool_size"] == result.num_candidates
    assert metrics["final_cost_usd"] == result.total_cost_usd

    params = stored.data.params
    assert params["seed"] == "0"
    assert params["max_metric_calls"] == "40"
    assert params["candidate_selection_strategy"] == "pareto"
    assert params["batch_sampler"] == "epoch_shuffled"
    assert params["module_selector"] == "round_robin"
    assert params["frontier_type"] == "instance"
    assert params["components"] == "instructions"
    assert params["trainset_size"] == params["valset_size"] == str(len(WORDS))

    tags = stored.data.tags
    assert tags["stop_reason"] == (result.stop_reason or "finished")
    assert tags["gepetto.version"] == gepetto.__version__

    names = {f.path for f in client.list_artifacts(tracker.run_id)}
    assert names == {"best_candidate.json", "result.json"}
    dst = tmp_path / "download"
    assert read_json(client, tracker.run_id, "result.json", dst) == json.loads(result.to_json())
    assert gepetto.Result.from_dict(read_json(client, tracker.run_id, "result.json", dst)) == (
        result
    )
    assert read_json(client, tracker.run_id, "best_candidate.json", dst) == result.best_candidate
    # The artifacts went where the new experiment was told to put them.
    assert (tmp_path / "artifacts").is_dir()
    assert list((tmp_path / "artifacts").rglob("result.json"))


def test_attach_to_active_run(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("outer", artifact_location=str(tmp_path / "art"))
    with mlflow.start_run(experiment_id=experiment_id) as outer:
        mlflow.log_param("user_param", "kept")
        tracker = MLflowTracker(attach_to_active_run=True, key_prefix="gepa/")
        result = run([tracker])
        assert tracker.run_id == outer.info.run_id
        # The tracker leaves the run it did not start open for its owner.
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"
    stored = client.get_run(outer.info.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.params["user_param"] == "kept"
    assert stored.data.params["gepa/seed"] == "0"
    assert stored.data.metrics["gepa/final_best_score"] == result.best_score
    assert stored.data.metrics["gepa/best_score"] == result.best_score
    assert stored.data.tags["gepa/stop_reason"] == (result.stop_reason or "finished")
    names = {f.path for f in client.list_artifacts(outer.info.run_id, "gepa")}
    assert names == {"gepa/best_candidate.json", "gepa/result.json"}
    assert read_json(client, outer.info.run_id, "gepa/result.json", tmp_path / "dl") == (
        json.loads(result.to_json())
    )
    # No run of its own, no experiment of its own.
    assert len(client.search_runs([experiment_id])) == 1
    assert client.get_experiment_by_name("gepetto") is None


def test_attach_without_active_run_starts_a_run(uri: str, tmp_path: Path) -> None:
    tracker = MLflowTracker(uri, attach_to_active_run=True, artifact_location=tmp_path / "a")
    result = run([tracker])
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert tracker.run_id is not None
    stored = client.get_run(tracker.run_id)
    assert stored.info.status == "FINISHED"
    assert client.get_experiment(stored.info.experiment_id).name == "gepetto"
    assert stored.data.metrics["final_best_score"] == result.best_score


def test_several_runs_in_one_process(uri: str, tmp_path: Path) -> None:
    reused = MLflowTracker(uri, "many", artifact_location=tmp_path / "a")
    other = MLflowTracker(uri, "many", key_prefix="x.", artifact_location=tmp_path / "a")
    first = run([reused, other], max_metric_calls=20)
    first_ids = (reused.run_id, other.run_id)
    second = run([reused], max_metric_calls=40)
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert reused.run_id not in first_ids
    assert len(set(first_ids)) == 2
    finals = {
        run_id: client.get_run(run_id).data.metrics
        for run_id in (*first_ids, reused.run_id)
        if run_id is not None
    }
    assert finals[first_ids[0]]["final_metric_calls"] == first.total_metric_calls
    assert finals[first_ids[1]]["x.final_metric_calls"] == first.total_metric_calls
    assert finals[reused.run_id]["final_metric_calls"] == second.total_metric_calls
    assert {client.get_run(r).info.status for r in finals} == {"FINISHED"}


def test_failing_tracker_does_not_change_the_result(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = run([])
    # A file stands where the store's folder should be: the tracker fails when the run starts.
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    broken = MLflowTracker(f"sqlite:///{tmp_path}/not-a-folder/mlflow.db")
    with caplog.at_level(logging.ERROR, logger="gepetto.events"):
        result = run([broken])
    assert broken.run_id is None
    assert any("failed on run_started" in r.getMessage() for r in caplog.records)
    assert result.to_dict() == baseline.to_dict()


def test_failure_at_the_end_marks_the_run_failed(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    baseline = run([])

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("artifact store unavailable")

    monkeypatch.setattr(mlflow.MlflowClient, "log_dict", refuse)
    tracker = MLflowTracker(uri, artifact_location=tmp_path / "a")
    with caplog.at_level(logging.ERROR, logger="gepetto.events"):
        result = run([tracker])
    assert result.to_dict() == baseline.to_dict()
    assert any("failed on run_finished" in r.getMessage() for r in caplog.records)
    assert tracker.run_id is not None
    stored = mlflow.MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert stored.info.status == "FAILED"
    assert stored.data.metrics["final_best_score"] == result.best_score


def test_telemetry_is_turned_off(
    uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow.telemetry.client import get_telemetry_client

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY")
    MLflowTracker(uri)
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    with caplog.at_level(logging.WARNING, logger="gepetto.observe.mlflow"):
        MLflowTracker(uri)
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert "telemetry off" in caplog.text
    assert get_telemetry_client() is None


def test_missing_mlflow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'gepetto\[mlflow\]'"):
        MLflowTracker()


def test_use_mlflow_keywords_attach_a_tracker(uri: str, tmp_path: Path) -> None:
    result = gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,
        display_progress_bar=False,
        use_mlflow=True,
        mlflow_tracking_uri=uri,
        mlflow_experiment_name="from-keywords",
        tracking_key_prefix="gepa/",
    )
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("from-keywords")
    assert experiment is not None
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.info.status == "FINISHED"
    assert stored.data.metrics["gepa/final_best_score"] == result.best_score
    assert "best_score" not in stored.data.metrics


def test_mlflow_attach_existing_logs_into_the_active_run(uri: str) -> None:
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run() as active:
            gepetto.optimize(
                {"instructions": "Answer."},
                keyword_dataset(WORDS),
                adapter=KeywordAdapter(),
                reflection_lm=FeedbackFollowingLM(),
                max_metric_calls=40,
                display_progress_bar=False,
                use_mlflow=True,
                mlflow_tracking_uri=uri,
                mlflow_attach_existing=True,
                tracking_key_prefix="opt/",
            )
        stored = mlflow.MlflowClient(tracking_uri=uri).get_run(active.info.run_id)
        assert "opt/final_best_score" in stored.data.metrics
    finally:
        mlflow.set_tracking_uri(None)

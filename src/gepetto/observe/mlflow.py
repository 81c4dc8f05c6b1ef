"""MLflow tracking of a run: ``callbacks=[MLflowTracker()]``.

The tracker logs a run into an MLflow tracking store (``pip install 'gepetto[mlflow]'``):

- ``run_started``: starts an MLflow run in ``experiment_name`` (or, with
  ``attach_to_active_run=True``, logs into the run active where the tracker was made or
  where the event arrives) and logs the run's configuration as parameters: strategy names,
  budget, seed, component names, dataset sizes. Tags: ``gepetto.version`` and, for a
  resumed run, ``gepetto.resumed_records``;
- ``iteration_finished``: metrics ``best_score``, ``pool_size``, ``front_size``,
  ``metric_calls`` and ``cost_usd``, with ``step`` = the iteration number;
- ``candidate_added``: metric ``candidate_val_score`` with ``step`` = the candidate id;
- ``run_finished``: metrics ``final_best_score``, ``final_best_id``, ``final_metric_calls``,
  ``final_iterations``, ``final_pool_size`` (and ``final_cost_usd`` when every LM call had
  a known price), the tag ``stop_reason``, the artifacts ``best_candidate.json`` (the best
  texts) and ``result.json`` (:meth:`gepetto.Result.to_dict`, readable with
  :meth:`gepetto.Result.from_dict`); then it ends the MLflow run it started (an attached run
  is left open for its owner).

Every name (parameters, metrics, tags, artifact paths) starts with ``key_prefix``, so several
optimizations can share one attached run (``key_prefix="retriever/"``).

The tracker talks to the store through :class:`mlflow.MlflowClient` with explicit run ids,
never through MLflow's process-wide "active run", so several runs in one process (or a run
on another thread) do not mix. MLflow's usage telemetry is turned off
(``MLFLOW_DISABLE_TELEMETRY=true``) before MLflow is imported.

An observer's failure never changes a run: if the store cannot be reached the error is
logged under ``gepetto.events`` and the optimization goes on unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gepetto.errors import ConfigError
from gepetto.events import CandidateAdded, IterationFinished, RunFinished, RunStarted
from gepetto.observe import progress_metrics

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["MLflowTracker"]

logger = logging.getLogger("gepetto.observe.mlflow")

TELEMETRY_VARIABLE = "MLFLOW_DISABLE_TELEMETRY"
_MAX_PARAM_LENGTH = 500  # the limit of older MLflow servers (newer ones accept 6000)
_TRUE = {"1", "true"}  # what MLflow reads as true (it rejects other spellings)


def _import_mlflow() -> None:
    """Import MLflow with its telemetry off (later imports of it are then plain look-ups).

    Raises:
        ConfigError: if MLflow is not installed.
    """
    if os.environ.get(TELEMETRY_VARIABLE, "").strip().lower() not in _TRUE:
        if TELEMETRY_VARIABLE in os.environ:
            logger.warning(
                "%s=%r: gepetto's MLflowTracker turns MLflow telemetry off (set to true)",
                TELEMETRY_VARIABLE,
                os.environ[TELEMETRY_VARIABLE],
            )
        os.environ[TELEMETRY_VARIABLE] = "true"
    try:
        import mlflow  # noqa: F401
    except ImportError as error:
        raise ConfigError(
            "MLflowTracker needs MLflow (with a SQL tracking store): pip install 'gepetto[mlflow]'"
        ) from error
    _drop_telemetry_client()


def _drop_telemetry_client() -> None:
    """If MLflow was imported before telemetry was turned off, drop its telemetry client.

    (MLflow also checks the variable before recording each event; this only makes sure no
    client is left that could send anything.)
    """
    try:
        from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client
    except ImportError:  # an MLflow without telemetry
        return
    try:
        if get_telemetry_client() is not None:
            # Re-initialises the client: None while the variable is true.
            set_telemetry_client()  # type: ignore[no-untyped-call]
    except Exception:  # pragma: no cover - private API of MLflow; never fail for it
        logger.debug("could not reset MLflow's telemetry client", exc_info=True)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _param_value(value: object) -> str:
    text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return text if len(text) <= _MAX_PARAM_LENGTH else text[: _MAX_PARAM_LENGTH - 3] + "..."


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class MLflowTracker:
    """An observer that logs a run's parameters, metrics and result to MLflow.

    Args:
        tracking_uri: the tracking store (``"sqlite:///mlflow.db"``, ``"http://host:5000"``,
            ...); default: MLflow's own (``MLFLOW_TRACKING_URI`` or ``mlflow.set_tracking_uri``).
        experiment_name: the experiment of the runs the tracker starts (created if missing).
        run_name: the name of the MLflow runs it starts (default: MLflow picks one).
        attach_to_active_run: log into the MLflow run that is active (``with
            mlflow.start_run(): ...``) when the tracker is made or when the run starts, instead
            of starting a run; that run is left open. With no active run, a run is started as
            usual. An attached run is logged to the tracking URI it belongs to.
        key_prefix: put before every parameter, metric, tag and artifact name.
        artifact_location: where the artifacts of a *new* experiment go (default: the
            store's default artifact root).

    Attributes:
        run_id: the MLflow run of the latest optimization (``None`` before one started).

    Raises:
        ConfigError: if MLflow is not installed.

    Example:
        >>> tracker = MLflowTracker("sqlite:///mlflow.db", experiment_name="support-bot")
        >>> tracker.run_id is None
        True
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str = "gepetto",
        run_name: str | None = None,
        *,
        attach_to_active_run: bool = False,
        key_prefix: str = "",
        artifact_location: str | os.PathLike[str] | None = None,
    ) -> None:
        _import_mlflow()
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.attach_to_active_run = attach_to_active_run
        self.key_prefix = key_prefix
        self.artifact_location = (
            os.fspath(artifact_location) if artifact_location is not None else None
        )
        self.run_id: str | None = None
        self._client: MlflowClient | None = None
        self._owns_run = False
        self._lock = threading.Lock()
        # MLflow's active run is per thread and observers may get events on another thread,
        # so the run active here (where the tracker is made) is remembered.
        self._creator_run = self._active_run() if attach_to_active_run else None

    # ----- helpers ---------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.key_prefix}{name}"

    def _active_run(self) -> tuple[str, str] | None:
        """The run active on this thread and its tracking URI, if any."""
        import mlflow

        run = mlflow.active_run()
        if run is None:
            return None
        return run.info.run_id, mlflow.get_tracking_uri()

    def _run_to_attach(self) -> tuple[str, str] | None:
        current = self._active_run()
        if current is not None:
            return current
        if self._creator_run is None:
            return None
        from mlflow import MlflowClient

        run_id, uri = self._creator_run
        client = MlflowClient(tracking_uri=uri)
        if client.get_run(run_id).info.status != "RUNNING":
            return None
        return self._creator_run

    def _experiment_id(self, client: MlflowClient) -> str:
        from mlflow.exceptions import MlflowException

        experiment = client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(
                client.create_experiment(
                    self.experiment_name, artifact_location=self.artifact_location
                )
            )
        except MlflowException:
            # Created meanwhile by another process or tracker.
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def _log(
        self,
        metrics: Mapping[str, float] | None = None,
        *,
        step: int = 0,
        params: Mapping[str, object] | None = None,
        tags: Mapping[str, object] | None = None,
    ) -> None:
        if self._client is None or self.run_id is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        timestamp = _now_ms()
        self._client.log_batch(
            self.run_id,
            metrics=[
                Metric(self._key(k), float(v), timestamp, step) for k, v in (metrics or {}).items()
            ],
            params=[Param(self._key(k), _param_value(v)) for k, v in (params or {}).items()],
            tags=[RunTag(self._key(k), str(v)) for k, v in (tags or {}).items()],
            synchronous=True,
        )

    def _end_run(self, status: str) -> None:
        client, run_id, owned = self._client, self.run_id, self._owns_run
        self._client, self._owns_run = None, False
        if client is not None and run_id is not None and owned:
            client.set_terminated(run_id, status=status)

    # ----- events ----------------------------------------------------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        """Start (or attach to) the MLflow run and log the configuration as parameters."""
        from mlflow import MlflowClient

        from gepetto._version import __version__

        with self._lock:
            # A previous optimization that never finished (it raised): close its run.
            self._end_run("FAILED")
            self.run_id = None
            attached = self._run_to_attach() if self.attach_to_active_run else None
            if attached is not None:
                run_id, uri = attached
                self._client = MlflowClient(tracking_uri=uri)
                self.run_id, self._owns_run = run_id, False
            else:
                client = MlflowClient(tracking_uri=self.tracking_uri)
                run = client.create_run(
                    self._experiment_id(client),
                    run_name=self.run_name,
                    tags={"gepetto.version": __version__},
                )
                self._client, self.run_id, self._owns_run = client, run.info.run_id, True
            params: dict[str, object] = _flatten(event.config)
            params.update(
                components=list(event.components),
                trainset_size=event.trainset_size,
                valset_size=event.valset_size,
                max_metric_calls=event.max_metric_calls,
                seed=event.seed,
            )
            tags: dict[str, object] = {}
            if not self._owns_run:
                tags["gepetto.version"] = __version__
            if event.resumed_records:
                tags["gepetto.resumed_records"] = event.resumed_records
            self._log(params=params, tags=tags)

    def on_iteration_finished(self, event: IterationFinished) -> None:
        """Log the run's progress at step ``iteration``."""
        with self._lock:
            self._log(progress_metrics(event), step=event.iteration)

    def on_candidate_added(self, event: CandidateAdded) -> None:
        """Log the new candidate's validation score at step ``candidate_id``."""
        with self._lock:
            self._log({"candidate_val_score": event.val_score}, step=event.candidate_id)

    def on_run_finished(self, event: RunFinished) -> None:
        """Log the final metrics, the best candidate and the result; end the MLflow run."""
        with self._lock:
            if self._client is None or self.run_id is None:
                return
            status = "FAILED"
            try:
                final: dict[str, float] = {
                    "final_best_score": event.best_score,
                    "final_best_id": event.best_id,
                    "final_metric_calls": event.metric_calls_used,
                    "final_iterations": event.iterations,
                    "final_pool_size": event.pool_size,
                }
                cost = _total_cost(event.result)
                if cost is not None:
                    final["final_cost_usd"] = cost
                self._log(final, step=event.iterations, tags={"stop_reason": event.stop_reason})
                self._client.log_dict(
                    self.run_id, dict(event.best_candidate), self._key("best_candidate.json")
                )
                if event.result:
                    self._client.log_dict(self.run_id, dict(event.result), self._key("result.json"))
                status = "FINISHED"
            finally:
                self._end_run(status)


def _total_cost(result: Mapping[str, Any]) -> float | None:
    """``Result.total_cost_usd`` of a ``Result.to_dict()``: ``None`` if unknown or unpriced."""
    if not result:
        return None
    usage = result.get("lm_usage") or {}
    if any(u.get("unpriced_calls", 0) for u in usage.values()):
        return None
    return sum(float(u.get("cost_usd", 0.0)) for u in usage.values())

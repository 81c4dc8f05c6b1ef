"""Weights & Biases tracking of a run, as an ordinary event observer.

:class:`WandbTracker` opens a W&B run when the optimization starts (or joins the active one),
logs the progress of every iteration, and at the end writes the final numbers to the run
summary and the best candidate and the full :class:`~gepetto.result.Result` as an artifact.

It needs the optional ``wandb`` package (``pip install 'gepetto[wandb]'``). Like every
observer, a failure inside it (no network, bad credentials) is logged and never changes the
run. For runs without network use ``mode="offline"`` (or ``WANDB_MODE=offline``) and upload
later with ``wandb sync``.

Example:
    >>> from gepetto.observe.wandb import WandbTracker
    >>> tracker = WandbTracker(project="my-prompts", mode="offline")  # doctest: +SKIP
    >>> result = gepetto.optimize(..., callbacks=[tracker])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from gepetto.errors import ConfigError
from gepetto.events import (
    CandidateAdded,
    IterationFinished,
    IterationStarted,
    RunFinished,
    RunStarted,
)
from gepetto.observe import progress_metrics
from gepetto.types import jsonable

__all__ = ["WandbTracker"]

_INSTALL_HINT = "WandbTracker needs the wandb package: pip install 'gepetto[wandb]'"
_ARTIFACT_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_ITERATION_KEYS = ("best_score", "pool_size", "front_size", "metric_calls", "cost_usd")


def _import_wandb() -> Any:
    """Import ``wandb`` on first use, with a message naming the extra when it is missing."""
    try:
        return importlib.import_module("wandb")
    except ImportError as exc:
        raise ConfigError(_INSTALL_HINT) from exc


class WandbTracker:
    """Logs a gepetto run to Weights & Biases; pass it in ``callbacks=[...]``.

    Args:
        project: the W&B project of a new run.
        run_name: display name of a new run (W&B picks one when ``None``).
        mode: ``"online"``, ``"offline"`` or ``"disabled"``; ``None`` leaves it to W&B
            (``WANDB_MODE``, the settings file, then online).
        dir: where W&B writes its ``wandb/`` run directory (``WANDB_DIR`` when ``None``).
        attach_to_active_run: log into ``wandb.run`` when there is one (the tracker then
            neither starts nor finishes a run, and logs without explicit steps so the active
            run's step counter is respected). Without an active run a new one is started.
        init_kwargs: more keyword arguments for ``wandb.init`` (``entity``, ``tags``,
            ``group``, ``settings``, ...); they override the ones above.
        key_prefix: put before every logged key, summary key and config key (for example
            ``"gepetto/"`` when attaching to a run that logs other things).
        api_key: the W&B API key of a new run (gepa's ``wandb_api_key``), handed to
            ``wandb.init`` as ``settings.api_key`` and nowhere else (``WANDB_API_KEY`` or
            ``wandb login`` when ``None``).
        step_metric: gepa's ``wandb_step_metric``: a metric of its own as the x-axis of the
            tracker's metrics, for a run whose step counter belongs to someone else (a
            training loop that logs into the same run). Once the run exists it is declared
            with ``define_metric(step_metric, hidden=False)`` and every key the tracker logs
            (``key_prefix + "*"``, or ``"*"`` without a prefix) gets it as ``step_metric``;
            each logged row then carries ``step_metric`` = the iteration (the step the tracker
            would otherwise pass) and no explicit ``step=``. Not prefixed, as in gepa.

    History (one row per iteration, ``step`` = iteration for a run the tracker started):
    ``best_score``, ``pool_size``, ``front_size``, ``metric_calls``, ``cost_usd``,
    ``iteration``; ``candidate/val_score``, ``candidate/id`` when a candidate joins the
    pool (one value per step: the seed shares step 0 with the candidate of iteration 0); and
    at the end the tables ``best_candidate`` (its component texts) and ``candidates`` (every
    candidate: id, parents, score, when found, on the front, texts). Summary at the
    end: ``best_score``, ``best_id``, ``seed_score``, ``metric_calls``, ``iterations``,
    ``pool_size``, ``num_candidates``, ``stop_reason`` and ``cost_usd`` (when all LM calls
    had a known price).
    Artifact (type ``gepetto-result``): ``best_candidate.json`` and ``result.json``
    (``Result.to_dict()``, readable with ``Result.from_dict``).

    Raises:
        ConfigError: when ``wandb`` is not installed.
    """

    def __init__(
        self,
        project: str = "gepetto",
        run_name: str | None = None,
        *,
        mode: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        attach_to_active_run: bool = False,
        init_kwargs: Mapping[str, Any] | None = None,
        key_prefix: str = "",
        api_key: str | None = None,
        step_metric: str | None = None,
    ) -> None:
        self._wandb = _import_wandb()
        self._api_key = api_key  # a secret: only handed to wandb.init's settings
        self.project = project
        self.run_name = run_name
        self.mode = mode
        self.dir = os.fspath(dir) if dir is not None else None
        self.attach_to_active_run = attach_to_active_run
        self.init_kwargs = dict(init_kwargs or {})
        self.key_prefix = key_prefix
        self.step_metric = step_metric or None
        self.run: Any = None
        """The W&B run being logged to (``None`` before ``run_started``)."""
        self._owns_run = False
        self._step = 0
        self._finished = False

    # ----- events ----------------------------------------------------------------------------

    def on_run_started(self, event: RunStarted) -> None:
        config = self._keys(
            {
                **jsonable(dict(event.config)),
                "components": list(event.components),
                "trainset_size": event.trainset_size,
                "valset_size": event.valset_size,
                "max_metric_calls": event.max_metric_calls,
                "seed": event.seed,
                "resumed_records": event.resumed_records,
            }
        )
        self.run, self._step, self._finished = None, 0, False
        active = self._wandb.run
        if self.attach_to_active_run and active is not None:
            self.run, self._owns_run = active, False
            self.run.config.update(config, allow_val_change=True)
        else:
            self.run, self._owns_run = self._init(config, active is not None), True
        if self.step_metric is not None:
            # gepa's declaration: the step metric, then every key of this tracker on it (a
            # key-specific definition would win over the glob, so there is none then).
            self.run.define_metric(self.step_metric, hidden=False)
            self.run.define_metric(f"{self.key_prefix}*", step_metric=self.step_metric)
            return
        iteration = self._key("iteration")
        for key in (*_ITERATION_KEYS, "candidate/val_score", "candidate/id"):
            self.run.define_metric(self._key(key), step_metric=iteration)

    def on_iteration_started(self, event: IterationStarted) -> None:
        self._step = max(self._step, event.iteration)

    def on_candidate_added(self, event: CandidateAdded) -> None:
        if self.run is None:
            return
        self._log(
            {
                "candidate/val_score": event.val_score,
                "candidate/id": event.candidate_id,
                "iteration": self._step,
            }
        )

    def on_iteration_finished(self, event: IterationFinished) -> None:
        if self.run is None:
            return
        # With parallel proposals iterations may finish out of order; W&B drops rows whose
        # step goes backwards, so the step never decreases (the values are run totals).
        self._step = max(self._step, event.iteration)
        self._log({**progress_metrics(event), "iteration": event.iteration})

    def on_run_finished(self, event: RunFinished) -> None:
        if self.run is None or self._finished:
            return
        result = dict(event.result)
        scores = result.get("val_aggregate_scores") or [event.best_score]
        cost = _total_cost(result.get("lm_usage", {}))
        # Commit the last history row first: a pending row would otherwise update the
        # summary after the final numbers below and overwrite them.
        self._log(
            {
                "best_score": event.best_score,
                "metric_calls": event.metric_calls_used,
                "pool_size": event.pool_size,
                "iteration": self._step,
                "best_candidate": self._wandb.Table(
                    columns=["component", "text"],
                    data=[[k, v] for k, v in event.best_candidate.items()],
                ),
                "candidates": self._candidates_table(result),
            },
            commit=True,
        )
        summary = {
            "best_score": event.best_score,
            "best_id": event.best_id,
            "seed_score": scores[0],
            "metric_calls": event.metric_calls_used,
            "iterations": event.iterations,
            "pool_size": event.pool_size,
            "num_candidates": len(scores),
            "stop_reason": event.stop_reason,
        }
        if cost is not None:
            summary["cost_usd"] = cost
        self.run.summary.update(self._keys(summary))
        self._log_artifact(event, result)
        self.finish()

    # ----- helpers ---------------------------------------------------------------------------

    def finish(self) -> None:
        """Finish the W&B run if this tracker started it (idempotent). Called at the end of
        the optimization; call it yourself if the run stopped with an exception."""
        run, self._finished = self.run, True
        if run is not None and self._owns_run:
            self._owns_run = False
            run.finish()

    def _init(self, config: dict[str, Any], other_run_active: bool) -> Any:
        if self.dir is not None:
            os.makedirs(self.dir, exist_ok=True)
        kwargs: dict[str, Any] = {"project": self.project, "config": config}
        if self.run_name is not None:
            kwargs["name"] = self.run_name
        if self.mode is not None:
            kwargs["mode"] = self.mode
        if self.dir is not None:
            kwargs["dir"] = self.dir
        if other_run_active:
            kwargs["reinit"] = "create_new"  # leave the user's active run alone
        if self._api_key is not None:
            kwargs["settings"] = self._wandb.Settings(api_key=self._api_key)
        kwargs.update(self.init_kwargs)
        return self._wandb.init(**kwargs)

    def _log(self, values: Mapping[str, Any], *, commit: bool | None = None) -> None:
        data = self._keys(values)
        if self.step_metric is not None:
            data[self.step_metric] = self._step  # the x-axis, instead of W&B's own step
            self.run.log(data, commit=commit)
        elif self._owns_run:
            self.run.log(data, step=self._step, commit=commit)
        else:
            self.run.log(data, commit=commit)

    def _log_artifact(self, event: RunFinished, result: dict[str, Any]) -> None:
        name = _ARTIFACT_NAME.sub("-", f"{self.key_prefix}gepetto-result-{self.run.id}")
        artifact = self._wandb.Artifact(
            name.strip("-") or "gepetto-result",
            type="gepetto-result",
            description="gepetto optimization result: best candidate and Result.to_dict()",
            metadata={
                "best_id": event.best_id,
                "best_score": event.best_score,
                "metric_calls": event.metric_calls_used,
                "iterations": event.iterations,
                "stop_reason": event.stop_reason,
            },
        )
        with artifact.new_file("best_candidate.json", mode="w", encoding="utf-8") as file:
            json.dump(dict(event.best_candidate), file, ensure_ascii=False, indent=2)
        with artifact.new_file("result.json", mode="w", encoding="utf-8") as file:
            json.dump(result, file, ensure_ascii=False, indent=2)
        self.run.log_artifact(artifact)

    def _candidates_table(self, result: Mapping[str, Any]) -> Any:
        """Every candidate of the pool: lineage, score, discovery, front, texts."""
        candidates = list(result.get("candidates", []))
        components = sorted({name for texts in candidates for name in texts})
        front = set(result.get("pareto_front", []))
        scores = list(result.get("val_aggregate_scores", []))
        parents = list(result.get("parents", []))
        found = list(result.get("discovery_eval_counts", []))
        rows = [
            [
                i,
                ",".join(map(str, parents[i])) if i < len(parents) else "",
                scores[i] if i < len(scores) else None,
                found[i] if i < len(found) else None,
                i in front,
                *(texts.get(name) for name in components),
            ]
            for i, texts in enumerate(candidates)
        ]
        columns = ["id", "parents", "val_score", "found_at_metric_call", "on_front"]
        return self._wandb.Table(columns=[*columns, *components], data=rows)

    def _key(self, key: str) -> str:
        return f"{self.key_prefix}{key}"

    def _keys(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {self._key(k): v for k, v in values.items()}


def _total_cost(lm_usage: Mapping[str, Any]) -> float | None:
    """Dollars of the run's LM calls, ``None`` when some call had no known price."""
    if any(u.get("unpriced_calls", 0) for u in lm_usage.values()):
        return None
    return float(sum(float(u.get("cost_usd", 0.0)) for u in lm_usage.values()))

"""``gepetto optimize`` and ``gepetto resume``: a task file to a :func:`gepetto.optimize` call.

``optimize`` writes ``RUN_DIR/gepetto-task.json`` (the task file's absolute path and the
command's options) before the run starts, so ``resume RUN_DIR`` can rebuild the same call;
the journal in ``RUN_DIR`` then replays what was done, and only the rest is paid for.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gepetto.cli import CommandError, ExitCode
from gepetto.cli._task import Task, check_option_names, load_task

__all__ = ["TASK_RECORD", "CliOptions", "default_run_dir", "optimize_task", "resume_run"]

TASK_RECORD = "gepetto-task.json"
"""The file in a run folder that names the task and options ``gepetto optimize`` ran."""


@dataclass(frozen=True)
class CliOptions:
    """The command-line options that override a task's own."""

    budget: int | None = None
    model: str | None = None
    reflection_model: str | None = None
    parallel: int | None = None
    max_cost: float | None = None
    quiet: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "model": self.model,
            "reflection_model": self.reflection_model,
            "parallel": self.parallel,
            "max_cost": self.max_cost,
        }


def default_run_dir(task_path: Path) -> Path:
    """``runs/<task name>-<UTC time>``: a new folder for each ``optimize``."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{task_path.stem}-{stamp}"


def optimize_task(task_path: Path, run_dir: Path | None, options: CliOptions) -> int:
    """Load the task, record it in the run folder, run it; returns the exit code."""
    task = load_task(task_path)
    folder = run_dir if run_dir is not None else default_run_dir(task_path)
    record = folder / TASK_RECORD
    if record.exists():
        raise CommandError(
            f"{folder} already holds a run made by gepetto optimize: continue it with "
            f"`gepetto resume {folder}`, or pass another --run-dir"
        )
    keywords = _keywords(task, options)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"task": str(task_path.resolve()), "options": options.to_json()}, indent=2)
    record.write_text(text + "\n", encoding="utf-8")
    return _run(task, folder, keywords, options, first=True)


def resume_run(run_dir: Path, task_path: Path | None, budget: int | None, quiet: bool) -> int:
    """Continue a run of ``gepetto optimize`` (or of ``task_path``); returns the exit code."""
    from gepetto.runview import open_store

    open_store(run_dir).close()  # NotARun / StorageError before anything is loaded
    record = run_dir / TASK_RECORD
    recorded: Mapping[str, Any] = {}
    if record.is_file():
        try:
            recorded = json.loads(record.read_text(encoding="utf-8"))
        except ValueError as error:
            raise CommandError(f"{record} is damaged ({error}): pass --task TASK") from None
    if task_path is None:
        if "task" not in recorded:
            raise CommandError(
                f"{run_dir} was not started by `gepetto optimize` (no {TASK_RECORD}): "
                "pass the task file with --task TASK"
            )
        task_path = Path(str(recorded["task"]))
    saved = dict(recorded.get("options") or {})
    if budget is not None:
        saved["budget"] = budget
    options = CliOptions(
        **{k: saved.get(k) for k in ("budget", "model", "reflection_model", "parallel")},
        max_cost=saved.get("max_cost"),
        quiet=quiet,
    )
    task = load_task(task_path)
    _check_budget(run_dir, options.budget, task)
    return _run(task, run_dir, _keywords(task, options), options, first=False)


def _check_budget(run_dir: Path, budget: int | None, task: Task) -> None:
    """A resume budget must leave room for more work."""
    limit = budget if budget is not None else task.options.get("max_metric_calls")
    if not isinstance(limit, int):
        return
    from gepetto.runview import open_run, summary

    with open_run(run_dir) as view:
        used = summary(view).budget_used
    if limit <= used:
        raise CommandError(
            f"the run has used {used} metric calls, its budget is {limit}: pass "
            f"--budget with more than {used} to continue it"
        )


def _keywords(task: Task, options: CliOptions) -> dict[str, Any]:
    """The :func:`gepetto.optimize` keywords: the task's, then the command line's."""
    keywords = dict(task.options)
    check_option_names(keywords, f"task file {task.path}: options")
    adapter, task_lm = task.adapter, task.task_lm
    if options.model is not None:
        if adapter is not None:
            raise CommandError(
                f"--model sets the task model, but {task.path} defines an adapter (which "
                "calls its own model): drop --model, or define task_lm instead of adapter"
            )
        task_lm = options.model
    if adapter is None and task_lm is None:
        raise CommandError(
            f"task file {task.path} defines neither adapter nor task_lm: define one, or "
            "pass --model MODEL"
        )
    reflection_lm = options.reflection_model or task.reflection_lm
    if reflection_lm is None:
        raise CommandError(
            f"task file {task.path} defines no reflection_lm: define one, or pass "
            "--reflection-model MODEL"
        )
    if options.budget is not None:
        keywords["max_metric_calls"] = options.budget
    if options.parallel is not None:
        keywords["max_concurrency"] = options.parallel
    if options.max_cost is not None:
        keywords["max_cost_usd"] = options.max_cost
    keywords.update(
        seed_candidate=task.seed_candidate,
        trainset=task.trainset,
        valset=task.valset,
        adapter=adapter,
        task_lm=task_lm,
        evaluator=task.evaluator,
        reflection_lm=reflection_lm,
        handle_signals=True,
    )
    if task.testset is not None:
        keywords["testset"] = task.testset
    return keywords


def _run(
    task: Task, folder: Path, keywords: dict[str, Any], options: CliOptions, *, first: bool
) -> int:
    import gepetto
    from gepetto.errors import ConfigError

    keywords["run_dir"] = folder
    handler = _log_handler(options.quiet)
    verb = "optimizing" if first else "resuming"
    _say(f"{verb} {task.path} in {folder} (Ctrl-C stops it; `gepetto resume {folder}` goes on)")
    try:
        result = gepetto.optimize(**keywords)
    except ConfigError:
        if first and not (folder / "journal.sqlite").exists():
            (folder / TASK_RECORD).unlink(missing_ok=True)  # nothing was run: leave no trace
        raise
    finally:
        logging.getLogger("gepetto").removeHandler(handler)
    reason = result.stop_reason or ""
    best = result.val_aggregate_scores[result.best_idx]
    _say(
        f"stopped: {reason}\nbest: candidate {result.best_idx}, validation score {best:.4f}, "
        f"{result.total_metric_calls} metric calls\nrun: {folder}  (gepetto status {folder}; "
        f"gepetto show {folder}; gepetto report {folder})"
    )
    if reason.startswith("interrupted"):
        return ExitCode.INTERRUPTED
    return ExitCode.OK


def _log_handler(quiet: bool) -> logging.Handler:
    """The run's log lines (INFO and up) on standard error; with ``quiet`` none at all (a
    handler that drops them, so Python's last-resort handler does not print warnings)."""
    logger = logging.getLogger("gepetto")
    handler: logging.Handler
    if quiet:
        handler = logging.NullHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        if logger.level == logging.NOTSET or logger.level > logging.INFO:
            logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler


def _say(text: str) -> None:
    print(text, flush=True)

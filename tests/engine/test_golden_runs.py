"""Fixed-seed runs make the same decisions, candidates and metric calls as recorded.

The engine may be reorganised (it was: mixins became composed flows), but a sequential
run (one proposal in flight) with a fixed seed is a pure function of its inputs: the
same parents, the same minibatches, the same proposals, the same verdicts and the same
calls. This test replays five such runs on the benchmark's synthetic fact workload
(``bench/_workload.py``, zero latency) and compares each with its record in
``tests/fixtures/golden_runs.json``.

When a change *should* alter decisions (a new default, a fixed bug), regenerate the
records on purpose and say why in the commit::

    GEPETTO_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest tests/engine/test_golden_runs.py
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import gepetto

ROOT = Path(__file__).resolve().parents[2]
RECORDS = ROOT / "tests" / "fixtures" / "golden_runs.json"

RUNS: dict[str, dict[str, Any]] = {
    "default": {"seed": 0, "max_metric_calls": 700},
    "merge": {"seed": 1, "max_metric_calls": 900, "use_merge": True},
    "incremental-best-of-2": {
        "seed": 2,
        "max_metric_calls": 700,
        "val_evaluation_policy": "incremental",
        "reflection_samples": 2,
    },
    "current-best-no-history-no-early-reject": {
        "seed": 3,
        "max_metric_calls": 600,
        "candidate_selection_strategy": "current_best",
        "reflection_history": 0,
        "early_reject": False,
    },
    "all-components-minibatch-5": {
        "seed": 4,
        "max_metric_calls": 700,
        "reflection_minibatch_size": 5,
        "frontier_type": "hybrid",
    },
}


_DECISION_FIELDS = (
    "iteration",
    "parent_id",
    "child_id",
    "outcome",
    "reason",
    "parent_score",
    "child_score",
    "child_hash",
)


def _workload() -> ModuleType:
    path = ROOT / "bench" / "_workload.py"
    spec = importlib.util.spec_from_file_location("_golden_workload", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run(options: dict[str, Any]) -> dict[str, Any]:
    workload = _workload()
    task = workload.make_task()
    result = gepetto.optimize(
        {"instructions": workload.SEED_TEXT},
        task.trainset,
        task.valset,
        adapter=workload.FactAdapter(task.facts, 0.0, gepetto.EvaluationBatch),
        reflection_lm=workload.FactReflectionLM(0.0, seed=options["seed"]),
        display_progress_bar=False,
        handle_signals=False,
        **options,
    )
    return {
        "candidates": [_digest(json.dumps(c, sort_keys=True)) for c in result.candidates],
        "parents": result.parents,
        "val_aggregate_scores": [round(s, 9) for s in result.val_aggregate_scores],
        "best_idx": result.best_idx,
        "metric_calls": [
            result.total_metric_calls,
            result.metric_calls_train,
            result.metric_calls_val,
        ],
        "reflection_calls": result.num_reflection_calls,
        "iterations": result.num_iterations,
        "stop_reason": result.stop_reason,
        "decisions": [
            {key: decision.get(key) for key in _DECISION_FIELDS} for decision in result.decisions
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_fixed_seed_run_repeats_its_recorded_decisions(name: str) -> None:
    observed = _run(RUNS[name])
    if os.environ.get("GEPETTO_REGENERATE_GOLDEN") == "1":
        records = json.loads(RECORDS.read_text()) if RECORDS.exists() else {}
        records[name] = observed
        RECORDS.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden record regenerated")
    recorded = json.loads(RECORDS.read_text())[name]
    assert observed["metric_calls"] == recorded["metric_calls"]
    assert observed["candidates"] == recorded["candidates"]
    assert observed["parents"] == recorded["parents"]
    assert observed == recorded

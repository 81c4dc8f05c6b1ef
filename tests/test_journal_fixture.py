"""Journals written by older gepetto versions keep loading (fixture: format 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.fixtures.make_journal_v1 import run_fixture_workload

from gepetto.records import record_from_dict
from gepetto.storage import SQLiteStorage

FIXTURE = Path(__file__).parent / "fixtures" / "journal_v1.sqlite"


def test_format_1_records_load(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "journal.sqlite")
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    header = storage.header("default")
    assert header is not None and header.schema_version == 1
    records = [record_from_dict(body) for _, body in storage.read("default")]
    assert len(records) == 20
    assert {r.kind for r in records} >= {"candidate", "evaluation", "iteration", "decision"}
    storage.close()


def test_format_1_run_resumes_and_extends(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "journal.sqlite")
    result = run_fixture_workload(tmp_path, max_metric_calls=120)
    # The three candidates of the stored run come first, unchanged; the run went on.
    assert result.candidates[0] == {"instructions": "Answer."}
    assert result.num_candidates > 3
    assert result.total_metric_calls > 36
    assert result.best_score == 1.0

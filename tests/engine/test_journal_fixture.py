"""Journals written by older gepetto versions keep loading (fixture: format 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.records import record_from_dict
from gepetto.storage import SQLiteStorage
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from tests.fixtures.make_journal_v1 import WORDS, run_fixture_workload

FIXTURE = Path(__file__).parent.parent / "fixtures" / "journal_v1.sqlite"


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


def test_a_format_1_run_resumed_with_a_setting_it_predates_is_refused(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "journal.sqlite")
    adapter = KeywordAdapter()
    with pytest.raises(ConfigError) as caught:
        gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(WORDS, copies=2),
            keyword_dataset(WORDS),
            adapter=adapter,
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=120,
            run_dir=tmp_path,
            display_progress_bar=False,
            reflection_history=2,
            use_merge=True,
        )
    message = str(caught.value)
    assert "reflection_history: not in the journal (so the default 3), 2 now" in message
    assert "use_merge: not in the journal (so the default False), True now" in message
    assert adapter.evaluate_calls == 0

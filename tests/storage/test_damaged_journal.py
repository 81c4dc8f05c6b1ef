"""A journal that is empty or holds a damaged record is refused with a StorageError naming
the file (and the record), saying what to do, before anything is paid again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import gepetto
from gepetto.storage import StorageError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(4)]


def run(run_dir: Path, adapter: KeywordAdapter, lm: FeedbackFollowingLM) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS, copies=2),
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=lm,
        max_metric_calls=24,
        run_dir=run_dir,
        display_progress_bar=False,
    )


def refused(run_dir: Path) -> str:
    adapter, lm = KeywordAdapter(), FeedbackFollowingLM()
    with pytest.raises(StorageError) as caught:
        run(run_dir, adapter, lm)
    assert adapter.evaluate_calls == 0 and lm.calls == 0, "a refused resume paid again"
    return str(caught.value)


def test_an_empty_journal_is_refused_not_restarted(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    run(tmp_path, KeywordAdapter(), FeedbackFollowingLM())
    journal.write_bytes(b"")  # truncated to zero length (a full disk, a bad copy, ...)
    message = refused(tmp_path)
    assert f"{journal} is empty (0 bytes)" in message
    assert "Restore it from a backup" in message and "move it away" in message
    assert journal.stat().st_size == 0, "the empty journal must be left as it was"


def test_a_damaged_record_is_refused_naming_the_file_and_the_record(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    run(tmp_path, KeywordAdapter(), FeedbackFollowingLM())
    db = sqlite3.connect(journal)
    db.execute("UPDATE records SET body = substr(body, 1, 25) WHERE seq = 3")
    db.commit()
    db.close()
    message = refused(tmp_path)
    assert f"record 3 of run 'default' in {journal} is damaged" in message
    assert "Restore the journal from a backup" in message and "move it away" in message

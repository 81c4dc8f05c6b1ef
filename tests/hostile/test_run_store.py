"""Hostile input to the run store: what careless or hostile users do to run folders,
journal files, concurrent processes, fingerprints and resumes.

Each case ends either in a clear :class:`~gepetto.errors.GepettoError` raised before any
paid call (the adapter and the reflection LM count their calls), or in a clean run that
lost nothing.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import Optimizer
from gepetto.errors import ConfigError, GepettoError
from gepetto.storage import SQLiteStorage, StorageError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from tests.hostile.unprivileged import as_nobody, shared_folder

WORDS = [f"w{i}" for i in range(4)]
TRAIN = keyword_dataset(WORDS, copies=2)
VAL = keyword_dataset(WORDS)
SEED = {"instructions": "Answer."}
BUDGET = 24


class Counting(KeywordAdapter):
    """Counts the metric calls it is paid for."""

    def __init__(self) -> None:
        super().__init__()
        self.paid = 0

    def fingerprint(self) -> str:
        return "keyword task"

    def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
        self.paid += len(batch)
        return super().evaluate(batch, candidate, capture_traces)


class Paid:
    """The adapter and reflection LM of one call, to count what it paid for."""

    def __init__(self) -> None:
        self.adapter = Counting()
        self.lm = FeedbackFollowingLM()

    @property
    def calls(self) -> int:
        return self.adapter.paid + self.lm.calls


def run(run_dir: Any, paid: Paid | None = None, **options: Any) -> gepetto.Result:
    paid = paid or Paid()
    arguments: dict[str, Any] = {
        "seed_candidate": SEED,
        "trainset": TRAIN,
        "valset": VAL,
        "adapter": paid.adapter,
        "reflection_lm": paid.lm,
        "max_metric_calls": BUDGET,
        "run_dir": run_dir,
        "display_progress_bar": False,
    }
    arguments.update(options)
    return gepetto.optimize(**arguments)


def refused(
    error: type[GepettoError], run_dir: Any, match: str | None = None, **options: Any
) -> tuple[str, Paid]:
    """The message of the error a call raises; fails if anything was paid for."""
    paid = Paid()
    with pytest.raises(error, match=match) as caught:
        run(run_dir, paid, **options)
    assert paid.calls == 0, f"{paid.calls} paid calls before the error"
    return str(caught.value), paid


def finished_run(run_dir: Path) -> gepetto.Result:
    result = run(run_dir)
    assert (run_dir / "journal.sqlite").stat().st_size > 0
    return result


def edit_journal(run_dir: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    db = sqlite3.connect(run_dir / "journal.sqlite")
    for statement, parameters in statements:
        db.execute(statement, parameters)
    db.commit()
    db.close()


# ----- run folders ---------------------------------------------------------------------


class BytesPath:
    def __fspath__(self) -> bytes:
        return b"runs/a"


@pytest.mark.parametrize("value", [0, True, {"dir": "runs"}, BytesPath(), Path("  ")])
def test_run_dir_values_that_name_no_folder_are_refused(
    value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a blank run_dir used to write its run
    message, _ = refused(ConfigError, value, match="run_dir")
    assert "pass a folder path" in message
    assert list(tmp_path.iterdir()) == []


def test_run_dir_pointing_at_the_journal_file_itself_is_refused(tmp_path: Path) -> None:
    finished_run(tmp_path)
    message, _ = refused(ConfigError, tmp_path / "journal.sqlite", match="is a file, not a folder")
    assert "journal.sqlite" in message


def test_an_event_log_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").mkdir()
    message, _ = refused(ConfigError, tmp_path, match="cannot write its event log")
    assert "events.jsonl" in message and "run_dir=" in message


def _resume_as_nobody(run_dir: Path) -> str:
    paid = Paid()
    try:
        run(run_dir, paid)
    except GepettoError as error:
        return f"{type(error).__name__} after {paid.calls} paid calls: {error}"
    return f"ran, {paid.calls} paid calls"


def test_a_read_only_run_folder_is_refused_before_any_call() -> None:
    with shared_folder() as folder:
        run_dir = folder / "run"
        finished_run(run_dir)
        (run_dir / "journal.sqlite").chmod(0o444)
        run_dir.chmod(0o555)
        outcome = as_nobody(functools.partial(_resume_as_nobody, run_dir))
        assert "ConfigError after 0 paid calls: run_dir=" in outcome, outcome
        assert "Permission denied" in outcome


def test_a_read_only_journal_in_a_writable_folder_is_refused_before_any_call() -> None:
    with shared_folder() as folder:
        run_dir = folder / "run"
        finished_run(run_dir)
        for path in run_dir.iterdir():
            path.chmod(0o666)
        (run_dir / "journal.sqlite").chmod(0o444)
        run_dir.chmod(0o777)
        outcome = as_nobody(functools.partial(_resume_as_nobody, run_dir))
        assert "StorageError after 0 paid calls:" in outcome, outcome
        assert "journal.sqlite is read-only" in outcome and "writable" in outcome


# ----- storage files -------------------------------------------------------------------


def test_a_truncated_journal_is_refused(tmp_path: Path) -> None:
    finished_run(tmp_path)
    journal = tmp_path / "journal.sqlite"
    data = journal.read_bytes()
    journal.write_bytes(data[: len(data) // 2])
    message, _ = refused(StorageError, tmp_path, match=str(journal))
    assert "not a readable gepetto journal" in message or "damaged" in message
    assert "move it away" in message


def test_a_journal_of_random_bytes_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").write_bytes(os.urandom(5000))
    message, _ = refused(StorageError, tmp_path, match="not a readable gepetto journal")
    assert "Restore it from a backup" in message


def test_another_programs_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    db.execute("CREATE TABLE users (name TEXT)")
    db.execute("INSERT INTO users VALUES ('ada')")
    db.commit()
    db.close()
    refused(StorageError, tmp_path, match="another program \\(tables users\\)")
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    assert db.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'runs'").fetchall() == []
    db.close()


def test_a_journal_without_its_tables_is_refused(tmp_path: Path) -> None:
    finished_run(tmp_path)
    edit_journal(tmp_path, ("DROP TABLE leases", ()), ("DROP TABLE candidates", ()))
    message, _ = refused(StorageError, tmp_path, match="lacks candidates, leases")
    assert "Restore it from a backup" in message


def test_a_damaged_run_header_is_refused(tmp_path: Path) -> None:
    finished_run(tmp_path)
    edit_journal(tmp_path, ("UPDATE runs SET header = ?", ('{"run_id": "default", "sch',)))
    refused(StorageError, tmp_path, match="the header of run 'default' in .* is damaged")


def test_a_record_of_an_unknown_kind_is_refused_naming_it(tmp_path: Path) -> None:
    finished_run(tmp_path)
    edit_journal(tmp_path, ("UPDATE records SET body = ? WHERE seq = 2", ('{"kind": "mystery"}',)))
    refused(StorageError, tmp_path, match="record 2 of run 'default' cannot be read back")


def test_records_that_contradict_each_other_are_refused(tmp_path: Path) -> None:
    finished_run(tmp_path)
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    (body,) = db.execute(
        'SELECT body FROM records WHERE body LIKE \'%"kind":"candidate"%\' ORDER BY seq'
    ).fetchone()
    db.close()
    # What two processes on one run used to write: a second candidate 0.
    edit_journal(tmp_path, ("INSERT INTO records (run_id, body) VALUES ('default', ?)", (body,)))
    message, _ = refused(StorageError, tmp_path, match="cannot be replayed")
    assert "fork=True" in message


def test_a_folder_where_the_journal_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite").mkdir()
    refused(StorageError, tmp_path, match="is a folder where the journal file should be")


def test_a_storage_url_naming_no_file_is_refused(tmp_path: Path) -> None:
    refused(ConfigError, None, match="names no file", storage="sqlite:///")


# ----- concurrent processes --------------------------------------------------------------


def test_a_lone_run_is_refused_while_workers_run_it(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    worker = Optimizer(
        SEED,
        TRAIN,
        VAL,
        max_metric_calls=BUDGET,
        storage=storage,
        worker="w1",
        adapter_fingerprint=Counting().fingerprint(),
    )
    refused(StorageError, tmp_path, match="being run by worker processes")
    worker.release()
    storage.close()
    assert run(tmp_path).total_metric_calls <= BUDGET  # once they are gone, it runs


def test_a_fork_beside_a_run_in_use_runs_cleanly(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    holder = Optimizer(SEED, TRAIN, VAL, max_metric_calls=BUDGET, storage=storage)
    paid = Paid()
    forked = run(tmp_path, paid, seed_candidate={"instructions": "Reply."}, fork=True)
    assert paid.adapter.paid == forked.total_metric_calls <= BUDGET
    assert storage.header("default-fork-1") is not None
    holder.release()
    storage.close()


def test_a_lock_file_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite.default.lock").mkdir()
    refused(StorageError, tmp_path, match="cannot create the run's lock file")


def test_a_stale_lock_file_is_harmless(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite.default.lock").write_text("999999\n")  # a process long gone
    first = run(tmp_path)
    paid = Paid()
    again = run(tmp_path, paid)
    assert paid.calls == 0 and again.total_metric_calls == first.total_metric_calls


@pytest.mark.parametrize("run_id", ["../../outside", "a/b", "ü" * 100, ""])
def test_an_odd_run_id_keeps_its_lock_file_in_the_run_folder(tmp_path: Path, run_id: str) -> None:
    run_dir = tmp_path / "run"
    result = run(run_dir, run_id=run_id)
    assert result.total_metric_calls <= BUDGET
    assert {p.parent for p in tmp_path.rglob("*.lock")} == {run_dir}
    assert len(list(run_dir.glob("*.lock"))) == 1


# ----- fingerprints ----------------------------------------------------------------------


def _with(examples: list[Any], position: int, **fields: Any) -> list[Any]:
    changed = list(examples)
    changed[position] = {**changed[position], **fields}
    return changed


@pytest.mark.parametrize(
    ("options", "where"),
    [
        (
            {"trainset": _with(TRAIN, 2, steps=[{"ok": 1}, {"check": lambda x: x}])},
            "trainset[2]['steps'][1]['check']",
        ),
        ({"valset": _with(VAL, 0, items=(n for n in range(3)))}, "valset[0]['items']"),
        ({"trainset": _with(TRAIN, 1, id=1.5, meta=object())}, "trainset[1]['meta']"),
        ({"testset": _with(VAL, 3, meta=Paid)}, None),
        ({"testset": _with(VAL, 3, meta=Paid())}, "testset[3]['meta']"),
    ],
)
def test_a_value_without_a_stable_form_is_refused_naming_it(
    tmp_path: Path, options: dict[str, Any], where: str | None
) -> None:
    if where is None:  # a class has a stable repr: nothing to refuse
        assert run(tmp_path, **options).total_metric_calls <= BUDGET
        return
    message, _ = refused(ConfigError, tmp_path, **options)
    assert message.startswith(f"{where} has no stable form"), message
    assert "an id (a str or int under the key 'id'" in message


def test_a_self_referencing_example_is_refused(tmp_path: Path) -> None:
    looped: dict[str, Any] = {"needs": "w0"}
    looped["self"] = looped
    message, _ = refused(ConfigError, tmp_path, trainset=[looped, *TRAIN])
    assert message.startswith("trainset[0]['self'] has no stable form")


def test_another_testset_on_resume_is_refused(tmp_path: Path) -> None:
    run(tmp_path, testset=VAL)
    message, _ = refused(ConfigError, tmp_path, testset=VAL[:2], max_metric_calls=40)
    assert "a different testset" in message


# ----- refused resumes -------------------------------------------------------------------


def test_a_resume_that_changes_many_things_names_every_one(tmp_path: Path) -> None:
    run(tmp_path)
    message, _ = refused(
        ConfigError,
        tmp_path,
        seed_candidate={"instructions": "Other."},
        valset=VAL[:3],
        frontier_type="objective",
        reflection_retries=3,
    )
    assert "a different seed_candidate, valset" in message
    assert "frontier_type: 'instance' in the journal, 'objective' now" in message
    assert "reflection_retries: 1 in the journal, 3 now" in message
    assert "fork=True" in message


def test_a_refused_resume_leaves_the_run_resumable(tmp_path: Path) -> None:
    first = run(tmp_path, max_metric_calls=12)
    refused(ConfigError, tmp_path, seed=7)
    paid = Paid()
    extended = run(tmp_path, paid, max_metric_calls=BUDGET)
    assert extended.total_metric_calls == first.total_metric_calls + paid.adapter.paid
    assert extended.candidates[: len(first.candidates)] == first.candidates


def test_a_call_refused_after_the_run_was_opened_leaves_no_run_behind(tmp_path: Path) -> None:
    refusals: list[Callable[[], object]] = [
        lambda: run(tmp_path, adapter=None, task_lm="nosuch/model"),
        lambda: run(tmp_path, reflection_lm="nosuch/model"),
    ]
    for refusal in refusals:
        with pytest.raises(ConfigError, match="unknown model string"):
            refusal()
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    assert storage.header("default") is None  # nothing recorded: any settings start anew
    storage.close()
    paid = Paid()
    result = run(tmp_path, paid, seed=3)
    assert paid.adapter.paid == result.total_metric_calls > 0


def test_a_header_edited_to_hold_garbage_settings_names_them(tmp_path: Path) -> None:
    run(tmp_path)
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    (text,) = db.execute("SELECT header FROM runs").fetchone()
    header = json.loads(text)
    header["config"]["perfect_score"] = "very"
    header["config"]["a_setting_from_the_future"] = 1
    db.execute("UPDATE runs SET header = ?", (json.dumps(header),))
    db.commit()
    db.close()
    message, _ = refused(ConfigError, tmp_path)
    assert "perfect_score: 'very' in the journal, 1.0 now" in message
    assert "a_setting_from_the_future: 1 in the journal, 'not set' now" not in message
    assert "a_setting_from_the_future: 1 in the journal, not set now" in message

"""JSON-lines export of a run's journal (gepetto.storage.export), and reading it back."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.records import record_from_dict, record_to_dict
from gepetto.storage import MemoryStorage, RunHeader, SQLiteStorage, StorageError
from gepetto.storage.export import (
    EXPORT_FORMAT,
    export_jsonl,
    main,
    read_jsonl,
    to_record,
)
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

FIXTURE = Path(__file__).parent.parent / "fixtures" / "journal_v1.sqlite"
WORDS = [f"w{i}" for i in range(6)]


def small_run(run_dir: Path, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS, copies=2),
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=60,
        run_dir=run_dir,
        display_progress_bar=False,
        **options,
    )


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A finished run's folder (its journal.sqlite holds run ``default``)."""
    small_run(tmp_path / "run")
    return tmp_path / "run"


def test_round_trip(journal: Path, tmp_path: Path) -> None:
    storage = SQLiteStorage(journal / "journal.sqlite")
    stored = storage.read("default")
    header = storage.header("default")
    written = export_jsonl(storage, "default", tmp_path / "run.jsonl")
    storage.close()
    assert header is not None and written == len(stored) > 10

    head, rows = read_jsonl(tmp_path / "run.jsonl")
    assert head == {
        "kind": "header",
        "format": EXPORT_FORMAT,
        "format_version": 1,
        "run_id": "default",
        "schema_version": header.schema_version,
        "fingerprints": dict(header.fingerprints),
        "config": json.loads(json.dumps(dict(header.config))),
        "created_at": header.created_at,
        "records": len(stored),
    }
    assert [(row["seq"], {k: v for k, v in row.items() if k != "seq"}) for row in rows] == stored
    # The records rebuild, losslessly, as gepetto records.
    for row, (_, body) in zip(rows, stored, strict=True):
        record = to_record(row)
        assert record == record_from_dict(body)
        as_json = json.loads(json.dumps(record_to_dict(record)))
        assert as_json == {k: v for k, v in row.items() if k != "seq"}


def test_every_line_is_a_json_object_header_first(journal: Path, tmp_path: Path) -> None:
    storage = SQLiteStorage(journal / "journal.sqlite")
    buffer = io.StringIO()
    count = export_jsonl(storage, "default", buffer)
    storage.close()
    text = buffer.getvalue()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == count + 1
    assert all(isinstance(line, dict) for line in lines)
    assert lines[0]["kind"] == "header"
    assert {line["kind"] for line in lines[1:]} >= {"candidate", "evaluation", "decision"}
    seqs = [line["seq"] for line in lines[1:]]
    assert seqs == sorted(set(seqs))
    assert all(next(iter(line)) == "seq" for line in lines[1:]), "seq comes first"
    # The same text whether written to a file object or a path.
    export_jsonl(SQLiteStorage(journal / "journal.sqlite"), "default", tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == text
    assert read_jsonl(io.StringIO(text)) == read_jsonl(tmp_path / "out.jsonl")


def test_any_backend_exports(tmp_path: Path) -> None:
    storage = MemoryStorage()
    storage.create(RunHeader("r", fingerprints={"seed_candidate": "abc"}, created_at=1.5))
    storage.append("r", [{"kind": "lm_call", "role": "reflection", "model": "ünïcode"}])
    assert export_jsonl(storage, "r", tmp_path / "r.jsonl") == 1
    head, rows = read_jsonl(tmp_path / "r.jsonl")
    assert head["run_id"] == "r" and head["fingerprints"] == {"seed_candidate": "abc"}
    assert rows[0]["model"] == "ünïcode"
    assert "ünïcode" in (tmp_path / "r.jsonl").read_text(encoding="utf-8")


def test_unknown_run_is_refused_and_no_file_is_left(tmp_path: Path) -> None:
    storage = MemoryStorage()
    with pytest.raises(StorageError, match="no run 'nope'"):
        export_jsonl(storage, "nope", tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


HEAD = '{"kind": "header", "format": "gepetto-journal"}\n'


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no header"),
        ('{"seq": 1, "kind": "iteration"}\n', "starts with its header"),
        (HEAD.replace("}", ', "records": 2}') + '{"seq": 1, "kind": "x"}\n', "announces 2"),
        (HEAD + '{"seq": 2, "kind": "x"}\n{"seq": 2, "kind": "x"}\n', "does not follow"),
        (HEAD + '{"kind": "x"}\n', "integer 'seq'"),
        (HEAD + '{"seq": true, "kind": "x"}\n', "integer 'seq'"),
        (HEAD + "[1, 2]\n", "not a JSON object"),
        (HEAD + '{"seq": 1,\n', "not JSON"),
        (HEAD.replace("}", ', "format_version": 9}'), "newer"),
    ],
)
def test_malformed_exports_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        read_jsonl(io.StringIO(text))


def test_truncated_export_is_detected(journal: Path, tmp_path: Path) -> None:
    storage = SQLiteStorage(journal / "journal.sqlite")
    export_jsonl(storage, "default", tmp_path / "run.jsonl")
    storage.close()
    lines = (tmp_path / "run.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "cut.jsonl").write_text("".join(lines[:-3]), encoding="utf-8")
    with pytest.raises(ValueError, match="announces"):
        read_jsonl(tmp_path / "cut.jsonl")


def test_fixture_of_format_1_exports_from_the_command_line(tmp_path: Path) -> None:
    shutil.copy(FIXTURE, tmp_path / "journal.sqlite")
    command = [sys.executable, "-m", "gepetto.storage.export", str(tmp_path)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    head, rows = read_jsonl(io.StringIO(out))
    assert head["run_id"] == "default" and head["schema_version"] == 1
    assert head["records"] == len(rows) == 20
    records = [to_record(row) for row in rows]
    assert {r.kind for r in records} >= {"candidate", "evaluation", "iteration", "decision"}
    assert next(r for r in records if r.kind == "candidate").texts == {"instructions": "Answer."}
    # -o writes the same thing to a file; the journal file itself is accepted too.
    output = tmp_path / "out" / "run.jsonl"
    output.parent.mkdir()
    file_command = [*command[:-1], str(tmp_path / "journal.sqlite"), "-o", str(output)]
    result = subprocess.run(file_command, check=True, capture_output=True, text=True)
    assert result.stdout == ""
    assert output.read_text(encoding="utf-8") == out


def test_cli_selects_a_run_and_reports_errors(
    journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second run beside the first, in the same file.
    storage = SQLiteStorage(journal / "journal.sqlite")
    storage.create(RunHeader("other"))
    storage.append("other", [{"kind": "iteration", "iteration": 0, "parent_id": 0}])
    storage.close()
    assert main([str(journal), "--run-id", "other"]) == 0
    head, rows = read_jsonl(io.StringIO(capsys.readouterr().out))
    assert head["run_id"] == "other" and [r["kind"] for r in rows] == ["iteration"]
    assert rows[0]["seq"] > 20, "sequence numbers are the storage's, shared by its runs"

    assert main([str(journal), "--run-id", "missing"]) == 1
    assert "no run 'missing'" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere")]) == 1
    assert "no journal at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists(), "a missing journal must not be created"
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "journal.sqlite").write_text("not a database at all" * 100)
    assert main([str(tmp_path / "junk")]) == 1
    assert "error:" in capsys.readouterr().err

"""Export a run's journal as JSON lines, and read such a file back.

The format is one JSON object per line (UTF-8, ``\\n`` line ends):

- line 1, the run header: ``{"kind": "header", "format": "gepetto-journal",
  "format_version": 1, "run_id": ..., "schema_version": ..., "fingerprints": {...},
  "config": {...}, "created_at": ..., "records": N}``, where ``schema_version`` is the
  journal's record format and ``records`` the number of record lines that follow (so a
  truncated file is detected);
- then the ``N`` records of the run in journal order, each the stored record (a
  :func:`gepetto.records.record_to_dict` object with its ``"kind"``) with its sequence number
  ``"seq"`` added first. Sequence numbers increase strictly; they need not be contiguous (one
  storage file can hold several runs).

Values are written as Python's :mod:`json` writes them (a non-finite score becomes ``NaN``
or ``Infinity``). The export reads the run once, through the storage protocol, so it works
for every backend; it never writes to the storage.

From the command line (SQLite journals of a ``run_dir``)::

    python -m gepetto.storage.export RUN_DIR [--run-id ID] [-o FILE]

writes the run (default ``default``) of ``RUN_DIR/journal.sqlite`` to standard output, or to
``FILE`` (written to a temporary file first, then renamed, so ``FILE`` is never half
written). ``RUN_DIR`` may also be the journal file itself. Opening a journal made by an older
gepetto upgrades it in place, as resuming the run would.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from gepetto.records import Record, record_from_dict
from gepetto.storage.base import JournalStorage, StorageError

__all__ = ["EXPORT_FORMAT", "EXPORT_FORMAT_VERSION", "export_jsonl", "read_jsonl", "to_record"]

EXPORT_FORMAT = "gepetto-journal"
"""The ``format`` field of the header line."""

EXPORT_FORMAT_VERSION = 1
"""Version of the JSON-lines layout (not of the records, see ``schema_version``)."""


def export_jsonl(
    storage: JournalStorage, run_id: str, path_or_file: str | os.PathLike[str] | TextIO
) -> int:
    """Write the header and every record of run ``run_id`` as JSON lines.

    Args:
        storage: any journal backend; only ``header`` and ``read`` are called.
        run_id: the run to export.
        path_or_file: a file path (written atomically: a temporary file in the same folder,
            renamed over the path once complete) or an open text file (written to, not
            closed).

    Returns:
        The number of records written (not counting the header line).

    Raises:
        StorageError: the storage has no run ``run_id``, or a stored record already has a
            ``"seq"`` field or no ``"kind"``.
    """
    header = storage.header(run_id)
    if header is None:
        raise StorageError(f"no run {run_id!r} in this storage")
    rows = storage.read(run_id)
    head = {
        "kind": "header",
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "run_id": header.run_id,
        "schema_version": header.schema_version,
        "fingerprints": dict(header.fingerprints),
        "config": dict(header.config),
        "created_at": header.created_at,
        "records": len(rows),
    }
    lines = _lines(head, rows)
    if isinstance(path_or_file, str | os.PathLike):
        with _atomic_text_file(Path(path_or_file)) as file:
            file.writelines(lines)
    else:
        path_or_file.writelines(lines)
    return len(rows)


def _lines(head: Mapping[str, Any], rows: Sequence[tuple[int, Mapping[str, Any]]]) -> Iterator[str]:
    yield _dump(head)
    for seq, record in rows:
        if "seq" in record or "kind" not in record:
            raise StorageError(f"record {seq} cannot be exported: {dict(record)!r}")
        yield _dump({"seq": seq, **record})


def _dump(value: Mapping[str, Any]) -> str:
    # default=repr, as the storages encode records: a value that is not JSON is kept readable.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=repr) + "\n"


@contextmanager
def _atomic_text_file(path: Path) -> Iterator[TextIO]:
    """A text file that appears at ``path`` only once it is completely written."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_jsonl(
    path_or_lines: str | os.PathLike[str] | Iterable[str],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a file written by :func:`export_jsonl`.

    Args:
        path_or_lines: the file's path, or its lines (an open text file).

    Returns:
        ``(header, records)``: the header line as a dict (with ``"kind": "header"``) and the
        records as dicts, in order, each with its ``"seq"`` (see :func:`to_record`).

    Raises:
        ValueError: the text is not such an export (no header first, a line that is not a
            JSON object, a record without ``seq`` or ``kind``, sequence numbers that do not
            increase, or fewer or more records than the header announces). Blank lines are
            ignored.
    """
    if isinstance(path_or_lines, str | os.PathLike):
        with open(path_or_lines, encoding="utf-8") as file:
            return _parse(file)
    return _parse(path_or_lines)


def _parse(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    last_seq = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"line {number} is not JSON: {error}") from None
        if not isinstance(value, dict):
            raise ValueError(f"line {number} is not a JSON object")
        if header is None:
            if value.get("kind") != "header" or value.get("format") != EXPORT_FORMAT:
                raise ValueError(f"line {number}: a {EXPORT_FORMAT} export starts with its header")
            if int(value.get("format_version", 0)) > EXPORT_FORMAT_VERSION:
                raise ValueError(
                    f"export format version {value['format_version']} is newer than this "
                    f"gepetto reads ({EXPORT_FORMAT_VERSION})"
                )
            header = value
            continue
        seq = value.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or "kind" not in value:
            raise ValueError(f"line {number}: a record needs an integer 'seq' and a 'kind'")
        if seq <= last_seq:
            raise ValueError(f"line {number}: seq {seq} does not follow {last_seq}")
        last_seq = seq
        records.append(value)
    if header is None:
        raise ValueError("empty export: no header line")
    expected = header.get("records")
    if expected is not None and expected != len(records):
        raise ValueError(f"the header announces {expected} records, the file has {len(records)}")
    return header, records


def to_record(row: Mapping[str, Any]) -> Record:
    """The :mod:`gepetto.records` record of a row returned by :func:`read_jsonl`.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    return record_from_dict({key: value for key, value in row.items() if key != "seq"})


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: export a ``run_dir``'s SQLite journal; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m gepetto.storage.export",
        description="Write a run's journal (header and records) as JSON lines.",
    )
    parser.add_argument("run_dir", help="the run's folder (or its journal.sqlite file)")
    parser.add_argument(
        "--run-id", default="default", help="the run to export (default: %(default)s)"
    )
    parser.add_argument("-o", "--output", help="the file to write (default: standard output)")
    args = parser.parse_args(argv)

    from gepetto.storage import JOURNAL_FILE_NAME, SQLiteStorage

    path = Path(args.run_dir)
    if path.is_dir():
        path = path / JOURNAL_FILE_NAME
    if not path.is_file():
        print(f"error: no journal at {path}", file=sys.stderr)
        return 1
    try:
        storage = SQLiteStorage(path)
    except StorageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        if storage.header(args.run_id) is None:
            print(f"error: no run {args.run_id!r} in {path}", file=sys.stderr)
            return 1
        export_jsonl(storage, args.run_id, args.output if args.output else sys.stdout)
        if not args.output:
            sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (StorageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        storage.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

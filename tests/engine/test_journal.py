"""The journal's fingerprints are canonical: the same examples resume in any process, whatever
PYTHONHASHSEED; a value without a stable form is refused up front, naming where it is,
unless its example has an id."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = [f"w{i}" for i in range(4)]
COLOURS = ["red", "green", "blue", "cyan", "magenta", "yellow"]

SET_RUN = r"""
import json, sys
import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter

class Counting(KeywordAdapter):
    paid = 0
    def evaluate(self, batch, candidate, capture_traces=False):
        Counting.paid += len(batch)
        return super().evaluate(batch, candidate, capture_traces)

colours = ["red", "green", "blue", "cyan", "magenta", "yellow"]
examples = [{"needs": f"w{i}", "tags": set(colours), "seen": frozenset(colours[:i + 2])}
            for i in range(4)]
result = gepetto.optimize(
    {"instructions": "Answer."}, examples * 2, examples, adapter=Counting(),
    reflection_lm=FeedbackFollowingLM(), max_metric_calls=int(sys.argv[2]), run_dir=sys.argv[1],
    display_progress_bar=False,
)
print(json.dumps({"paid": Counting.paid, "total": result.total_metric_calls}))
"""


def run_with_hash_seed(tmp_path: Path, hash_seed: str, budget: int) -> dict[str, Any]:
    script = tmp_path / "set_run.py"
    script.write_text(SET_RUN)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run"), str(budget)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_examples_holding_sets_resume_under_another_hash_seed(tmp_path: Path) -> None:
    first = run_with_hash_seed(tmp_path, "1", budget=20)
    assert 0 < first["paid"] == first["total"] <= 20
    extended = run_with_hash_seed(tmp_path, "2", budget=40)  # the same run, resumed
    assert extended["total"] == first["total"] + extended["paid"] <= 40
    again = run_with_hash_seed(tmp_path, "3", budget=40)  # finished: nothing to pay
    assert again == {"paid": 0, "total": extended["total"]}


class Opaque:
    """A plain object: its repr holds its address, which changes in every process."""

    def __init__(self, value: int) -> None:
        self.value = value


def run(run_dir: Path, trainset: list[Any], adapter: KeywordAdapter, budget: int = 24) -> Any:
    return gepetto.optimize(
        {"instructions": "Answer."},
        trainset,
        adapter=adapter,
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget,
        run_dir=run_dir,
        display_progress_bar=False,
    )


def test_a_plain_object_in_an_example_is_refused_naming_it(tmp_path: Path) -> None:
    trainset = keyword_dataset(WORDS)
    trainset[3] = {**trainset[3], "meta": Opaque(3)}
    adapter = KeywordAdapter()
    with pytest.raises(ConfigError) as caught:
        run(tmp_path, trainset, adapter)
    message = str(caught.value)
    assert message.startswith("trainset[3]['meta'] has no stable form")
    assert "Give each example of trainset an id" in message
    assert adapter.evaluate_calls == 0
    assert not (tmp_path / "journal.sqlite").exists() or run_headers(tmp_path) == []


def run_headers(run_dir: Path) -> list[str]:
    from gepetto.storage import SQLiteStorage

    storage = SQLiteStorage(run_dir / "journal.sqlite")
    try:
        return [run_id for run_id in ("default",) if storage.header(run_id) is not None]
    finally:
        storage.close()


@dataclass
class Ticket:
    id: str
    needs: str
    handler: Any


class TicketAdapter(KeywordAdapter):
    """KeywordAdapter for Ticket examples."""

    def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
        return super().evaluate([{"needs": t.needs} for t in batch], candidate, capture_traces)


def test_examples_with_ids_resume_whatever_else_they_hold(tmp_path: Path) -> None:
    def examples() -> list[Any]:  # new objects (other addresses) in each call
        dicts: list[Any] = [{"id": i, "needs": w, "meta": Opaque(i)} for i, w in enumerate(WORDS)]
        return dicts

    adapter = KeywordAdapter()
    first = run(tmp_path / "dicts", examples(), adapter, budget=12)
    paid = adapter.evaluate_calls
    resumed = run(tmp_path / "dicts", examples(), adapter, budget=12)
    assert adapter.evaluate_calls == paid, "the finished run was paid for again"
    assert resumed.total_metric_calls == first.total_metric_calls

    def tickets() -> list[Any]:  # objects with an id attribute, holding a lambda
        return [Ticket(f"t{i}", w, lambda: None) for i, w in enumerate(WORDS)]

    ticket_adapter = TicketAdapter()
    run(tmp_path / "tickets", tickets(), ticket_adapter, budget=12)
    paid = ticket_adapter.evaluate_calls
    run(tmp_path / "tickets", tickets(), ticket_adapter, budget=12)
    assert ticket_adapter.evaluate_calls == paid


def test_canonical_forms() -> None:
    from gepetto.engine.journal import (
        canonical,
        dataset_fingerprint,
        fingerprint,
        legacy_fingerprint,
    )

    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": (1, 2), "a": 1})
    assert fingerprint({3, 1, 2}) == fingerprint(frozenset([2, 3, 1]))
    assert fingerprint({1, 2}) != fingerprint([1, 2])
    assert fingerprint({1: "a", "1": "b"}) != fingerprint({"1": "a", 1: "b"})
    assert canonical(b"\x00\xff") == {"__bytes__": "00ff"}
    assert canonical(Ticket("t", "w", "h")) == {
        "__dataclass__": f"{__name__}.Ticket",
        "id": "t",
        "needs": "w",
        "handler": "h",
    }
    # Plain JSON data keeps the fingerprint gepetto wrote before canonical forms.
    plain = keyword_dataset(WORDS, copies=2)
    assert dataset_fingerprint(plain, "trainset") == legacy_fingerprint(plain)
    for value, where in [
        ({"f": lambda: 1}, "value['f']"),
        ([1, Opaque(1)], "value[1]"),
        (Ticket("t", "w", Opaque(2)), "value.handler"),
        ({"s": {Opaque(3)}}, "value['s'] (item"),
    ]:
        with pytest.raises(ConfigError, match=rf"^{__import__('re').escape(where)}"):
            canonical(value)
    looped: list[Any] = [1]
    looped.append(looped)
    with pytest.raises(
        ConfigError,
        match=r"value\[1\] has no stable form for the run.s fingerprint \(it contains itself\)",
    ):
        canonical(looped)


def test_a_journal_with_a_pre_canonical_fingerprint_still_resumes(tmp_path: Path) -> None:
    from gepetto.engine.journal import legacy_fingerprint

    # Dataclass examples: fingerprinted by their repr before canonical forms existed.
    trainset = [Ticket(f"t{i}", w, None) for i, w in enumerate(WORDS)]
    adapter = TicketAdapter()
    first = run(tmp_path, trainset, adapter, budget=12)
    db = sqlite3.connect(tmp_path / "journal.sqlite")
    (text,) = db.execute("SELECT header FROM runs WHERE run_id = 'default'").fetchone()
    header = json.loads(text)
    header["fingerprints"]["trainset"] = header["fingerprints"]["valset"] = legacy_fingerprint(
        trainset
    )
    db.execute("UPDATE runs SET header = ? WHERE run_id = 'default'", (json.dumps(header),))
    db.commit()
    db.close()
    paid = adapter.evaluate_calls
    assert run(tmp_path, trainset, adapter, budget=12).candidates == first.candidates
    assert adapter.evaluate_calls == paid
    changed = [Ticket(t.id, t.needs + "x", None) for t in trainset]
    with pytest.raises(ConfigError, match="a different trainset, valset"):
        run(tmp_path, changed, adapter, budget=12)

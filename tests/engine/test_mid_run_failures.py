"""What goes wrong in the middle of a run ends as a clear GepettoError or a recorded
failure, never as a raw crash, and nothing that was paid for is lost."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import AdapterContractError
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = ["alpha", "beta", "gamma"]


class Counting(KeywordAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.handed = 0
        self._lock = threading.Lock()

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        with self._lock:
            self.handed += len(batch)
        return super().evaluate(batch, candidate, capture_traces)


class StringRecords(Counting):
    """Returns plain strings as the records of its reflective dataset."""

    def make_reflective_dataset(self, candidate: Any, eval_batch: Any, components: Any) -> Any:
        return {name: [f"feedback {score}" for score in eval_batch.scores] for name in components}


def optimize(adapter: KeywordAdapter, lm: ScriptedLM, **options: Any) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(WORDS),
        adapter=adapter,
        reflection_lm=lm,
        max_metric_calls=30,
        display_progress_bar=False,
        **options,
    )


def test_reflective_records_that_are_not_dicts_are_a_contract_error(tmp_path: Path) -> None:
    adapter = StringRecords()
    lm = ScriptedLM(["```\nAnswer. alpha\n```"], repeat_last=True)
    with pytest.raises(AdapterContractError) as raised:
        optimize(adapter, lm, run_dir=tmp_path)
    message = str(raised.value)
    assert "StringRecords.make_reflective_dataset" in message
    assert "record of type str for component 'instructions'" in message
    assert lm.calls == 0
    # Nothing paid for is lost: the error carries the result, the journal has it all.
    paid = raised.value.result
    assert paid is not None
    assert paid.total_metric_calls == adapter.handed > 0
    assert paid.best_candidate == {"instructions": "Answer."}
    assert "AdapterContractError" in (paid.stop_reason or "")
    events = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["event"] == "run_finished"


def test_a_reply_with_lone_surrogates_is_a_failed_proposal_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    replies = ["```\nAnswer. alpha \ud800\n```", "```\nAnswer. alpha beta gamma\n```"]
    lm = ScriptedLM(replies, repeat_last=True)
    result = optimize(Counting(), lm, run_dir=tmp_path, reflection_retries=0)
    failed = [d for d in result.decisions if d["outcome"] == "failed"]
    assert "lone surrogate" in failed[0]["reason"]
    assert result.best_score == 1.0  # the next reply was used
    json.loads(result.to_json())
    resumed = optimize(Counting(), ScriptedLM([]), run_dir=tmp_path, reflection_retries=0)
    assert resumed.best_score == 1.0


def test_a_stop_condition_that_raises_stops_the_run_cleanly() -> None:
    def broken(status: gepetto.RunStatus) -> bool:
        if status.iterations >= 1:
            raise ZeroDivisionError("division by zero in my stop rule")
        return False

    lm = ScriptedLM(["```\nAnswer. alpha\n```"], repeat_last=True)
    result = optimize(Counting(), lm, stop_callbacks=[broken])
    assert "ZeroDivisionError: division by zero in my stop rule" in (result.stop_reason or "")
    assert result.num_iterations >= 1

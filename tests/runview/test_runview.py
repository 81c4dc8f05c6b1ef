"""gepetto.runview on real runs: SQLite journals written by optimize(run_dir=...)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import gepetto
from gepetto.records import record_to_dict
from gepetto.runview import (
    NotARun,
    RunView,
    candidate_detail,
    compare_runs,
    lineage,
    list_runs,
    open_run,
    open_store,
    progress,
    score_matrix,
    summary,
)
from gepetto.storage import SQLiteStorage
from gepetto.storage.base import StorageError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]


def _run(run_dir: Path, budget: int) -> gepetto.Result:
    data = keyword_dataset(WORDS)
    return gepetto.optimize(
        {"instructions": "Answer."},
        data,
        data,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=budget,
        reflection_minibatch_size=2,
        run_dir=run_dir,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gepetto.Result]:
    run_dir = tmp_path_factory.mktemp("runs") / "finished"
    return run_dir, _run(run_dir, 60)


def test_the_views_agree_with_the_result(finished: tuple[Path, gepetto.Result]) -> None:
    run_dir, result = finished
    with open_run(run_dir) as view:
        head = summary(view)
        assert head.status == "finished" and head.stop_reason == result.stop_reason
        assert head.best_id == result.best_idx
        assert head.best_score == pytest.approx(result.val_aggregate_scores[result.best_idx])
        assert head.best_texts == result.best_candidate
        assert head.budget_total == 60 and head.budget_used == result.total_metric_calls
        assert head.pool_size == len(result.candidates)
        assert head.outcomes["accepted"] == len(result.candidates) - 1

        series = progress(view)
        assert series.points[0]["iteration"] == -1 and series.points[0]["candidate_id"] == 0
        calls = [p["metric_calls"] for p in series.points]
        assert calls == sorted(calls) and calls[-1] == result.total_metric_calls
        best = [p["best_score"] for p in series.points]
        assert best == sorted(best) and best[-1] == head.best_score
        assert all(p["at"] is not None and p["elapsed_s"] >= 0 for p in series.points)

        matrix = score_matrix(view)
        assert matrix.example_ids == (0, 1, 2, 3)
        for row, candidate_id in zip(matrix.scores, matrix.candidate_ids, strict=True):
            assert list(row) == [result.val_subscores[candidate_id][e] for e in range(4)]

        tree = lineage(view)
        assert [n["parents"] for n in tree.nodes] == [list(p) for p in result.parents]
        assert [n["role"] for n in tree.nodes].count("best") == 1
        assert {d["outcome"] for d in tree.decisions} >= {"accepted"}
        assert all(d["reason"] for d in tree.decisions)
        json.dumps(tree.to_json(), allow_nan=False)  # strict JSON


def test_candidate_detail_has_the_diff_and_the_reflection(
    finished: tuple[Path, gepetto.Result],
) -> None:
    run_dir, result = finished
    with open_run(run_dir) as view:
        detail = candidate_detail(view, 2)
        parent = result.parents[2][0]
        diff = detail.diffs[parent]["instructions"]
        old, new = result.candidates[parent]["instructions"], result.candidates[2]["instructions"]
        assert f"-{old}" in diff.splitlines() and f"+{new}" in diff.splitlines()
        assert detail.decision is not None and detail.decision["outcome"] == "accepted"
        reflection = detail.reflection
        assert reflection is not None
        assert old in reflection["prompts"]["instructions"]  # the prompt shows the parent text
        assert new in reflection["replies"]["instructions"]
        assert candidate_detail(view, 0).reflection is None
        with pytest.raises(KeyError, match="has no candidate 99"):
            candidate_detail(view, 99)
        json.dumps(detail.to_json(), allow_nan=False)


def test_after_lists_only_what_is_new(tmp_path: Path) -> None:
    run_dir = tmp_path / "growing"
    _run(run_dir, 12)
    with open_run(run_dir) as view:
        before = progress(view)
        seen = view.last_seq
        assert progress(view, after=seen).points == ()
        assert lineage(view, after=seen).decisions == ()
        assert view.refresh() == 0
        _run(run_dir, 60)  # resume with a larger budget: the run grows under the open view
        assert view.refresh() > 0
        new = progress(view, after=seen)
        assert new.points and all(p["seq"] > seen for p in new.points)
        assert progress(view).points == before.points + new.points
        tree = lineage(view, after=seen)
        assert all(n["seq"] > seen for n in tree.nodes)
        assert len(tree.scores) == summary(view).pool_size  # whole, whatever ``after``


def test_live_is_read_from_the_run_lock(finished: tuple[Path, gepetto.Result]) -> None:
    run_dir, _ = finished
    holder = SQLiteStorage(run_dir / "journal.sqlite")
    held = holder.lock_run("default")
    try:
        with open_run(run_dir) as view:
            assert summary(view).status == "live"
            assert list_runs(view.store)[0].live is True
    finally:
        held.release()
        holder.close()
    with open_run(run_dir) as view:
        assert summary(view).status == "finished"


def test_a_run_killed_without_run_finished_reads_as_interrupted(
    finished: tuple[Path, gepetto.Result], tmp_path: Path
) -> None:
    run_dir, _ = finished
    copy = tmp_path / "killed"
    copy.mkdir()
    (copy / "journal.sqlite").write_bytes((run_dir / "journal.sqlite").read_bytes())
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    (copy / "events.jsonl").write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    with open_run(copy) as view:
        status, reason = summary(view).status, summary(view).stop_reason
    assert status == "interrupted" and reason is not None and "without finishing" in reason


def test_a_storage_url_without_event_log(finished: tuple[Path, gepetto.Result]) -> None:
    run_dir, result = finished
    with open_run(f"sqlite:///{run_dir / 'journal.sqlite'}") as view:
        assert summary(view).best_id == result.best_idx
    store = open_store(run_dir / "journal.sqlite")
    store.run_dir = None  # a journal alone, as a shared storage URL has it
    with store, RunView(store) as view:
        head = summary(view)
        assert head.status == "stopped" and head.updated_at is None
        assert progress(view).points[-1]["at"] is None
        detail = candidate_detail(view, 1).reflection
        assert detail is not None and detail["prompts"] == {} and detail["proposed"]


def test_compare_two_runs(finished: tuple[Path, gepetto.Result], tmp_path: Path) -> None:
    run_dir, _ = finished
    short = tmp_path / "short"
    _run(short, 12)
    with open_run(run_dir) as a, open_run(short) as b:
        comparison = compare_runs(a, b)
    assert comparison.shared_examples == (0, 1, 2, 3)
    assert comparison.a_mean_shared is not None and comparison.b_mean_shared is not None
    assert comparison.a_mean_shared > comparison.b_mean_shared
    assert comparison.wins["a"] >= 1 and comparison.wins["b"] == 0
    assert comparison.best_diffs["instructions"].startswith("--- A candidate")


def test_bad_sources_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(NotARun, match="does not exist"):
        open_store(tmp_path / "nothing")
    with pytest.raises(NotARun, match=r"holds no journal\.sqlite"):
        open_store(tmp_path)
    with pytest.raises(NotARun, match="is not a run"):
        open_store("https://example.invalid/run")
    (tmp_path / "journal.sqlite").write_bytes(b"not a database at all, just text" * 40)
    with pytest.raises(StorageError) as caught:
        open_store(tmp_path)
    assert "\n" not in str(caught.value)


def test_a_damaged_record_is_named(finished: tuple[Path, gepetto.Result], tmp_path: Path) -> None:
    run_dir, _ = finished
    copy = tmp_path / "damaged.sqlite"
    copy.write_bytes((run_dir / "journal.sqlite").read_bytes())
    with sqlite3.connect(copy) as db:
        db.execute('UPDATE records SET body = \'{"kind": "candidate"}\' WHERE seq = 8')
    with pytest.raises(StorageError, match="record 8 of run 'default'"):
        open_run(copy)


def test_a_store_with_several_runs(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "shared.sqlite")
    storage.close()
    data = keyword_dataset(WORDS)
    for run_id in ("first", "second"):
        gepetto.optimize(
            {"instructions": "Answer."},
            data,
            data,
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=12,
            storage=f"sqlite:///{tmp_path / 'shared.sqlite'}",
            run_id=run_id,
        )
    with open_store(f"sqlite:///{tmp_path / 'shared.sqlite'}") as store:
        assert [r.run_id for r in list_runs(store)] == ["first", "second"]
        with pytest.raises(NotARun, match="has no run 'default'; it has 'first', 'second'"):
            RunView(store)
        view = RunView(store, "second")
        assert summary(view).run_id == "second"
        assert summary(view).best_score is not None and summary(view).budget_used >= 4


def test_records_round_trip_is_what_the_view_replays(finished: tuple[Path, gepetto.Result]) -> None:
    run_dir, _ = finished
    with open_run(run_dir) as view:
        stored = [data for _, data in view.store.storage.read("default")]
        assert [record_to_dict(r)["kind"] for r in view.state.records] == [
            d["kind"] for d in stored
        ]

"""gepetto.report: the report's data and its renderers, on a real journal."""

from __future__ import annotations

from pathlib import Path

import gepetto
from gepetto.report import report_data, report_html, write_report
from gepetto.runview import RunView, open_run, open_store
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset


def _run(run_dir: Path) -> gepetto.Result:
    data = keyword_dataset(["alpha", "beta", "gamma", "delta"])
    return gepetto.optimize(
        {"instructions": "Answer <b>now</b>."},
        data,
        data,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,
        reflection_minibatch_size=2,
        run_dir=run_dir,
    )


def test_the_report_shows_the_run(tmp_path: Path) -> None:
    result = _run(tmp_path / "run")
    with open_run(tmp_path / "run") as view:
        files = write_report(view, tmp_path / "out")
        data = report_data(view)
    assert [f.name for f in files][-1] == "report.html"
    assert {f.name for f in files} >= {"progress_calls.png", "progress_time.png", "lineage.png"}
    assert "progress_cost.png" not in {f.name for f in files}  # nothing was priced
    page = (tmp_path / "out" / "report.html").read_text()
    assert f"<h2>Best candidate: {result.best_idx}</h2>" in page
    assert "Answer &lt;b&gt;now&lt;/b&gt;." in page and "<b>now</b>" not in page  # escaped
    assert page.count("<tr>") >= len(result.candidates) + len(data.lineage.decisions)
    assert data.to_json()["summary"]["best_id"] == result.best_idx


def test_without_an_event_log_there_is_no_time_plot(tmp_path: Path) -> None:
    _run(tmp_path / "run")
    store = open_store(tmp_path / "run")
    store.run_dir = None
    with store, RunView(store) as view:
        names = {f.name for f in write_report(view, tmp_path / "out")}
        page = report_html(report_data(view), {})
    assert "progress_time.png" not in names and "progress_calls.png" in names
    assert "<img" not in page  # no image given, none referenced

"""gepetto.runview on a PostgreSQL store (the server of scripts/start-postgres)."""

from __future__ import annotations

import json
from pathlib import Path

import gepetto
from gepetto.runview import RunView, lineage, list_runs, open_store, summary
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from tests.cli.test_commands import gepetto as gepetto_command
from tests.storage.conftest import postgres_url
from tests.storage.test_contract import postgres_test

__all__ = ["postgres_url"]  # the fixture, used by name


@postgres_test
def test_a_postgres_store_reads_as_sqlite_does(postgres_url: str, tmp_path: Path) -> None:
    data = keyword_dataset(["alpha", "beta", "gamma"])
    result = gepetto.optimize(
        {"instructions": "Answer."},
        data,
        data,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=30,
        storage=postgres_url,
        run_id="pg-run",
    )
    with open_store(postgres_url) as store:
        assert [r.run_id for r in list_runs(store)] == ["pg-run"]
        assert list_runs(store)[0].live is None  # PostgreSQL cannot tell
        view = RunView(store, "pg-run")
        head = summary(view)
        assert head.status == "unknown" and head.best_id == result.best_idx
        assert head.budget_used == result.total_metric_calls
        assert len(lineage(view).nodes) == len(result.candidates)
    status = gepetto_command("status", postgres_url, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["best_id"] == result.best_idx

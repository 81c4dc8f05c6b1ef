"""gepa 0.1.4's own tests, run against gepetto: each ends as ``outcomes.json`` records.

A test recorded as passing must pass; a test recorded as not passing must still not pass
(so the record, and the list of gaps in docs/migrating-from-gepa.md, stays true: record the
new outcome with ``python -m tests.gepa_upstream.run --record`` when a change fixes one).
"""

from __future__ import annotations

import pytest

from tests.gepa_upstream.run import load_expected, run_gepa_tests

EXPECTED = load_expected()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def actual() -> dict[str, str]:
    return {test_id: outcome for test_id, (outcome, _) in run_gepa_tests().items()}


@pytest.mark.parametrize("test_id", sorted(EXPECTED))
def test_gepa_test_ends_as_recorded(test_id: str, actual: dict[str, str]) -> None:
    expected = EXPECTED[test_id]["outcome"]
    got = actual.get(test_id, "not collected")
    assert got == expected, f"gepa's {test_id}: recorded {expected}, now {got}"


def test_every_gepa_test_is_recorded(actual: dict[str, str]) -> None:
    unrecorded = sorted(set(actual) - set(EXPECTED))
    record = "python -m tests.gepa_upstream.run --record"
    assert not unrecorded, f"record these with {record}: {unrecorded}"


def _says_why(entry: dict[str, str]) -> bool:
    return bool(entry.get("why")) and not entry["why"].startswith("TODO")


def test_every_gap_says_why() -> None:
    silent = [t for t, e in EXPECTED.items() if e["outcome"] != "passed" and not _says_why(e)]
    assert not silent, f"say why these gepa tests do not pass, in outcomes.json: {silent}"

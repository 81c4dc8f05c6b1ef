"""Shared fixtures: no test may skip under `make test`, small toy datasets."""

from __future__ import annotations

import os
from typing import Any

import pytest

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


@pytest.fixture
def words() -> list[str]:
    return list(WORDS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under ``GEPETTO_NO_SKIPS=1`` (``make test``, CI) a skipped test is a failure.

    The README's test command must run every test; a missing service or tool then fails
    loudly with the skip's reason instead of passing unnoticed.
    """
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("GEPETTO_NO_SKIPS") == "1"
    if strict and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under GEPETTO_NO_SKIPS=1 (make test runs every test): {reason}"

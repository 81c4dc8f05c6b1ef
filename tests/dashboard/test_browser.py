"""The dashboard in real headless Chromium (Debian's ``/usr/bin/chromium``, driven by
Playwright; no browser is downloaded) against a run in progress.

The run's reflections wait for the test (:class:`~tests.dashboard.conftest.LiveRun`), so each
check lets exactly one more candidate happen and watches the open page follow it. Every page
must load with no console error and no request to anywhere but the dashboard. Screenshots of
every view go to ``test-artifacts/dashboard/`` (ignored by git).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gepetto.dashboard import DashboardServer
from tests.dashboard.conftest import LiveRun

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"


class Browser:
    """One page of headless Chromium that records console errors and foreign requests."""

    def __init__(self, page: Any, url: str) -> None:
        self.page = page
        self.url = url
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "request",
            lambda r: None if r.url.startswith((url, "about:")) else self.foreign.append(r.url),
        )

    def open(self, route: str, view: str) -> None:
        self.page.goto(self.url + route)
        self.page.wait_for_selector(f"main[data-view={view}]", timeout=15_000)

    def text(self, selector: str) -> str:
        return str(self.page.text_content(selector, timeout=10_000) or "")

    def attribute(self, selector: str, name: str) -> str:
        return str(self.page.get_attribute(selector, name, timeout=10_000) or "")

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def check_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.foreign == [], f"requests outside the dashboard: {self.foreign}"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (Debian's package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_the_open_pages_follow_a_run_in_progress(
    live_run: LiveRun, finished_run: Path, browser: Any
) -> None:
    live_run.allow(2)
    live_run.wait_for_candidates(3)
    sources = [str(live_run.run_dir), str(finished_run)]
    with DashboardServer(sources, port=0, poll_interval=0.2) as server:
        page = Browser(browser.new_page(viewport={"width": 1400, "height": 1000}), server.url)
        key = "1.default"

        page.open("#/", "runs")
        assert page.page.locator("#runs tbody tr").count() == 2
        page.shot("runs")

        # the overview: the charts and the counts grow when the run adds a candidate
        page.open(f"#/run/{key}/overview", "overview")
        page.page.wait_for_selector("#live.on", timeout=10_000)
        before = int(page.text("#candidates"))
        points = int(page.attribute("#chart-calls path.series-best", "data-points"))
        live_run.allow(1)
        live_run.wait_for_candidates(before + 1)
        added = time.monotonic()
        page.page.wait_for_selector(f"#candidates:text-is('{before + 1}')", timeout=10_000)
        assert time.monotonic() - added < 5, "the page showed the new candidate late"
        wait_until(
            lambda: int(page.attribute("#chart-calls path.series-best", "data-points")) > points,
            5,
            "the chart against metric calls gained a point",
        )
        page.shot("overview")

        # the front and the score matrix gain the new candidate's row
        page.open(f"#/run/{key}/front", "front")
        rows = int(page.attribute("#heatmap", "data-rows"))
        front = page.page.locator("#front-list tr").count()
        assert rows == before + 1 and front >= 1
        live_run.allow(1)
        page.page.wait_for_selector(f"#heatmap[data-rows='{rows + 1}']", timeout=10_000)
        newest = page.page.locator("#front-list tr").first.get_attribute("data-id")
        assert newest == str(rows), "the new candidate (the best so far) heads the front"
        page.shot("front")

        # the candidate: its diff to the parent shows the word the reflection added
        page.open(f"#/run/{key}/candidate/{rows}", "candidate")
        text = page.text(".cand-text")
        added_lines = page.page.locator(".diff ins").all_text_contents()
        removed_lines = page.page.locator(".diff del").all_text_contents()
        assert added_lines == [f"+{text}\n"], added_lines
        parent_text = removed_lines[0].removeprefix("-").strip()
        new_words = set(text.split()) - set(parent_text.split())
        assert len(new_words) == 1 and next(iter(new_words)).startswith("w")
        assert "Here is the improved text" in page.text(".reflection-reply")
        page.shot("candidate")

        # the reflection being written grows on the page
        live_run.lm.chunk_delay = 0.12
        page.open(f"#/run/{key}/reflection", "reflection")
        live_run.allow(1)
        lengths: list[int] = []
        shot = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = page.text("#stream-status")
            length = int(page.attribute("#stream-text", "data-length") or 0)
            if not lengths or length != lengths[-1]:
                lengths.append(length)
            if "writing" in status and length >= 130 and not shot:
                page.shot("reflection")  # half written
                shot = True
            if "done" in status and len(lengths) > 4:
                break
            time.sleep(0.05)
        live_run.lm.chunk_delay = 0.02
        # the page showed the previous reflection first; the new one starts over, then grows
        starts = [i for i in range(1, len(lengths)) if lengths[i] < lengths[i - 1]]
        growing = lengths[starts[0] :] if starts else lengths
        assert len(growing) >= 5, f"the streamed text did not grow step by step: {lengths}"
        assert growing == sorted(growing), lengths
        assert page.text("#stream-text").startswith("Reading the feedback")
        assert shot, "no picture of the reflection half written"

        # the lineage: every candidate and every decision with its reason
        live_run.wait_for_candidates(rows + 2)
        page.open(f"#/run/{key}/lineage", "lineage")
        page.page.wait_for_selector(f"#lineage-tree[data-nodes='{rows + 2}']", timeout=10_000)
        reasons = page.page.locator("#decisions tbody tr td:last-child").all_text_contents()
        assert reasons and all("minibatch" in reason for reason in reasons), reasons
        page.shot("lineage")

        # two runs side by side
        page.open("#/compare/1.default/2.default", "compare")
        assert page.text("#compare-a #a-status") == "live"
        assert page.text("#compare-b #b-status") == "finished"
        assert int(page.attribute("#chart-compare path.series-a", "data-points")) >= 3
        page.shot("compare")
        page.check_clean()


def test_a_run_that_cannot_be_read_shows_a_message_not_a_blank_page(
    finished_run: Path, browser: Any
) -> None:
    with DashboardServer([str(finished_run)], port=0) as server:
        page = Browser(browser.new_page(), server.url)
        page.page.goto(server.url + "#/run/nope/overview")
        page.page.wait_for_selector("main[data-view=error]", timeout=10_000)
        assert "no run 'nope' here" in page.text("#error")
        # the failed fetch's 404 is the only console message
        assert all("404" in error for error in page.errors), page.errors

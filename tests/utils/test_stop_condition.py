"""gepa 0.1.4's stoppers stop real gepetto runs where gepa's would, with a stop reason.

gepa calls a stopper with its live ``GEPAState`` before each iteration; gepetto gives every
stop callable a status that also answers those names. The user stopper below is written
against gepa's state, as a gepa user writes one.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

import gepetto
import gepetto as gepa
from gepetto.events import Inline, IterationFinished
from gepetto.gepa_state import GEPAStateView, GEPAStatus
from gepetto.state import RunState
from gepetto.stopping import RunStatus
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset
from gepetto.utils.stop_condition import MaxTrackedCandidatesStopper

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]

# ---- user code, written for gepa -----------------------------------------------------------


class StopAfterTwoChildren:
    """A stopper written against gepa's GEPAState."""

    def __init__(self) -> None:
        self.seen_i: list[int] = []

    def __call__(self, gepa_state: Any) -> bool:
        self.seen_i.append(gepa_state.i)
        parents = gepa_state.parent_program_for_candidate
        assert parents[0] == [None]
        return len(gepa_state.program_candidates) >= 3


# ---- end of user code ----------------------------------------------------------------------


class Progress:
    """Records each finished iteration's metric calls and best score."""

    def __init__(self) -> None:
        self.finished: list[IterationFinished] = []

    def on_iteration_finished(self, event: IterationFinished) -> None:
        self.finished.append(event)


def run(stop: list[object], words_per_call: int = 1, **options: Any) -> gepetto.Result:
    return gepa.optimize(
        seed_candidate={"instructions": "Answer."},
        trainset=keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(words_per_call),
        stop_callbacks=stop,
        display_progress_bar=False,
        **options,
    )


def test_max_metric_calls_stopper_alone_stops_at_the_first_check_past_it() -> None:
    progress = Progress()
    result = run([gepa.MaxMetricCallsStopper(60)], callbacks=[Inline(progress)])
    used = [event.metric_calls_used for event in progress.finished]
    assert used[-1] >= 60 and all(calls < 60 for calls in used[:-1])
    assert result.total_metric_calls == used[-1]
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("MaxMetricCallsStopper fired")


def test_score_threshold_stopper_stops_once_the_best_reaches_it() -> None:
    progress = Progress()
    result = run([gepa.ScoreThresholdStopper(1.0)], callbacks=[Inline(progress)])
    best = [event.best_score for event in progress.finished]
    assert best[-1] == 1.0 and all(score < 1.0 for score in best[:-1])
    assert result.best_score == 1.0
    assert result.stop_reason is not None and "ScoreThresholdStopper" in result.stop_reason


def test_no_improvement_stopper_counts_each_iteration_once() -> None:
    progress = Progress()
    stopper = gepa.NoImprovementStopper(2)
    result = run([stopper], words_per_call=3, callbacks=[Inline(progress)])
    best = [event.best_score for event in progress.finished]
    # the best improved in the third-last iteration, then two iterations without.
    assert best[-1] == best[-2] == best[-3] == 1.0
    assert len(best) == 4 or best[-4] < 1.0
    assert stopper.iterations_without_improvement == 2
    assert result.stop_reason is not None and "NoImprovementStopper" in result.stop_reason


def test_max_candidate_proposals_stopper_counts_iterations() -> None:
    result = run([gepa.utils.MaxCandidateProposalsStopper(3)])
    assert result.num_iterations == 3
    assert result.stop_reason is not None
    assert result.stop_reason.startswith("MaxCandidateProposalsStopper fired")


def test_a_users_gepa_stopper_reads_the_state_with_gepas_numbering() -> None:
    stopper = StopAfterTwoChildren()
    result = run([stopper], words_per_call=1)
    assert result.num_candidates == 3
    # Consulted once before each iteration, from i == -1, as gepa does (a stateful
    # stopper counts right).
    assert stopper.seen_i == list(range(-1, len(stopper.seen_i) - 1))


def test_a_plain_status_function_still_works() -> None:
    result = run([lambda status: status.metric_calls_used >= 30])
    assert result.stop_reason is not None and "lambda" in result.stop_reason


def test_composite_and_other_stoppers_compose_with_gepetto_conditions(tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    composite = gepa.CompositeStopper(
        gepa.FileStopper(str(stop_file)), MaxTrackedCandidatesStopper(2), mode="any"
    )
    result = run([composite | gepetto.Timeout(600)])
    assert result.num_candidates == 2
    assert result.stop_reason == ("CompositeStopper fired: mode 'any': MaxTrackedCandidatesStopper")
    stop_file.touch()
    assert gepa.FileStopper(str(stop_file))(None) is True
    gepa.FileStopper(str(stop_file)).remove_stop_file()
    assert not stop_file.exists()


def _status(state: RunState | None = None) -> GEPAStatus:
    return GEPAStatus(gepa_state=GEPAStateView(state or RunState(valset_size=1)))


def test_stoppers_follow_gepas_semantics_on_their_own() -> None:
    empty = _status()
    assert gepa.ScoreThresholdStopper(0.0)(empty) is True  # no candidate: best is 0.0
    assert gepa.ScoreThresholdStopper(0.5)(RunStatus()) is False  # unreadable: go on
    assert gepa.CompositeStopper(mode="all")(empty) is True  # as all([])
    assert gepa.CompositeStopper()(empty) is False
    with pytest.raises(ValueError, match="Unknown mode"):
        gepa.CompositeStopper(mode="most")(empty)  # type: ignore[arg-type]
    timeout = gepa.TimeoutStopCondition(0.01)
    time.sleep(0.02)
    assert timeout.check(empty) is not None  # the clock started at construction
    assert gepa.utils.MaxReflectionCostStopper(1.0)(empty) is False
    stopper = gepa.NoImprovementStopper(1)
    assert stopper(empty) is False and stopper.best_score == 0.0
    stopper.reset()
    assert stopper.iterations_without_improvement == 0


def test_signal_stopper_installs_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    stopper = gepa.SignalStopper([signal.SIGUSR1])
    assert stopper(None) is False
    signal.raise_signal(signal.SIGUSR1)
    assert stopper(None) is True
    assert stopper.check(_status()) == "SignalStopper fired: a stop signal arrived"
    stopper.cleanup()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_gepa_exports_the_stoppers_where_gepa_does() -> None:
    for name in (
        "CompositeStopper",
        "FileStopper",
        "MaxMetricCallsStopper",
        "NoImprovementStopper",
        "ScoreThresholdStopper",
        "SignalStopper",
        "StopperProtocol",
        "TimeoutStopCondition",
    ):
        assert getattr(gepa, name) is getattr(gepa.utils, name)
    assert gepa.utils.MaxCandidateProposalsStopper is gepa.MaxCandidateProposalsStopper
    assert isinstance(gepa.MaxMetricCallsStopper(1), gepa.StopperProtocol)
    assert isinstance(gepa.MaxMetricCallsStopper(1), gepetto.StopCondition)

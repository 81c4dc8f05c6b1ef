"""gepa 0.1.4's ``gepa.utils`` stoppers, at gepa's path (see :mod:`.stop_condition`).

``import gepetto as gepa; gepa.utils.MaxCandidateProposalsStopper(...)`` works as it does
with gepa. gepa's code-execution and stdio-capture helpers are not part of gepetto.
"""

from gepetto.utils.stop_condition import (
    CompositeStopper,
    FileStopper,
    MaxCandidateProposalsStopper,
    MaxMetricCallsStopper,
    MaxReflectionCostStopper,
    NoImprovementStopper,
    ScoreThresholdStopper,
    SignalStopper,
    StopperProtocol,
    TimeoutStopCondition,
)

__all__ = [
    "CompositeStopper",
    "FileStopper",
    "MaxCandidateProposalsStopper",
    "MaxMetricCallsStopper",
    "MaxReflectionCostStopper",
    "NoImprovementStopper",
    "ScoreThresholdStopper",
    "SignalStopper",
    "StopperProtocol",
    "TimeoutStopCondition",
]

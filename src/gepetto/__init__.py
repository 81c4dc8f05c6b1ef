"""gepetto: fast, production-grade GEPA (reflective prompt evolution with Pareto selection).

Quick start::

    import gepetto
    result = gepetto.optimize(
        seed_candidate={"instructions": "Answer the question."},
        trainset=train, valset=val,
        adapter=my_adapter,            # gepa's adapter protocol, sync or async
        reflection_lm=my_llm,          # any callable prompt -> str
        max_metric_calls=300,
    )
    print(result.best_candidate)
"""

from gepetto import utils as utils  # gepa.utils: the stoppers at gepa's path
from gepetto._version import __version__
from gepetto.adapter import GEPAAdapter, ProposesNewTexts
from gepetto.api import aoptimize, optimize
from gepetto.engine.context import EvaluateTask, MergeTask, ReflectTask
from gepetto.engine.optimizer import Optimizer
from gepetto.engine.options import (
    EngineConfig,
    GEPAConfig,
    GepettoOptions,
    MergeConfig,
    RefinerConfig,
    ReflectionConfig,
    TrackingConfig,
)
from gepetto.errors import (
    AdapterContractError,
    AdapterFailed,
    BudgetExhausted,
    ConfigError,
    GepettoError,
)
from gepetto.evaluation import EvaluationFailure, ScoredBatch
from gepetto.events import Inline
from gepetto.image import Image
from gepetto.optimize_anything import AnythingResult, SideInfo, aoptimize_anything, log
from gepetto.proposers import (
    APPEND_REFLECTION_TEMPLATE,
    DEFAULT_REFLECTION_TEMPLATE,
    ProposalOutcome,
)
from gepetto.result import GEPAResult, Result
from gepetto.stopping import (
    MaxCandidates,
    MaxMetricCalls,
    NoImprovement,
    RunStatus,
    ScoreThreshold,
    StopCondition,
    StopFile,
    Timeout,
)
from gepetto.types import Candidate, DataLoader, EvaluationBatch
from gepetto.utils.stop_condition import (
    CompositeStopper,
    FileStopper,
    MaxCandidateProposalsStopper,
    MaxMetricCallsStopper,
    MaxTrackedCandidatesStopper,
    NoImprovementStopper,
    ScoreThresholdStopper,
    SignalStopper,
    StopperProtocol,
    TimeoutStopCondition,
)

# ``gepetto.optimize_anything`` is the module, callable like gepa's function of that name.
from gepetto import optimize_anything  # isort: skip

__all__ = [
    "APPEND_REFLECTION_TEMPLATE",
    "DEFAULT_REFLECTION_TEMPLATE",
    "AdapterContractError",
    "AdapterFailed",
    "AnythingResult",
    "BudgetExhausted",
    "Candidate",
    "CompositeStopper",
    "ConfigError",
    "DataLoader",
    "EngineConfig",
    "EvaluateTask",
    "EvaluationBatch",
    "EvaluationFailure",
    "FileStopper",
    "GEPAAdapter",
    "GEPAConfig",
    "GEPAResult",
    "GepettoError",
    "GepettoOptions",
    "Image",
    "Inline",
    "MaxCandidateProposalsStopper",
    "MaxCandidates",
    "MaxMetricCalls",
    "MaxMetricCallsStopper",
    "MaxTrackedCandidatesStopper",
    "MergeConfig",
    "MergeTask",
    "NoImprovement",
    "NoImprovementStopper",
    "Optimizer",
    "ProposalOutcome",
    "ProposesNewTexts",
    "RefinerConfig",
    "ReflectTask",
    "ReflectionConfig",
    "Result",
    "RunStatus",
    "ScoreThreshold",
    "ScoreThresholdStopper",
    "ScoredBatch",
    "SideInfo",
    "SignalStopper",
    "StopCondition",
    "StopFile",
    "StopperProtocol",
    "Timeout",
    "TimeoutStopCondition",
    "TrackingConfig",
    "__version__",
    "aoptimize",
    "aoptimize_anything",
    "log",
    "optimize",
    "optimize_anything",
]

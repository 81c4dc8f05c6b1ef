"""Pluggable strategies: parent selection, minibatches, components, acceptance, validation."""

from gepetto.strategies.acceptance import (
    AcceptanceCriterion,
    ImprovementOrEqual,
    StrictImprovement,
)
from gepetto.strategies.batch_sampling import BatchSampler, EpochShuffledSampler, RandomSampler
from gepetto.strategies.candidate_selection import (
    CandidateSelector,
    CurrentBestSelector,
    EpsilonGreedySelector,
    ParetoSelector,
    TopKParetoSelector,
)
from gepetto.strategies.component_selection import (
    AllComponents,
    ComponentSelector,
    RoundRobinComponents,
)
from gepetto.strategies.evaluation_policy import (
    EvaluationPolicy,
    FullEvaluation,
    IncrementalEvaluation,
)

__all__ = [
    "AcceptanceCriterion",
    "AllComponents",
    "BatchSampler",
    "CandidateSelector",
    "ComponentSelector",
    "CurrentBestSelector",
    "EpochShuffledSampler",
    "EpsilonGreedySelector",
    "EvaluationPolicy",
    "FullEvaluation",
    "ImprovementOrEqual",
    "IncrementalEvaluation",
    "ParetoSelector",
    "RandomSampler",
    "RoundRobinComponents",
    "StrictImprovement",
    "TopKParetoSelector",
]

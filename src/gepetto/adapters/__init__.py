"""Built-in adapters."""

from gepetto.adapters.agent import AgentAdapter
from gepetto.adapters.default import (
    DefaultAdapter,
    EvaluationResult,
    contains_answer_evaluator,
    exact_match_evaluator,
    normalize_label,
)
from gepetto.adapters.tools import Tool

__all__ = [
    "AgentAdapter",
    "DefaultAdapter",
    "EvaluationResult",
    "Tool",
    "contains_answer_evaluator",
    "exact_match_evaluator",
    "normalize_label",
]

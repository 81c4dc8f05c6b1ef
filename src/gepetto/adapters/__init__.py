"""Built-in adapters."""

from gepetto.adapters.default import (
    DefaultAdapter,
    EvaluationResult,
    contains_answer_evaluator,
    exact_match_evaluator,
    normalize_label,
)

__all__ = [
    "DefaultAdapter",
    "EvaluationResult",
    "contains_answer_evaluator",
    "exact_match_evaluator",
    "normalize_label",
]

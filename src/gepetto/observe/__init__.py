"""Observers of a run's events: logging, OpenTelemetry, MLflow, Weights & Biases.

Each integration is an ordinary observer (pass it in ``callbacks=[...]``) and imports its
optional package lazily, with a message naming the extra to install.
"""

from gepetto.events import IterationFinished

__all__ = ["progress_metrics"]


def progress_metrics(event: IterationFinished) -> dict[str, float]:
    """The run totals trackers log after each iteration (same names in every tracker)."""
    return {
        "best_score": event.best_score,
        "pool_size": event.pool_size,
        "front_size": event.front_size,
        "metric_calls": event.metric_calls_used,
        "cost_usd": event.cost_usd,
    }

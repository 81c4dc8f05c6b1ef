"""Small built-in datasets for demos, tests and benchmarks."""

from gepetto.datasets.tickets import (
    HANDWRITTEN_PROMPT,
    LABELS,
    LABELS_PROMPT,
    SEED_PROMPT,
    ticket_routing,
)

__all__ = ["HANDWRITTEN_PROMPT", "LABELS", "LABELS_PROMPT", "SEED_PROMPT", "ticket_routing"]

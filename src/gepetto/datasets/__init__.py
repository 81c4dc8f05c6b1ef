"""Small built-in datasets for demos, tests and benchmarks.

Each task is a deterministic generator of ``{"input", "answer", "additional_context"}``
examples with a vague seed prompt and a hand-written reference prompt:

- :func:`ticket_routing` (and :func:`ticket_routing_splits`, disjoint train/val/test): route a
  customer message to one of four labels
  (:data:`SEED_PROMPT`, :data:`LABELS_PROMPT`, :data:`HANDWRITTEN_PROMPT`);
- :func:`date_normalization`: write the date of a message as ``YYYY-MM-DD``
  (:data:`DATES_SEED_PROMPT`, :data:`DATES_FORMAT_PROMPT`, :data:`DATES_HANDWRITTEN_PROMPT`;
  also ``gepetto.datasets.dates.SEED_PROMPT`` and so on);
- :func:`shop_orders`: price an order with two tools, :func:`~gepetto.datasets.shop.lookup_price`
  and :func:`~gepetto.datasets.shop.multiply` (for the agent adapter; :data:`SHOP_SEED_PROMPT`,
  :data:`SHOP_MULTIPLY_DESCRIPTION`, :func:`~gepetto.datasets.shop.shop_metric`);
- :func:`arithmetic_problems`: arithmetic word problems with a numeric answer, scored by
  :func:`numeric_answer_evaluator` (prompts in :mod:`gepetto.datasets.arithmetic`);
- :func:`shipping_requests`: extract five fields of a shipping request as JSON, scored per
  field by :func:`field_match_evaluator` (prompts in :mod:`gepetto.datasets.extraction`);
- :func:`review_tags` (and :func:`review_tag_splits`, disjoint train/val/test): tag a shop
  review with every topic it raises (several labels), scored by :func:`tag_set_evaluator`
  (prompts in :mod:`gepetto.datasets.tagging`);
- :mod:`~gepetto.datasets.atlas`: a fictional corpus for RAG (:func:`atlas_passages`,
  :func:`atlas_questions`, :func:`atlas_splits`, with gold passage ids and answers);
- :mod:`~gepetto.datasets.durations`: test cases for a function, not a prompt:
  ``parse_duration(text)`` improved with ``optimize_anything`` (seed and hand-written code,
  disjoint splits of cases).
"""

from gepetto.datasets.arithmetic import arithmetic_problems, numeric_answer_evaluator
from gepetto.datasets.atlas import atlas_passages, atlas_questions, atlas_splits
from gepetto.datasets.dates import FORMAT_PROMPT as DATES_FORMAT_PROMPT
from gepetto.datasets.dates import HANDWRITTEN_PROMPT as DATES_HANDWRITTEN_PROMPT
from gepetto.datasets.dates import SEED_PROMPT as DATES_SEED_PROMPT
from gepetto.datasets.dates import date_normalization
from gepetto.datasets.extraction import field_match_evaluator, shipping_requests
from gepetto.datasets.shop import (
    SHOP_HANDWRITTEN_PROMPT,
    SHOP_MULTIPLY_DESCRIPTION,
    SHOP_SEED_PROMPT,
    shop_metric,
    shop_orders,
)
from gepetto.datasets.tagging import review_tag_splits, review_tags, tag_set_evaluator
from gepetto.datasets.tickets import (
    HANDWRITTEN_PROMPT,
    LABELS,
    LABELS_PROMPT,
    SEED_PROMPT,
    ticket_routing,
    ticket_routing_splits,
)

__all__ = [
    "DATES_FORMAT_PROMPT",
    "DATES_HANDWRITTEN_PROMPT",
    "DATES_SEED_PROMPT",
    "HANDWRITTEN_PROMPT",
    "LABELS",
    "LABELS_PROMPT",
    "SEED_PROMPT",
    "SHOP_HANDWRITTEN_PROMPT",
    "SHOP_MULTIPLY_DESCRIPTION",
    "SHOP_SEED_PROMPT",
    "arithmetic_problems",
    "atlas_passages",
    "atlas_questions",
    "atlas_splits",
    "date_normalization",
    "field_match_evaluator",
    "numeric_answer_evaluator",
    "review_tag_splits",
    "review_tags",
    "shipping_requests",
    "shop_metric",
    "shop_orders",
    "tag_set_evaluator",
    "ticket_routing",
    "ticket_routing_splits",
]

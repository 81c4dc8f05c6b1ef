"""Retrieval and answer metrics (pure functions, no dependency).

Retrieval metrics compare the ranked ids a pipeline retrieved with the ids of the passages
the question needs (binary relevance), over the first ``k``:

- ``precision_at_k``: gold ids among the first ``k``, divided by ``k``;
- ``recall_at_k``: gold ids among the first ``k``, divided by the number of gold ids;
- ``reciprocal_rank``: ``1 / rank`` of the first gold id in the first ``k`` (0 if none;
  its mean over examples is the MRR);
- ``ndcg_at_k``: DCG (``sum 1/log2(rank + 1)`` over gold ranks) over the ideal DCG.

Answer metrics compare a prediction with one or several gold answers after SQuAD's
normalization (lowercase, no punctuation, no articles, single spaces), keeping the best:

- ``exact_match``: 1 if the normalized texts are equal;
- ``token_f1``: the F1 of the two bags of tokens.

Example:
    >>> recall_at_k(["d3", "d1", "d9"], ["d1", "d2"], k=3)
    0.5
    >>> round(ndcg_at_k(["d3", "d1"], ["d1"], k=2), 4)
    0.6309
    >>> exact_match("The Esk river.", ["Esk River"])
    1.0
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "exact_match",
    "ndcg_at_k",
    "normalize_answer",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _top(retrieved: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct ids, in order."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return list(dict.fromkeys(retrieved))[:k]


def precision_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """The share of the ``k`` ranks that hold a gold id (fewer hits than ``k`` still divide
    by ``k``)."""
    wanted = set(gold)
    return sum(1 for i in _top(retrieved, k) if i in wanted) / k


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """The share of gold ids found in the first ``k`` (1.0 when there is no gold id)."""
    wanted = set(gold)
    if not wanted:
        return 1.0
    return sum(1 for i in _top(retrieved, k) if i in wanted) / len(wanted)


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """``1 / rank`` of the first gold id within the first ``k``, or 0."""
    wanted = set(gold)
    for rank, doc_id in enumerate(_top(retrieved, k), start=1):
        if doc_id in wanted:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """Normalized discounted cumulative gain with binary relevance (0 without gold ids)."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    dcg = sum(
        1.0 / math.log2(rank + 1)
        for rank, doc_id in enumerate(_top(retrieved, k), start=1)
        if doc_id in wanted
    )
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(wanted), k) + 1))
    return dcg / ideal


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lowercase, punctuation and articles removed, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalized prediction equals a normalized gold answer, else 0.0."""
    got = normalize_answer(prediction)
    return 1.0 if any(got == normalize_answer(g) for g in _golds(gold)) else 0.0


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """The best token-level F1 of the prediction against the gold answers."""
    predicted = normalize_answer(prediction).split()
    best = 0.0
    for answer in _golds(gold):
        expected = normalize_answer(answer).split()
        if not predicted or not expected:
            best = max(best, float(predicted == expected))
            continue
        common = sum((Counter(predicted) & Counter(expected)).values())
        if common:
            precision, recall = common / len(predicted), common / len(expected)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best

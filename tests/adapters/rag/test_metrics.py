"""The retrieval and answer metrics, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from gepetto.adapters.rag.metrics import (
    exact_match,
    ndcg_at_k,
    normalize_answer,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    token_f1,
)

RETRIEVED = ["d4", "d1", "d7", "d2", "d9"]
GOLD = ["d1", "d2", "d3"]


def test_precision_counts_gold_ids_among_the_first_k_over_k() -> None:
    assert precision_at_k(RETRIEVED, GOLD, 1) == 0.0
    assert precision_at_k(RETRIEVED, GOLD, 2) == 0.5
    assert precision_at_k(RETRIEVED, GOLD, 5) == 2 / 5
    assert precision_at_k(["d1"], GOLD, 3) == 1 / 3  # fewer hits than k still divide by k


def test_recall_counts_gold_ids_found_over_all_gold_ids() -> None:
    assert recall_at_k(RETRIEVED, GOLD, 1) == 0.0
    assert recall_at_k(RETRIEVED, GOLD, 3) == 1 / 3
    assert recall_at_k(RETRIEVED, GOLD, 5) == 2 / 3
    assert recall_at_k(["d1", "d1", "d2"], ["d1", "d2"], 2) == 1.0  # duplicates count once


def test_reciprocal_rank_is_one_over_the_first_gold_rank_within_k() -> None:
    assert reciprocal_rank(RETRIEVED, GOLD, 5) == 0.5
    assert reciprocal_rank(["d1"], GOLD, 5) == 1.0
    assert reciprocal_rank(RETRIEVED, GOLD, 1) == 0.0
    assert reciprocal_rank(["x", "y", "d3"], GOLD, 3) == pytest.approx(1 / 3)


def test_ndcg_matches_the_hand_computed_gain() -> None:
    # gold at ranks 2 and 4 of 5: DCG = 1/log2(3) + 1/log2(5); ideal (3 gold) = 1 + 1/log2(3) + 1/2
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RETRIEVED, GOLD, 5) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["d1", "d2"], ["d1", "d2"], 2) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "d1"], ["d1"], 2) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(["x"], [], 1) == 0.0


def test_k_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(RETRIEVED, GOLD, 0)


def test_answers_are_normalized_like_squad() -> None:
    assert normalize_answer("  The Esk River! ") == "esk river"
    assert normalize_answer("A copper, wire.") == "copper wire"


def test_exact_match_takes_the_best_gold_answer() -> None:
    assert exact_match("the Esk river.", ["Esk", "Esk river"]) == 1.0
    assert exact_match("Esk", "Esk river") == 0.0
    assert exact_match("", ["Esk"]) == 0.0


def test_token_f1_matches_the_hand_computed_value() -> None:
    # prediction tokens: made by brightwell works (4), gold: brightwell works (2), common 2
    # precision 2/4, recall 2/2 -> F1 = 2 * 0.5 * 1 / 1.5 = 2/3
    assert token_f1("Made by Brightwell Works.", "Brightwell Works") == pytest.approx(2 / 3)
    assert token_f1("copper wire", ["tin", "copper wire"]) == 1.0
    assert token_f1("tin", "copper wire") == 0.0
    assert token_f1("", "") == 1.0

"""The review-tagging task: deterministic disjoint splits, every tag used, conventions the
feedback teaches, and a set score that charges missing and extra tags alike."""

from __future__ import annotations

from collections import Counter

import pytest

from gepetto.datasets.tagging import TAGS, review_tag_splits, review_tags, tag_set_evaluator


def test_splits_are_deterministic_disjoint_and_use_every_tag() -> None:
    train, val, test = review_tag_splits(30)
    assert (train, val, test) == tuple(review_tag_splits(30))
    inputs = [review["input"] for review in train + val + test]
    assert len(inputs) == 90 and len(set(inputs)) == 90
    counts = Counter(tag for review in train for tag in review["answer"].split(", "))
    assert set(counts) == set(TAGS)
    for review in train:
        tags = review["answer"].split(", ")
        assert tags == sorted(tags) and 1 <= len(tags) <= 3


def test_a_share_of_reviews_follows_a_house_convention() -> None:
    reviews = review_tags(60, seed=1)
    conventions = [r for r in reviews if ", not " in r["additional_context"]]
    assert 0.1 * len(reviews) <= len(conventions) <= 0.6 * len(reviews)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("delivery, packaging", 1.0),
        ("Packaging; delivery.", 1.0),
        ("packaging", 0.5),
        ("delivery, packaging, support", 2 / 3),
        ("support", 0.0),
        ("I cannot tell.", 0.0),
    ],
)
def test_the_score_is_shared_tags_over_all_tags_named(reply: str, score: float) -> None:
    example = {"answer": "delivery, packaging", "additional_context": "'x' is packaging."}
    got, feedback = tag_set_evaluator()(example, reply)
    assert got == pytest.approx(score)
    if score < 1:
        assert "Expected: delivery, packaging." in feedback and "'x' is packaging." in feedback


def test_the_feedback_names_missing_and_extra_tags() -> None:
    example = {"answer": "price", "additional_context": ""}
    _, feedback = tag_set_evaluator()(example, "support")
    assert "Missing: price." in feedback and "Not raised by the review: support." in feedback


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="n must be >= 0"):
        review_tags(-1)
    with pytest.raises(ValueError, match="cannot make"):
        review_tags(10**6, seed=1)

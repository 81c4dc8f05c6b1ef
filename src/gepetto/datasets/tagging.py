"""Multi-label tagging: mark a shop review with every topic it raises.

Each review raises one to three topics out of :data:`TAGS`, in everyday wording, often
after a sentence that raises none ("I bought this for my sister."). The answer is the set of
tags, written as a comma-separated list; the score is the overlap of the reply's tags with
the right ones (:func:`tag_set_evaluator`: shared tags over all tags named, so a missing
and an extra tag both cost), and the feedback names each missing and extra tag with the
phrase that decides it. About a third of the phrases follow a house convention that the
obvious reading gets wrong, which only the feedback (through ``additional_context``)
teaches:

- a damaged or crushed box is ``packaging``, not ``delivery``;
- anything about the courier (late, rude, wrong door) is ``delivery``, not ``support``;
- a coupon or discount that did not apply is ``price``, not ``support``;
- a return or refund is ``support``.

Examples are generated from templates with a fixed seed, so no data files are needed::

    train, val, test = review_tag_splits(30)  # disjoint: no review in two splits

Example:
    >>> review = review_tags(1, seed=0)[0]
    >>> sorted(review)
    ['additional_context', 'answer', 'input']
    >>> tag_set_evaluator()(review, review["answer"])[0]
    1.0
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from gepetto.datasets.splits import disjoint_splits

__all__ = [
    "HANDWRITTEN_PROMPT",
    "SEED_PROMPT",
    "TAGS",
    "review_tag_splits",
    "review_tags",
    "tag_set_evaluator",
]

TAGS = ("price", "quality", "delivery", "support", "packaging", "sizing")

SEED_PROMPT = "Tag the review."
HANDWRITTEN_PROMPT = """Tag the shop review with every topic it raises, from this list only:
price, quality, delivery, support, packaging, sizing.
- price: cost, value, discounts and coupons (a coupon that did not apply is price).
- quality: how well the product is made or works.
- delivery: shipping time and the courier (a late, rude or lost courier is delivery).
- support: customer service, returns and refunds.
- packaging: the box and wrapping (a crushed or damaged box is packaging).
- sizing: fit and size.
Answer with only the tags, comma-separated, for example: price, sizing"""

# Phrases that raise each tag plainly; _TRICKY's raise it by a house convention, each with
# the feedback's explanation.
_PLAIN: dict[str, list[str]] = {
    "price": ["it was far too expensive", "great value for the money", "the price was fair"],
    "quality": [
        "the stitching came apart after a week",
        "it feels really solid",
        "the zipper broke on day two",
    ],
    "delivery": ["it arrived three days early", "shipping took almost a month"],
    "support": [
        "the help desk answered within an hour",
        "nobody replied to my emails",
    ],
    "packaging": ["it came wrapped beautifully", "there was far too much plastic wrap"],
    "sizing": ["it runs a size small", "the fit is perfect", "the sleeves are too long"],
}
_TRICKY: dict[str, list[tuple[str, str]]] = {
    "packaging": [
        ("the box was crushed when it arrived", "a crushed box is packaging, not delivery"),
        ("the parcel was torn open on one side", "a damaged parcel is packaging, not delivery"),
    ],
    "delivery": [
        ("the courier was rude at the door", "anything about the courier is delivery"),
        ("the driver left it at the wrong house", "anything about the courier is delivery"),
    ],
    "price": [
        ("my coupon code did not work at checkout", "a coupon that did not apply is price"),
        ("the promised discount never showed up", "a discount that did not apply is price"),
    ],
    "support": [
        ("getting a refund took five phone calls", "a refund is support"),
        ("the return label they sent was wrong", "a return is support"),
    ],
}
_FILLERS = [
    "I bought this for my sister.",
    "Second order from this shop.",
    "Ordered it on a Monday.",
    "",
    "",
]


def _review(rng: random.Random) -> dict[str, Any]:
    count = rng.choice((1, 2, 2, 3))
    tags = rng.sample(TAGS, count)
    phrases, reasons = [], []
    for tag in tags:
        if tag in _TRICKY and rng.random() < 0.4:
            phrase, why = rng.choice(_TRICKY[tag])
        else:
            phrase, why = rng.choice(_PLAIN[tag]), f"it is about {tag}"
        phrases.append(phrase)
        reasons.append(f"'{phrase}' is {tag}: {why}.")
    body = (
        ", and ".join(phrases)
        if len(phrases) < 3
        else f"{phrases[0]}, {phrases[1]}, and {phrases[2]}"
    )
    text = f"{rng.choice(_FILLERS)} {body[0].upper()}{body[1:]}.".strip()
    return {
        "input": text,
        "answer": ", ".join(sorted(tags)),
        "additional_context": " ".join(reasons),
    }


def review_tags(n: int, seed: int = 0, exclude: Collection[str] = ()) -> list[dict[str, Any]]:
    """``n`` distinct reviews ``{"input", "answer" (tags, comma-separated, sorted),
    "additional_context"}``, none of whose inputs is in ``exclude``.

    The same ``(n, seed, exclude)`` always gives the same reviews; different seeds give
    different ones.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"tagging-{seed}")
    reviews: list[dict[str, Any]] = []
    seen = set(exclude)
    misses = 0  # draws in a row that gave nothing new
    while len(reviews) < n:
        review = _review(rng)
        if review["input"] in seen:
            misses += 1
            if misses == 2000:
                raise ValueError(
                    f"cannot make {n} distinct reviews that avoid the {len(exclude)} excluded "
                    f"(found {len(reviews)})"
                )
            continue
        misses = 0
        seen.add(review["input"])
        reviews.append(review)
    return reviews


def review_tag_splits(
    size: int = 30, seeds: Sequence[int] = (1, 2, 3)
) -> list[list[dict[str, Any]]]:
    """One split of ``size`` reviews per generator seed (train, val, test by default), no
    input in two splits."""
    return disjoint_splits(lambda n, seed, used: review_tags(n, seed, exclude=used), size, seeds)


_TAG_WORD = re.compile(r"[a-z]+")


def _tags_in(reply: str) -> set[str]:
    return {word for word in _TAG_WORD.findall(reply.lower()) if word in TAGS}


def tag_set_evaluator() -> Callable[[Mapping[str, Any], str], tuple[float, str]]:
    """``(score, feedback)``: the tags of :data:`TAGS` the reply names, against the example's.

    The score is shared tags over all tags named by either (1 when the sets are equal, 0
    when they share none); the feedback names the missing and the extra tags and adds the
    example's ``additional_context`` (which phrase decides which tag).
    """

    def evaluate(example: Mapping[str, Any], reply: str) -> tuple[float, str]:
        expected = {tag.strip() for tag in str(example["answer"]).split(",") if tag.strip()}
        got = _tags_in(reply)
        if got == expected:
            return 1.0, f"Correct: {example['answer']}."
        score = len(got & expected) / len(got | expected)
        parts = [f"Expected: {example['answer']}."]
        if expected - got:
            parts.append(f"Missing: {', '.join(sorted(expected - got))}.")
        if got - expected:
            parts.append(f"Not raised by the review: {', '.join(sorted(got - expected))}.")
        context = example.get("additional_context", "")
        return score, " ".join([*parts, context]).strip()

    return evaluate

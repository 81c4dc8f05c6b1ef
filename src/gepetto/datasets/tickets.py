"""Ticket routing: a small task where the prompt really matters (used by the demo, the real-LLM
tests and the benchmarks).

Route a customer message to exactly one of ``billing``, ``technical``, ``account``,
``shipping``. About 30% of the examples are tricky: the obvious label is wrong, and only a
rule (given in the feedback of a wrong answer, through ``additional_context``) teaches the
right one:

- a physical delivery problem is ``shipping``, even when the customer asks for a refund;
- any charge is ``billing``, even after the account was deleted;
- a login failure is ``account``, even when an error code is shown.

Examples are generated from templates with a fixed seed, so no data files are needed::

    train, val, test = ticket_routing_splits(30, seeds=(1, 2, 3))  # no input in two splits
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from gepetto.datasets.splits import disjoint_splits

__all__ = [
    "HANDWRITTEN_PROMPT",
    "LABELS",
    "LABELS_PROMPT",
    "RULES",
    "SEED_PROMPT",
    "ticket_routing",
    "ticket_routing_splits",
]

LABELS = ("billing", "technical", "account", "shipping")

RULES = {
    "delivery-refund": "A physical delivery problem (late, lost, damaged or wrong parcel) is "
    "'shipping', even when the customer asks for a refund or their money back.",
    "charge-deleted": "Any charge or payment question is 'billing', even when the account was "
    "deleted or closed.",
    "login-error": "A failure to log in or sign in is 'account', even when an error code or a "
    "technical message is shown.",
}

SEED_PROMPT = "Read the customer message and tell me what it is about."
LABELS_PROMPT = "Classify the customer message into one of: billing, technical, account, shipping."
HANDWRITTEN_PROMPT = """Classify the customer message into exactly one label: billing, technical, \
account, shipping.
Rules: delivery problems are shipping even when a refund is asked; charges are billing even \
after the account was deleted; login failures are account even with an error code.

Examples:
"I was charged twice this month." -> billing
"I need a receipt for my payment." -> billing
"The app crashes when I open settings." -> technical
"Sync stopped working since Monday." -> technical
"How do I change my email address?" -> account
"I can't log in, it says error 500." -> account
"My order has not arrived yet." -> shipping
"My parcel arrived damaged, I want a refund." -> shipping

Answer with only the label in lowercase."""
"""A prompt written by hand: the labels, the three rules, eight short examples in its own words,
and the answer format. With the local 0.5B model on the benchmark's disjoint 30-example sets
(:func:`ticket_routing_splits`, seeds 1/2/3): train/val/test 0.77/0.83/0.80; its misses are
mostly answers outside the labels (``discount``, ``refund``, ``delivery``) and technical
problems taken for account ones. On the first, smaller template set (before 2026-11-28,
whose splits shared messages) it scored 0.93/0.97/0.90, and 0.83/0.80/0.63 without its
examples: short examples are what a 0.5B model follows best."""

_PLAIN: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month.",
        "Can you send me an invoice for my last payment of {amount}?",
        "Why did my card get billed {amount} when my plan costs less?",
        "Please update the credit card used for my {plan} plan payments.",
        "I need a receipt for the {amount} payment I made on {day}.",
        "Is there a discount if I pay for the {plan} plan yearly instead of monthly?",
        "My bank statement shows a {amount} charge from you on {day} that I don't recognize.",
        "Can I get a refund of the {amount} I paid for the {plan} upgrade?",
    ],
    "technical": [
        "The app crashes every time I open the {feature} screen.",
        "Your website shows a blank page when I click {feature}.",
        "Sync between my phone and laptop stopped working since {day}.",
        "The {feature} button does nothing in the desktop app.",
        "Exports to {format} come out empty since the last update.",
        "The {feature} page takes over a minute to load in {browser}.",
        "Notifications from {feature} stopped arriving on my phone since {day}.",
        "The {feature} view freezes when I upload a file bigger than {size}.",
    ],
    "account": [
        "How do I change the email address on my {plan} profile?",
        "I want to delete my {plan} account and all my data.",
        "Please add my colleague as a second user on our {plan} account.",
        "How can I change my username to {name}?",
        "I'd like to turn on two-factor authentication for my {plan} profile.",
        "Please transfer ownership of our {plan} workspace to {name}.",
        "How do I update the phone number on my profile? The new one ends in {digits}.",
        "Can I merge my two profiles into one? The old username is {name}.",
    ],
    "shipping": [
        "My order #{order} has not arrived yet, where is it?",
        "Can I change the delivery address for order #{order}?",
        "The tracking number for order #{order} doesn't work.",
        "When will my parcel be delivered? It's been {days} days.",
        "Do you ship to {country}?",
        "How much does express delivery to {country} cost?",
        "Can order #{order} be left with a neighbour if I'm not home on {day}?",
        "Which courier delivers to {country}, and how long does it take?",
    ],
}

_TRICKY: dict[str, tuple[str, list[str]]] = {
    "delivery-refund": (
        "shipping",
        [
            "My package for order #{order} arrived crushed, I want a refund.",
            "Order #{order} never showed up. Give me my money back!",
            "You sent me the wrong item in order #{order}; please refund me.",
            "The parcel is {days} days late, I want a refund for order #{order}.",
            "Half of order #{order} is missing from the box. Refund the {amount}, please.",
            "Order #{order} went to the wrong address; I want my {amount} back.",
        ],
    ),
    "charge-deleted": (
        "billing",
        [
            "I deleted my account last month but you charged me {amount} again.",
            "My account is closed, so why is there a {amount} payment on my card?",
            "After I closed my profile I still got billed for {plan}.",
            "I removed my {plan} account on {day}, yet another invoice for {amount} came.",
            "You took {amount} from my card although my account was deleted {day}.",
        ],
    ),
    "login-error": (
        "account",
        [
            "I can't log in, it says error {code}.",
            "Sign-in fails with 'ERR_{code}: internal server error'.",
            "Login page shows code {code} and won't let me into my account.",
            "Since {day} I can't sign in with {browser}: error {code}.",
            "Entering my password gives 'server error {code}' and I stay logged out.",
        ],
    ),
}

_FILL = {
    "plan": ["Pro", "Team", "Basic", "Premium", "Family"],
    "amount": ["$12.99", "$49", "$120", "$7.50", "$19.90", "$240"],
    "day": ["Monday", "March 3", "yesterday", "last week", "Friday", "June 12"],
    "feature": ["settings", "reports", "calendar", "search", "dashboard", "photos"],
    "order": ["48213", "99120", "30457", "77001", "51862", "23094", "60318", "84577"],
    "days": ["5", "9", "12", "20", "7"],
    "country": ["Canada", "Japan", "Brazil", "Norway", "Kenya", "Portugal"],
    "code": ["403", "500", "1017", "AUTH-22", "502", "E-77"],
    "format": ["PDF", "CSV", "Excel"],
    "browser": ["Chrome", "Firefox", "Safari", "Edge"],
    "size": ["10 MB", "50 MB", "200 MB"],
    "name": ["alex_m", "jo.lee", "sam2024", "dana-k"],
    "digits": ["4471", "0932", "5518"],
}


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{key: rng.choice(values) for key, values in _FILL.items()})


_MAX_DRAWS = 1000  # per example: far above what the template space needs for 100s of examples


def _draw(templates: list[str], rng: random.Random, taken: set[str]) -> str:
    """A filled template not in ``taken`` (which it joins)."""
    for _ in range(_MAX_DRAWS):
        text = _fill(rng.choice(templates), rng)
        if text not in taken:
            taken.add(text)
            return text
    raise ValueError(
        f"could not draw a message that is not already used after {_MAX_DRAWS} tries: ask "
        "for fewer examples, or exclude fewer inputs"
    )


def ticket_routing(
    n: int, seed: int = 0, tricky_fraction: float = 0.3, exclude: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """``n`` examples ``{"input", "answer", "additional_context"}``, deterministic in ``seed``.

    ``round(n * tricky_fraction)`` examples are tricky (spread over the three rules); the
    others are plain, spread over the four labels. Tricky examples carry their rule in
    ``additional_context`` so the evaluator's feedback can teach it. No two examples share an
    input, and no input is one of ``exclude`` (pass the inputs of other splits, or use
    :func:`ticket_routing_splits`); ``ValueError`` if the templates cannot supply that many.
    """
    if n < 0 or not 0 <= tricky_fraction <= 1:
        raise ValueError("ticket_routing needs n >= 0 and 0 <= tricky_fraction <= 1")
    rng = random.Random(seed)
    taken = set(exclude)
    tricky_count = round(n * tricky_fraction)
    examples: list[dict[str, Any]] = []
    rules = list(_TRICKY)
    for index in range(tricky_count):
        rule = rules[index % len(rules)]
        label, templates = _TRICKY[rule]
        examples.append(
            {
                "input": _draw(templates, rng, taken),
                "answer": label,
                "additional_context": {"rule": RULES[rule]},
            }
        )
    for index in range(n - tricky_count):
        label = LABELS[index % len(LABELS)]
        examples.append(
            {
                "input": _draw(_PLAIN[label], rng, taken),
                "answer": label,
                "additional_context": {"labels": ", ".join(LABELS)},
            }
        )
    rng.shuffle(examples)
    return examples


def ticket_routing_splits(
    size: int = 30, seeds: Sequence[int] = (1, 2, 3), tricky_fraction: float = 0.3
) -> list[list[dict[str, Any]]]:
    """One split of ``size`` examples per generator seed (train, val, test by default), no
    input in two splits: each split excludes the inputs of the splits before it."""
    return disjoint_splits(
        lambda n, seed, used: ticket_routing(n, seed, tricky_fraction, exclude=used), size, seeds
    )

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

    train = ticket_routing(30, seed=1)
    val = ticket_routing(30, seed=2)
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "HANDWRITTEN_PROMPT",
    "LABELS",
    "LABELS_PROMPT",
    "RULES",
    "SEED_PROMPT",
    "ticket_routing",
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
and the answer format (train/val/test 0.93/0.97/0.90 with the local 0.5B model on the
benchmark's 30-example sets). Without the examples (labels with descriptions, rules, format)
the 0.5B scored only 0.83/0.80/0.63: it answered ``invoice`` or ``receipt`` instead of
``billing``; short examples are what a 0.5B model follows best."""

_PLAIN: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} subscription this month.",
        "Can you send me an invoice for my last payment of {amount}?",
        "Why did my card get billed {amount} when my plan costs less?",
        "Please update the credit card used for my {plan} plan payments.",
        "I need a receipt for the {amount} payment I made on {day}.",
    ],
    "technical": [
        "The app crashes every time I open the {feature} screen.",
        "Your website shows a blank page when I click {feature}.",
        "Sync between my phone and laptop stopped working since {day}.",
        "The {feature} button does nothing in the desktop app.",
        "Exports to PDF come out empty since the last update.",
    ],
    "account": [
        "How do I change the email address on my profile?",
        "I want to delete my account and all my data.",
        "Please add my colleague as a second user on our {plan} account.",
        "How can I change my username?",
        "I'd like to turn on two-factor authentication for my profile.",
    ],
    "shipping": [
        "My order #{order} has not arrived yet, where is it?",
        "Can I change the delivery address for order #{order}?",
        "The tracking number for order #{order} doesn't work.",
        "When will my parcel be delivered? It's been {days} days.",
        "Do you ship to {country}?",
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
        ],
    ),
    "charge-deleted": (
        "billing",
        [
            "I deleted my account last month but you charged me {amount} again.",
            "My account is closed, so why is there a {amount} payment on my card?",
            "After I closed my profile I still got billed for {plan}.",
        ],
    ),
    "login-error": (
        "account",
        [
            "I can't log in, it says error {code}.",
            "Sign-in fails with 'ERR_{code}: internal server error'.",
            "Login page shows code {code} and won't let me into my account.",
        ],
    ),
}

_FILL = {
    "plan": ["Pro", "Team", "Basic", "Premium"],
    "amount": ["$12.99", "$49", "$120", "$7.50"],
    "day": ["Monday", "March 3", "yesterday", "last week"],
    "feature": ["settings", "reports", "calendar", "search"],
    "order": ["48213", "99120", "30457", "77001"],
    "days": ["5", "9", "12", "20"],
    "country": ["Canada", "Japan", "Brazil", "Norway"],
    "code": ["403", "500", "1017", "AUTH-22"],
}


def _fill(template: str, rng: random.Random) -> str:
    return template.format(**{key: rng.choice(values) for key, values in _FILL.items()})


def ticket_routing(n: int, seed: int = 0, tricky_fraction: float = 0.3) -> list[dict[str, Any]]:
    """``n`` examples ``{"input", "answer", "additional_context"}``, deterministic in ``seed``.

    ``round(n * tricky_fraction)`` examples are tricky (spread over the three rules); the
    others are plain, spread over the four labels. Tricky examples carry their rule in
    ``additional_context`` so the evaluator's feedback can teach it.
    """
    rng = random.Random(seed)
    tricky_count = round(n * tricky_fraction)
    examples: list[dict[str, Any]] = []
    rules = list(_TRICKY)
    for index in range(tricky_count):
        rule = rules[index % len(rules)]
        label, templates = _TRICKY[rule]
        examples.append(
            {
                "input": _fill(rng.choice(templates), rng),
                "answer": label,
                "additional_context": {"rule": RULES[rule]},
            }
        )
    for index in range(n - tricky_count):
        label = LABELS[index % len(LABELS)]
        examples.append(
            {
                "input": _fill(rng.choice(_PLAIN[label]), rng),
                "answer": label,
                "additional_context": {"labels": ", ".join(LABELS)},
            }
        )
    rng.shuffle(examples)
    return examples

"""The quick start with scripted stand-ins for the models: no model needed, a few seconds.

This variant uses gepetto's *scripted* stand-ins instead of models, so it runs in seconds:
a toy adapter whose examples each need a word in the instructions, and a reflection "model"
that reads the feedback and adds a missing word. The optimization loop, budget, Pareto
selection and result are the real ones.
"""

from __future__ import annotations

import gepetto
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["refund", "invoice", "password", "delivery", "warranty", "upgrade"]


def main() -> None:
    print("gepetto quick start with scripted stand-ins for the models\n")
    result = gepetto.optimize(
        seed_candidate={"instructions": "Answer the customer."},
        trainset=keyword_dataset(WORDS, copies=2),
        valset=keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=300,
        seed=0,
    )
    print(result)
    print("\nbest instructions:", result.best_candidate["instructions"])
    print(f"validation score: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")


if __name__ == "__main__":
    main()

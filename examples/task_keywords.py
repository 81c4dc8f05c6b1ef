"""A task file for `gepetto optimize` that needs no model: try the command in a second.

    gepetto optimize examples/task_keywords.py --budget 60 --run-dir runs/keywords
    gepetto status runs/keywords
    gepetto show runs/keywords

The task (:class:`gepetto.testing.KeywordAdapter`): an example is solved when the
instructions contain its word. The reflection "model" (:class:`gepetto.testing.
FeedbackFollowingLM`) adds the words the feedback says are missing, one per call, so the
run climbs step by step as a real one does. A task file defines ``seed_candidate``,
``trainset``, ``valset`` and ``adapter`` (or ``task_lm`` and ``evaluator``), and optionally
``reflection_lm`` and ``options`` (any ``gepetto.optimize`` keyword).
"""

from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

seed_candidate = {"instructions": "Answer the question."}
trainset = keyword_dataset(WORDS)
valset = keyword_dataset(WORDS)
adapter = KeywordAdapter()
reflection_lm = FeedbackFollowingLM(words_per_call=1)
options = {"max_metric_calls": 80, "reflection_minibatch_size": 2, "seed": 0}

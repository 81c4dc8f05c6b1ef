"""Quick start: optimize a vague prompt on the local models (a few minutes on 2 CPU cores)."""

import gepetto
from gepetto.adapters import exact_match_evaluator
from gepetto.datasets import ticket_routing_splits

train, val, test = ticket_routing_splits(12, seeds=(1, 2, 3))  # no message in two sets
result = gepetto.optimize(
    seed_candidate={"instructions": "Read the customer message and tell me what it is about."},
    trainset=train, valset=val, testset=test,
    task_lm="local/qwen2.5-coder-0.5b", evaluator=exact_match_evaluator(),
    reflection_lm="local/qwen2.5-coder-1.5b", max_metric_calls=40,
)  # fmt: skip
print(result.best_candidate["instructions"])
print(f"validation accuracy: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
print(f"held-out accuracy: seed {result.seed_test_score} -> best {result.best_test_score}")

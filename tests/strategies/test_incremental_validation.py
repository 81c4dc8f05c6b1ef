"""The incremental validation policy: fewer validation calls, the same final best."""

from __future__ import annotations

import re
from typing import Any

import pytest

import gepetto
from gepetto.strategies import IncrementalEvaluation
from gepetto.testing import KeywordAdapter, keyword_dataset

# Training examples need a train-only word and a word that validation also needs.
TRAIN = [{"needs": [f"t{i}", f"v{i}"]} for i in range(40)]
VAL = keyword_dataset([f"v{i}" for i in range(40)], copies=5)  # 200 examples


class GoodThenBadLM:
    """Every other reply adds the missing words; the others keep only the missing train-only
    words, dropping everything else: such children win their minibatch but are worse than the
    front on every validation example."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, prompt: str) -> str:
        self.calls += 1
        current = re.search(r"```\n?(.*?)```", prompt, re.S)
        text = current.group(1).strip() if current else ""
        missing: list[str] = []
        for line in re.findall(r"missing words: ([^\n]+)", prompt):
            missing += [w.strip() for w in line.split(",") if w.strip() not in missing]
        if self.calls % 2 == 0:
            return "```\nAnswer. " + " ".join(w for w in missing if w.startswith("t")) + "\n```"
        return "```\n" + text + " " + " ".join(missing) + "\n```"


def run(policy: Any) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        TRAIN,
        VAL,
        adapter=KeywordAdapter(),
        reflection_lm=GoodThenBadLM(),
        max_metric_calls=5000,
        val_evaluation_policy=policy,
        candidate_selection_strategy="current_best",
        stop_callbacks=[lambda status: status.iterations >= 12],
        display_progress_bar=False,
    )


def test_incremental_spends_fewer_validation_calls_for_the_same_best() -> None:
    full = run("full_eval")
    incremental = run(IncrementalEvaluation(initial=20, step=20))
    assert incremental.best_candidate == full.best_candidate
    assert incremental.best_score == full.best_score
    assert incremental.metric_calls_val < 0.7 * full.metric_calls_val
    # Every pool member was scored on the whole validation set.
    assert all(len(scores) == len(VAL) for scores in incremental.val_subscores)
    stopped = [d for d in incremental.decisions if "cannot reach the Pareto front" in d["reason"]]
    assert stopped, "no child was stopped early"


def test_the_seed_is_always_scored_on_everything() -> None:
    result = run("incremental")
    assert len(result.val_subscores[0]) == len(VAL)


def test_bad_policy_arguments() -> None:
    with pytest.raises(gepetto.ConfigError):
        IncrementalEvaluation(initial=0)

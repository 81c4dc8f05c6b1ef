"""The incremental validation policy: fewer validation calls, the same final best."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

import gepetto
from gepetto.records import CandidateRecord, EvaluationRecord
from gepetto.state import RunState
from gepetto.strategies import IncrementalEvaluation
from gepetto.strategies.evaluation_policy import resolve_evaluation_policy
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


def _pool_of_two(child_solves_all: bool, rule: str) -> tuple[RunState, IncrementalEvaluation]:
    """The seed (0.0 everywhere), a best candidate (1.0 except on the first example of the
    policy's order) and a child scored on the order's first 10 examples: it solves the
    first one (no pool member does) and, with ``child_solves_all``, the other nine too."""
    policy = IncrementalEvaluation(initial=10, step=10, rule=rule)  # type: ignore[arg-type]
    first = policy.order(20)[:10]
    best = [0.0 if i == first[0] else 1.0 for i in range(20)]
    state = RunState(valset_size=20)
    for cid, scores in ((0, [0.0] * 20), (1, best)):
        state.append(_evaluation(f"h{cid}", scores, range(20)))
        state.append(_candidate(cid))
    child = [1.0] + [1.0 if child_solves_all else 0.0] * 9
    state.append(_evaluation("child", child, first))
    return state, policy


@pytest.mark.parametrize(("rule", "goes_on"), [("front", True), ("mean", False)])
def test_the_mean_rule_stops_a_child_that_is_best_on_one_example_only(
    rule: str, goes_on: bool
) -> None:
    state, policy = _pool_of_two(child_solves_all=False, rule=rule)
    assert bool(policy.examples_to_evaluate(state, "child")) is goes_on
    if not goes_on:
        admitted, why = policy.admits(state, "child")
        assert not admitted and "lower mean than the best candidate" in why


def test_the_mean_rule_goes_on_while_the_child_keeps_up() -> None:
    state, policy = _pool_of_two(child_solves_all=True, rule="mean")
    assert len(policy.examples_to_evaluate(state, "child")) == 10


def test_incremental_mean_by_name_and_bad_rule() -> None:
    policy = resolve_evaluation_policy("incremental_mean")
    assert isinstance(policy, IncrementalEvaluation) and policy.rule == "mean"
    with pytest.raises(gepetto.ConfigError, match="'front' or 'mean'"):
        IncrementalEvaluation(rule="best")  # type: ignore[arg-type]
    with pytest.raises(gepetto.ConfigError, match="incremental_mean"):
        resolve_evaluation_policy("incremental-mean")


def _evaluation(content_hash: str, scores: Sequence[float], ids: Iterable[int]) -> EvaluationRecord:
    ids = tuple(ids)
    return EvaluationRecord(
        candidate_hash=content_hash,
        split="val",
        purpose="validation",
        iteration=0,
        example_ids=ids,
        scores=tuple(scores),
        objective_scores=None,
        metric_calls=len(ids),
    )


def _candidate(candidate_id: int) -> CandidateRecord:
    return CandidateRecord(
        id=candidate_id,
        texts={"instructions": f"h{candidate_id}"},
        parents=() if candidate_id == 0 else (0,),
        origin="seed" if candidate_id == 0 else "reflection",
        iteration=max(candidate_id - 1, 0),
        metric_calls_at_discovery=0,
        content_hash=f"h{candidate_id}",
        component_cursor=0,
    )

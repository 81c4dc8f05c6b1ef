"""The optimization loop against careless or hostile input.

Every case ends one of two ways: a clear :class:`~gepetto.errors.GepettoError` raised before
anything is paid for (configuration) or as soon as the adapter breaks its contract (with the
paid work in ``error.result``), or a clean run: every example handed to the adapter counted,
the budget held, and a result that reads and writes as standard JSON.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto import events
from gepetto.errors import AdapterContractError, ConfigError
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]
SEED = {"instructions": "Answer."}
BUDGET = 40


class Counting(KeywordAdapter):
    """The toy task; counts the calls and every example handed to ``evaluate``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.handed = 0
        self._lock = threading.Lock()

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        with self._lock:
            self.calls += 1
            self.handed += len(batch)
        return self.answer(batch, candidate, capture_traces)

    def answer(self, batch: Any, candidate: dict[str, str], capture_traces: bool) -> Any:
        return super().evaluate(batch, candidate, capture_traces)


def improving_lm() -> ScriptedLM:
    return ScriptedLM(["```\nAnswer. alpha\n```", "```\nAnswer. alpha beta\n```"], repeat_last=True)


def optimize(adapter: object, lm: object | None = None, **options: Any) -> gepetto.Result:
    settings: dict[str, Any] = {
        "max_metric_calls": BUDGET,
        "display_progress_bar": False,
        "reflection_lm": lm if lm is not None else improving_lm(),
        **options,
    }
    return gepetto.optimize(SEED, keyword_dataset(WORDS), adapter=adapter, **settings)


def assert_clean(result: gepetto.Result, adapter: Counting, budget: int = BUDGET) -> None:
    """Nothing lost: every example handed was counted, the budget held, the result reads
    and writes as standard JSON."""
    assert adapter.handed == result.total_metric_calls <= budget
    data = json.loads(result.to_json(), parse_constant=lambda c: pytest.fail(f"JSON has {c}"))
    assert gepetto.Result.from_dict(data) == result
    assert result.best_candidate and result.summary_lines() and repr(result)
    assert result.best_score is not None and math.isfinite(result.best_score)


def assert_contract_error(
    raised: pytest.ExceptionInfo[AdapterContractError], adapter: Counting, *needles: str
) -> None:
    """A clear contract error naming the method; the work paid for is in ``error.result``."""
    message = str(raised.value)
    for needle in needles:
        assert needle in message
    paid = raised.value.result
    assert paid is not None
    assert paid.total_metric_calls <= adapter.handed <= BUDGET


# ----- adapters -----------------------------------------------------------------------------


def test_an_adapter_whose_every_call_raises_stops_after_the_seed_validation() -> None:
    class Raising(Counting):
        def answer(self, batch: Any, candidate: Any, capture_traces: bool) -> Any:
            raise PermissionError("403 Forbidden: the key has no access to this model")

    adapter, lm = Raising(), improving_lm()
    result = optimize(adapter, lm, max_concurrency=2, raise_on_exception=False)
    assert lm.calls == 0
    assert adapter.handed == result.total_metric_calls <= 2 * len(WORDS)
    assert "PermissionError: 403 Forbidden" in (result.stop_reason or "")
    assert result.best_candidate == SEED


@pytest.mark.parametrize("max_concurrency", [1, 4])
def test_batches_that_raise_never_exceed_the_budget(max_concurrency: int) -> None:
    class BatchesRaise(Counting):
        def answer(self, batch: Any, candidate: Any, capture_traces: bool) -> Any:
            if len(batch) > 1:
                raise RuntimeError("batch too large for the backend")
            return super().answer(batch, candidate, capture_traces)

    adapter = BatchesRaise()
    result = optimize(adapter, max_concurrency=max_concurrency, max_metric_calls=25)
    assert_clean(result, adapter, budget=25)


def _batch(outputs: Any, scores: Any, **fields: Any) -> gepetto.EvaluationBatch[Any, Any]:
    return gepetto.EvaluationBatch(outputs=outputs, scores=scores, **fields)


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (lambda b: _batch(b[:-1], [0.0] * len(b)), "outputs of length"),
        (lambda b: _batch(b, [0.0] * (len(b) + 2)), "scores of length"),
        (lambda b: _batch(b, ["0.5"] * len(b)), "score of type str"),
        (lambda b: _batch(b, [None] * len(b)), "score of type NoneType"),
        (lambda b: _batch(b, [math.nan] * len(b)), "non-finite score (nan)"),
        (lambda b: _batch(b, [-math.inf] * len(b)), "non-finite score (-inf)"),
        (lambda b: _batch(b, "1" * len(b)), "scores of type str"),
        (lambda b: None, "returned NoneType"),
        (
            lambda b: _batch(b, [0.0] * len(b), objective_scores=[{"f1": math.inf}] * len(b)),
            "non-finite objective score 'f1'",
        ),
        (
            lambda b: _batch(b, [0.0] * len(b), objective_scores=[None] * len(b)),
            "objective_scores[0] of type NoneType",
        ),
    ],
)
def test_an_evaluation_that_breaks_the_protocol_is_a_contract_error(
    reply: Callable[[list[Any]], Any], needle: str
) -> None:
    class Broken(Counting):
        def answer(self, batch: Any, candidate: Any, capture_traces: bool) -> Any:
            return reply(batch)

    adapter, lm = Broken(), improving_lm()
    with pytest.raises(AdapterContractError) as raised:
        optimize(adapter, lm)
    assert_contract_error(raised, adapter, "Broken.evaluate", needle)
    assert lm.calls == 0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_huge_scores_keep_every_number_finite(sign: float) -> None:
    class Huge(Counting):
        def answer(self, batch: Any, candidate: Any, capture_traces: bool) -> Any:
            result = super().answer(batch, candidate, capture_traces)
            result.scores = [sign * 1e308 * (0.5 + s) for s in result.scores]
            return result

    adapter = Huge()
    result = optimize(adapter, perfect_score=1.7e308)
    assert_clean(result, adapter)


@pytest.mark.parametrize(
    ("dataset", "needle"),
    [
        (lambda names: {n: ["inputs: a, feedback: b"] for n in names}, "record of type str"),
        (lambda names: dict.fromkeys(names, "feedback"), "returned str for component"),
        (lambda names: {n: {"Feedback": "x"} for n in names}, "returned dict for component"),
        (lambda names: {n: [None] for n in names}, "record of type NoneType"),
        (lambda names: None, "returned NoneType"),
        (lambda names: [{"Feedback": "x"}], "returned list"),
    ],
)
def test_a_reflective_dataset_that_breaks_the_protocol_is_a_contract_error(
    dataset: Callable[[list[str]], Any], needle: str
) -> None:
    class BadDataset(Counting):
        def make_reflective_dataset(self, candidate: Any, batch: Any, names: Any) -> Any:
            return dataset(names)

    adapter, lm = BadDataset(), improving_lm()
    with pytest.raises(AdapterContractError) as raised:
        optimize(adapter, lm)
    assert_contract_error(raised, adapter, "BadDataset.make_reflective_dataset", needle)
    assert lm.calls == 0


def test_a_reflective_dataset_that_raises_fails_the_proposal_and_the_run_goes_on() -> None:
    class RaisingDataset(Counting):
        def make_reflective_dataset(self, candidate: Any, batch: Any, names: Any) -> Any:
            raise KeyError("trajectory")

    adapter = RaisingDataset()
    result = optimize(adapter)
    assert_clean(result, adapter)
    assert "make_reflective_dataset failed: KeyError" in result.decisions[0]["reason"]


def test_an_adapter_that_mutates_its_inputs_cannot_change_the_run() -> None:
    class Mutating(Counting):
        def answer(self, batch: Any, candidate: Any, capture_traces: bool) -> Any:
            result = super().answer(batch, candidate, capture_traces)
            batch.clear()
            candidate.clear()
            candidate["instructions"] = "hijacked"
            return result

        def make_reflective_dataset(self, candidate: Any, batch: Any, names: Any) -> Any:
            dataset = super().make_reflective_dataset(candidate, batch, names)
            candidate["instructions"] = "hijacked"
            names.clear()
            return dataset

    adapter = Mutating()
    result = optimize(adapter)
    assert_clean(result, adapter)
    assert all("hijacked" not in c["instructions"] for c in result.candidates)
    assert result.candidates[0] == SEED


@pytest.mark.parametrize(
    ("proposal", "needle"),
    [(None, "propose_new_texts must return a dict"), ({"instructions": 42}, "must return")],
)
def test_propose_new_texts_returning_garbage_is_a_contract_error(
    proposal: Any, needle: str
) -> None:
    class Proposes(Counting):
        def propose_new_texts(self, candidate: Any, dataset: Any, names: Any) -> Any:
            return proposal

    adapter = Proposes()
    with pytest.raises(AdapterContractError) as raised:
        gepetto.optimize(
            SEED,
            keyword_dataset(WORDS),
            adapter=adapter,
            max_metric_calls=BUDGET,
            display_progress_bar=False,
        )
    assert_contract_error(raised, adapter, "Proposes.propose_new_texts", needle)


# ----- reflection replies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("   \n\t  \n", "empty reply"),
        ("```\nAnswer. alpha \ud800\ud800\n```", "lone surrogate at position 14"),
        ("<think>The user wants better instructions. Let me consider", "no fenced block"),
        ("<think>hmm</think>I think the prompt should mention alpha.", "no fenced block"),
        ("```\nAnswer.\n```", "repeats the current text unchanged"),
        ("```\nAnswer. alpha", "unclosed fenced block"),
        (None, "reflection LM failed: TypeError"),
        (42, "reflection LM failed: TypeError"),
        ({"text": "Answer. alpha"}, "reflection LM failed: TypeError"),
    ],
)
def test_an_unusable_reflection_reply_is_a_failed_proposal(reply: Any, reason: str) -> None:
    adapter = Counting()
    result = optimize(adapter, ScriptedLM(lambda prompt: reply), reflection_retries=0)
    assert_clean(result, adapter)
    assert result.num_candidates == 1
    assert result.decisions and reason in result.decisions[0]["reason"]
    assert all(d["outcome"] == "failed" for d in result.decisions)


def test_an_async_reflection_lm_returning_a_non_string_fails_the_proposal() -> None:
    async def lm(prompt: Any) -> Any:
        await asyncio.sleep(0)
        return ["not", "a", "string"]

    adapter = Counting()
    result = optimize(adapter, lm)
    assert_clean(result, adapter)
    assert all(d["outcome"] == "failed" for d in result.decisions)


def test_a_huge_reply_is_evaluated_like_any_other(tmp_path: Path) -> None:
    text = "Answer. alpha beta " + "filler " * 20_000
    adapter = Counting()
    result = optimize(
        adapter, ScriptedLM([f"```\n{text}\n```"], repeat_last=True), run_dir=tmp_path
    )
    assert_clean(result, adapter)
    assert result.best_candidate["instructions"].startswith("Answer. alpha beta")


# ----- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"skip_perfect_score": "no"}, "skip_perfect_score must be True or False, got 'no'"),
        ({"use_merge": 1}, "use_merge must be True or False, got 1"),
        ({"max_concurrency": True}, "max_concurrency must be an int >= 1, got True (bool)"),
        ({"max_metric_calls": "40"}, "max_metric_calls must be an int, got '40' (str)"),
        ({"parallel_proposals": 1.5}, "parallel_proposals must be an int >= 1, got 1.5"),
        ({"reflection_minibatch_size": True}, "reflection_minibatch_size must be an int"),
        ({"perfect_score": math.nan}, "perfect_score must be a finite number"),
        ({"max_cost_usd": math.inf}, "number of dollars > 0"),
        ({"frontier_type": ["instance"]}, "unknown frontier_type ['instance']"),
        ({"reflection_edit": None}, "reflection_edit must be 'rewrite'"),
        ({"trainset": {"a": 1}}, "trainset must be a list of examples, got dict"),
        ({"objective_weights": [("f1", 1.0)]}, "objective_weights must be a dict"),
        ({"callbacks": events.Inline(print)}, "callbacks must be a list of observers"),
        ({"callbacks": ["observer"]}, "is not callable and has none of the methods"),
        ({"stop_callbacks": 3600}, "stop condition 3600 must have check(status)"),
        ({"custom_candidate_proposer": "mine"}, "custom_candidate_proposer must be callable"),
        ({"reflection_lm_kwargs": "temperature=0"}, "reflection_lm_kwargs must be a dict"),
        ({"run_dir": 7}, "run_dir must be a str or pathlib.Path"),
        ({"seed_candidate": {"instructions": "Hi \udc80"}}, "holds a lone surrogate"),
    ],
)
def test_a_wrong_option_is_a_config_error_before_any_call(
    options: dict[str, Any], needle: str
) -> None:
    adapter, lm = Counting(), improving_lm()
    settings: dict[str, Any] = {
        "seed_candidate": SEED,
        "trainset": keyword_dataset(WORDS),
        "adapter": adapter,
        "reflection_lm": lm,
        "max_metric_calls": BUDGET,
        "display_progress_bar": False,
        **options,
    }
    with pytest.raises(ConfigError) as raised:
        gepetto.optimize(**settings)
    assert needle in str(raised.value)
    assert adapter.calls == 0
    assert lm.calls == 0


# ----- observers ----------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, event: events.Event) -> None:
        self.names.append(event.name)


@pytest.mark.parametrize(
    "error", [ValueError("observer bug"), SystemExit(0), KeyboardInterrupt(), GeneratorExit()]
)
def test_an_observer_raising_on_every_event_changes_nothing(error: BaseException) -> None:
    def raising(event: events.Event) -> None:
        raise error

    baseline_adapter, adapter, recorder = Counting(), Counting(), Recorder()
    baseline = optimize(baseline_adapter)
    result = optimize(adapter, callbacks=[raising, recorder])
    assert_clean(result, adapter)
    assert result.to_dict() == baseline.to_dict()
    assert recorder.names[0] == "run_started" and recorder.names[-1] == "run_finished"


def test_a_slow_observer_gets_every_event_before_the_run_returns() -> None:
    seen: list[str] = []

    def slow(event: events.Event) -> None:
        time.sleep(0.002)
        seen.append(event.name)

    adapter = Counting()
    result = optimize(adapter, callbacks=[slow])
    assert_clean(result, adapter)
    assert seen[-1] == "run_finished"
    assert seen.count("iteration_finished") == result.num_iterations


def test_a_stop_condition_that_raises_ends_the_run_cleanly() -> None:
    def stop(status: gepetto.RunStatus) -> bool:
        raise RuntimeError("my stop rule is broken")

    adapter = Counting()
    result = optimize(adapter, stop_callbacks=[stop])
    assert_clean(result, adapter)
    assert "RuntimeError: my stop rule is broken" in (result.stop_reason or "")

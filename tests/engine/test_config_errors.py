"""Bad input fails before any LM or adapter call, with a message that says what to change."""

from __future__ import annotations

from typing import Any

import pytest

import gepetto
from gepetto.errors import AdapterContractError, ConfigError
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset

TRAIN = keyword_dataset(["alpha", "beta", "gamma"])


class NeverCalledAdapter(KeywordAdapter):
    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the adapter must not be called for a config error")


def optimize(**overrides: Any) -> gepetto.Result:
    options: dict[str, Any] = {
        "seed_candidate": {"instructions": "Answer."},
        "trainset": TRAIN,
        "adapter": NeverCalledAdapter(),
        "reflection_lm": ScriptedLM([]),
        "max_metric_calls": 50,
        "display_progress_bar": False,
    }
    options.update(overrides)
    return gepetto.optimize(**options)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"seed_candidate": {}}, "seed_candidate must contain at least one component text."),
        ({"seed_candidate": {"a": 1}}, "must be str -> str"),
        ({"seed_candidate": "Answer."}, "seed_candidate must be a non-empty dict"),
        ({"trainset": []}, "trainset is empty"),
        ({"valset": []}, "valset is empty"),
        ({"trainset": "abc"}, "trainset must be a list"),
        ({"candidate_selection_strategy": "best"}, "unknown candidate_selection_strategy 'best'"),
        ({"candidate_selection_strategy": 3}, "candidate_selection_strategy must be a name"),
        ({"frontier_type": "global"}, "unknown frontier_type 'global'"),
        ({"batch_sampler": "sequential"}, "unknown batch_sampler 'sequential'"),
        ({"reflection_minibatch_size": 0}, "reflection_minibatch_size must be an int >= 1"),
        ({"module_selector": "random"}, "unknown module_selector 'random'"),
        ({"acceptance_criterion": "any"}, "unknown acceptance_criterion 'any'"),
        ({"val_evaluation_policy": "sometimes"}, "unknown val_evaluation_policy"),
        ({"reflection_prompt_template": "no placeholders"}, "<curr_param>, <side_info>"),
        (
            {"reflection_prompt_template": "<curr_param> only"},
            "Missing placeholder(s) in prompt template: <side_info>",
        ),
        ({"reflection_prompt_template": {"other": "<curr_param><side_info>"}}, "unknown component"),
        (
            {"reflection_prompt_template": {"instructions": "x"}},
            "reflection_prompt_template['instructions']",
        ),
        ({"max_metric_calls": 2}, "smaller than the validation set (3 examples)"),
        ({"max_metric_calls": None}, "no stop condition"),
        ({"max_metric_calls": 10.5}, "max_metric_calls must be an int"),
        ({"max_concurrency": 0}, "max_concurrency must be an int >= 1"),
        ({"parallel_proposals": 0}, "parallel_proposals must be an int >= 1"),
        ({"adapter": None}, "pass adapter="),
        ({"adapter": object()}, "lacks evaluate, make_reflective_dataset"),
        ({"reflection_lm": None}, "pass reflection_lm="),
        ({"reflection_lm": 42}, "reflection_lm must be a callable"),
        ({"reflection_lm": "gpt-4.1"}, "unknown model string 'gpt-4.1'"),
        ({"reflection_lm": "acme/gpt-4.1"}, "use 'provider/model'"),
        ({"task_lm": "openai/gpt-4.1"}, "pass either adapter= or task_lm="),
        ({"adapter": None, "task_lm": None}, "or task_lm="),
        ({"max_merge_invocations": -1}, "max_merge_invocations must be an int >= 0"),
        ({"merge_val_overlap_floor": 0}, "merge_val_overlap_floor must be an int >= 1"),
        ({"stop_callbacks": [42]}, "stop condition 42 must have check(status)"),
        ({"seed": "zero"}, "seed must be an int"),
    ],
)
def test_bad_input_is_rejected_before_any_call(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        optimize(**overrides)
    assert message in str(error.value)


def test_config_errors_are_gepetto_and_value_errors() -> None:
    with pytest.raises(gepetto.GepettoError):
        optimize(frontier_type="nope")
    with pytest.raises(ValueError):
        optimize(frontier_type="nope")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            lambda b: gepetto.EvaluationBatch(outputs=b, scores=[1.0] * (len(b) + 1)),
            "scores of length 2",
        ),
        (
            lambda b: gepetto.EvaluationBatch(outputs=[], scores=[1.0] * len(b)),
            "outputs of length 0 for a batch of 1",
        ),
        (
            lambda b: gepetto.EvaluationBatch(outputs=b, scores=["high"] * len(b)),
            "scores must be numbers",
        ),
        (
            lambda b: gepetto.EvaluationBatch(outputs=b, scores=[float("nan")] * len(b)),
            "non-finite",
        ),
        (lambda b: {"scores": [1.0] * len(b)}, "must return an EvaluationBatch"),
    ],
)
def test_adapter_contract_violations_stop_the_run(broken: Any, message: str) -> None:
    class Broken(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            return broken(batch)

    lm = ScriptedLM([])
    with pytest.raises(AdapterContractError) as error:
        optimize(adapter=Broken(), reflection_lm=lm)
    assert message in str(error.value)
    assert "Broken.evaluate" in str(error.value)
    assert lm.calls == 0


def test_missing_trajectories_when_traces_requested() -> None:
    class NoTraces(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            return self._run(batch, candidate, capture_traces=False)

    with pytest.raises(AdapterContractError, match="capture_traces=True but returned"):
        optimize(adapter=NoTraces())


BOOL_OPTIONS = [
    "skip_perfect_score",
    "use_merge",
    "cache_evaluation",
    "early_reject",
    "drop_wrong_examples",
    "fork",
    "handle_signals",
    "display_progress_bar",
]
INT_OPTIONS = {  # option -> a valid value
    "max_metric_calls": 50,
    "max_concurrency": 2,
    "parallel_proposals": 2,
    "rejected_memory": 1,
    "reflection_history": 1,
    "reflection_retries": 1,
    "reflection_samples": 2,
    "reflection_minibatch_size": 2,
    "max_merge_invocations": 2,
    "merge_val_overlap_floor": 2,
    "seed": 3,
}


@pytest.mark.parametrize("option", BOOL_OPTIONS)
@pytest.mark.parametrize("value", ["no", "False", 0, 1, 1.0])
def test_every_boolean_option_refuses_what_is_not_a_bool(option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        optimize(**{option: value})
    message = str(error.value)
    assert f"{option} must be True or False, got {value!r}" in message
    assert f"pass {option}=True or {option}=False" in message


@pytest.mark.parametrize("option", sorted(INT_OPTIONS))
@pytest.mark.parametrize("value", [True, False, "3", 2.5, 2.0])
def test_every_integer_option_refuses_bools_strings_and_floats(option: str, value: Any) -> None:
    with pytest.raises(ConfigError) as error:
        optimize(**{option: value})
    message = str(error.value)
    assert f"{option} must be an int" in message
    assert f"got {value!r} ({type(value).__name__})" in message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"perfect_score": float("nan")}, "perfect_score must be a finite number"),
        ({"perfect_score": float("inf")}, "perfect_score must be a finite number"),
        ({"perfect_score": "1.0"}, "perfect_score must be a finite number"),
        ({"perfect_score": True}, "got True (bool)"),
        ({"max_cost_usd": "5 dollars"}, "number of dollars > 0"),
        ({"max_cost_usd": float("nan")}, "number of dollars > 0"),
        ({"recheck_margin": float("inf")}, "recheck_margin must be a finite number >= 0"),
        ({"recheck_margin": True}, "recheck_margin must be a finite number >= 0"),
        ({"callbacks": KeywordAdapter()}, "callbacks must be a list of observers"),
        ({"callbacks": [42]}, "callbacks: observer 42 is not callable"),
        ({"reflection_lm_kwargs": "temperature=0"}, "reflection_lm_kwargs must be a dict"),
        ({"seed_candidate": {"instructions": "Answer.\ud800"}}, "holds a lone surrogate"),
    ],
)
def test_numbers_observers_and_texts_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        optimize(**options)
    assert message in str(error.value)


def test_numpy_style_integers_are_accepted_as_ints() -> None:
    class Integral(int):  # like numpy.int64: an Integral that is not a plain int
        pass

    result = gepetto.optimize(
        {"instructions": "Answer."},
        TRAIN,
        adapter=KeywordAdapter(),
        reflection_lm=ScriptedLM(["```\nAnswer. alpha\n```"], repeat_last=True),
        max_metric_calls=Integral(12),
        max_concurrency=Integral(2),
        display_progress_bar=False,
    )
    assert result.total_metric_calls <= 12


def test_non_finite_objective_scores_are_a_contract_error() -> None:
    class NaNObjective(KeywordAdapter):
        def evaluate(self, batch: Any, candidate: Any, capture_traces: bool = False) -> Any:
            result = super().evaluate(batch, candidate, capture_traces)
            result.objective_scores = [{"cost": float("nan")} for _ in batch]
            return result

    lm = ScriptedLM([])
    with pytest.raises(AdapterContractError) as error:
        optimize(adapter=NaNObjective(), reflection_lm=lm)
    assert "NaNObjective.evaluate returned a non-finite objective score 'cost'" in str(error.value)
    assert lm.calls == 0

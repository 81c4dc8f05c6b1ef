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
        ({"seed_candidate": {}}, "seed_candidate must be a non-empty dict"),
        ({"seed_candidate": {"a": 1}}, "must be str -> str"),
        ({"seed_candidate": "Answer."}, "seed_candidate must be a non-empty dict"),
        ({"trainset": []}, "trainset is empty"),
        ({"valset": []}, "valset is empty"),
        ({"trainset": "abc"}, "trainset must be a list"),
        ({"candidate_selection_strategy": "best"}, "unknown candidate_selection_strategy 'best'"),
        ({"candidate_selection_strategy": 3}, "candidate_selection_strategy must be a name"),
        ({"frontier_type": "global"}, "unknown frontier_type 'global'"),
        ({"batch_sampler": "sequential"}, "unknown batch_sampler 'sequential'"),
        ({"reflection_minibatch_size": 0}, "reflection_minibatch_size must be >= 1"),
        ({"module_selector": "random"}, "unknown module_selector 'random'"),
        ({"acceptance_criterion": "any"}, "unknown acceptance_criterion 'any'"),
        ({"val_evaluation_policy": "sometimes"}, "unknown val_evaluation_policy"),
        ({"reflection_prompt_template": "no placeholders"}, "<curr_param>, <side_info>"),
        (
            {"reflection_prompt_template": "<curr_param> only"},
            "missing the placeholder(s) <side_info>",
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

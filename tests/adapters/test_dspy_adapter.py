"""The DSPy adapters, wired with a fake task model (real DSPy, real gepetto runs).

The real local models are in tests/lm/test_real_dspy.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.dspy_fakes import (  # first: quiet DSPy before it is imported
    CLASSIFY_SEED,
    EXPLAIN_SEED,
    LOWERCASE_RULE,
    TRAIN,
    VAL,
    RuleFollowingLM,
    Sentiment,
    feedback_metric,
    plain_metric,
    sentiment_examples,
)

import dspy  # isort: skip

import gepetto
from gepetto.adapters.dspy import (
    FULL_PROGRAM_REFLECTION_TEMPLATE,
    GEPA,
    DspyAdapter,
    DspyFullProgramAdapter,
    DspyReflection,
    auto_budget,
    dspy_lm,
)
from gepetto.errors import ConfigError
from gepetto.testing import ScriptedLM
from gepetto.testing.adapter_contract import check_adapter_contract

ROOT = Path(__file__).resolve().parents[2]
FIXED_CLASSIFY = f"{CLASSIFY_SEED} {LOWERCASE_RULE}"


def fixing_reflection(prompt: Any) -> str:
    """Adds the lowercase rule to classify's instructions; keeps explain's."""
    text = json.dumps(prompt)
    if CLASSIFY_SEED in text:
        return f"```\n{FIXED_CLASSIFY}\n```"
    return f"```\n{EXPLAIN_SEED}\n```"


# ----- the instruction adapter ---------------------------------------------------------------


def test_one_component_per_predictor_and_the_program_is_never_changed() -> None:
    program = Sentiment()
    adapter = DspyAdapter(program, plain_metric, lm=RuleFollowingLM())
    assert adapter.seed_candidate() == {"classify": CLASSIFY_SEED, "explain": EXPLAIN_SEED}
    built = adapter.build_program({"classify": FIXED_CLASSIFY})
    assert built.classify.signature.instructions == FIXED_CLASSIFY
    assert built.explain.signature.instructions == EXPLAIN_SEED
    assert program.classify.signature.instructions == CLASSIFY_SEED
    with pytest.raises(ConfigError, match=r"\['nope'\].*predictors: \['classify', 'explain'\]"):
        adapter.build_program({"nope": "x"})


def test_scores_follow_the_instructions() -> None:
    adapter = DspyAdapter(Sentiment(), plain_metric, lm=RuleFollowingLM())
    seed = adapter.evaluate(TRAIN, adapter.seed_candidate())
    fixed = adapter.evaluate(TRAIN, {**adapter.seed_candidate(), "classify": FIXED_CLASSIFY})
    assert seed.scores == [0.0] * 4 and fixed.scores == [1.0] * 4
    assert seed.trajectories is None
    assert fixed.outputs[0] == {"label": "positive", "explanation": "Because of a good day."}


def test_gepa_style_metric_gives_each_predictor_its_own_feedback() -> None:
    adapter = DspyAdapter(Sentiment(), feedback_metric, lm=RuleFollowingLM())
    candidate = adapter.seed_candidate()
    batch = adapter.evaluate(TRAIN[:2], candidate, capture_traces=True)
    json.dumps(batch.trajectories)  # journaled as JSON
    dataset = adapter.make_reflective_dataset(candidate, batch, ["classify", "explain"])
    classify, explain = dataset["classify"], dataset["explain"]
    assert [r["Inputs"] for r in classify] == [{"text": "a good day"}, {"text": "a bad day"}]
    assert classify[0]["Generated Outputs"] == {"label": "Positive"}
    assert (
        classify[0]["Feedback"]
        == "classify wrote 'Positive'; the label must be exactly 'positive'."
    )
    assert explain[1]["Inputs"] == {"text": "a bad day", "label": "Negative"}
    assert explain[1]["Feedback"] == "explain: the explanation was 'Because of a bad day.'."
    # the score is the program-level one (pred_name=None)
    assert (
        batch.trajectories is not None
        and batch.trajectories[0]["feedback"] == "Expected 'positive'."
    )


def metric_two_args(example: dspy.Example, pred: dspy.Prediction) -> bool:
    return bool(pred.label == example.label)


def metric_with_feedback(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> Any:
    return dspy.Prediction(score=pred.label == example.label, feedback=f"want {example.label}")


def metric_dict(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> Any:
    return {"score": 0.5, "feedback": "half"}


@pytest.mark.parametrize(
    ("metric", "score", "feedback"),
    [
        (plain_metric, 0.0, "This trajectory got a score of 0.0."),
        (metric_two_args, 0.0, "This trajectory got a score of 0.0."),
        (metric_with_feedback, 0.0, "want positive"),
        (metric_dict, 0.5, "half"),
    ],
)
def test_metric_shapes(metric: Any, score: float, feedback: str) -> None:
    adapter = DspyAdapter(Sentiment(), metric, lm=RuleFollowingLM())
    batch = adapter.evaluate(TRAIN[:1], adapter.seed_candidate(), capture_traces=True)
    assert batch.scores == [score]
    dataset = adapter.make_reflective_dataset(adapter.seed_candidate(), batch, ["classify"])
    assert dataset["classify"][0]["Feedback"] == feedback


def test_a_failing_metric_or_program_costs_only_its_example() -> None:
    def metric(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float:
        if example.text == "bad weather":
            raise ValueError("metric exploded")
        return float(pred.label == example.label)

    adapter = DspyAdapter(Sentiment(), metric, lm=RuleFollowingLM(), failure_score=-1.0)
    batch = [*TRAIN, *sentiment_examples(["crash good"])]
    candidate = {**adapter.seed_candidate(), "classify": FIXED_CLASSIFY}
    result = adapter.evaluate(batch, candidate, capture_traces=True)
    assert result.scores == [1.0, 1.0, 1.0, -1.0, -1.0]
    assert result.trajectories is not None
    assert "ValueError: metric exploded" in result.trajectories[3]["feedback"]
    dataset = adapter.make_reflective_dataset(candidate, result, ["classify", "explain"])
    parse = dataset["classify"][4]
    assert parse["Generated Outputs"] == "I refuse to follow the format."
    assert "[[ ## label ## ]]" in parse["Feedback"]  # the structure to follow
    assert "AdapterParseError" in dataset["explain"][4]["Feedback"]


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"dspy\.Module"):
        DspyAdapter("not a program", plain_metric)
    with pytest.raises(ConfigError, match="no predictors"):
        DspyAdapter(dspy.Module(), plain_metric)
    with pytest.raises(ConfigError, match=r"must take \(example, pred"):
        DspyAdapter(Sentiment(), lambda only: 1.0)
    adapter = DspyAdapter(Sentiment(), plain_metric, lm=RuleFollowingLM())
    result = adapter.evaluate([{"text": "a dict"}], adapter.seed_candidate(), True)
    assert result.scores == [0.0]
    assert result.trajectories is not None and "with_inputs" in result.trajectories[0]["feedback"]


def test_instruction_adapter_keeps_the_contract() -> None:
    check_adapter_contract(
        lambda: DspyAdapter(Sentiment(), feedback_metric, lm=RuleFollowingLM()),
        candidate={"classify": CLASSIFY_SEED, "explain": EXPLAIN_SEED},
        examples=TRAIN,
        failing_example=sentiment_examples(["crash now"])[0],
        failure_text="I refuse to follow the format.",
    )


def test_optimize_improves_the_program() -> None:
    adapter = DspyAdapter(Sentiment(), feedback_metric, lm=RuleFollowingLM())
    reflection = ScriptedLM(fixing_reflection)
    result = gepetto.optimize(
        adapter.seed_candidate(),
        TRAIN,
        VAL,
        adapter=adapter,
        reflection_lm=reflection,
        max_metric_calls=30,
        display_progress_bar=False,
    )
    assert result.seed_score == 0.0 and result.best_score == 1.0
    assert result.best_candidate == {"classify": FIXED_CLASSIFY, "explain": EXPLAIN_SEED}
    assert "classify wrote 'Positive'" in json.dumps(reflection.prompts[0])


# ----- the optimizer class -------------------------------------------------------------------


def test_gepa_compile_returns_the_optimized_program(tmp_path: Path) -> None:
    lm = RuleFollowingLM()
    student = Sentiment()
    optimizer = GEPA(
        feedback_metric,
        max_metric_calls=30,
        reflection_lm=ScriptedLM(fixing_reflection),
        track_stats=True,
        track_best_outputs=True,
        gepa_kwargs={"display_progress_bar": False},
    )
    with dspy.context(lm=lm):
        optimized = optimizer.compile(student, trainset=TRAIN, valset=VAL)
        assert optimized.classify.signature.instructions == FIXED_CLASSIFY
        assert student.classify.signature.instructions == CLASSIFY_SEED
        assert optimized(text="good vibes").label == "positive"
        answers = [optimized(text=e.text).label for e in VAL]
    assert lm.calls > 0
    result = optimized.gepetto_result
    assert isinstance(result, gepetto.Result) and result.best_score == 1.0
    details = optimized.detailed_results
    assert details.best_idx == result.best_idx
    assert details.best_candidate.classify.signature.instructions == FIXED_CLASSIFY
    assert details.val_aggregate_scores == result.val_aggregate_scores
    assert details.best_outputs_valset is not None

    path = tmp_path / "program.json"
    optimized.save(str(path))
    loaded = Sentiment()
    loaded.load(str(path))
    assert loaded.classify.signature.instructions == FIXED_CLASSIFY
    with dspy.context(lm=lm):
        assert [loaded(text=e.text).label for e in VAL] == answers


def test_gepa_takes_a_dspy_lm_as_reflection_model() -> None:
    replies = iter([f"```\n{FIXED_CLASSIFY}\n```"] * 10)

    class Reflector(dspy.utils.DummyLM):
        def __call__(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> list[str]:
            self.seen = messages
            return [next(replies)]

    reflector = Reflector([])
    assert DspyReflection(reflector)("Improve this.") == FIXED_CLASSIFY.join(["```\n", "\n```"])
    assert reflector.seen == [{"role": "user", "content": "Improve this."}]
    optimizer = GEPA(
        plain_metric,
        max_metric_calls=20,
        reflection_lm=reflector,
        component_selector="all",
        use_merge=False,
        gepa_kwargs={"display_progress_bar": False},
    )
    with dspy.context(lm=RuleFollowingLM()):
        optimized = optimizer.compile(Sentiment(), trainset=TRAIN, valset=VAL)
    assert optimized.classify.signature.instructions == FIXED_CLASSIFY


def test_gepa_instruction_proposer_runs_in_the_reflection_context() -> None:
    seen: list[Any] = []

    def proposer(candidate: Any, reflective_dataset: Any, components_to_update: Any) -> Any:
        seen.append(dspy.settings.lm)
        return {name: FIXED_CLASSIFY for name in components_to_update if name == "classify"}

    reflection = RuleFollowingLM()
    optimizer = GEPA(
        plain_metric,
        max_metric_calls=20,
        reflection_lm=reflection,
        instruction_proposer=proposer,
        gepa_kwargs={"display_progress_bar": False},
    )
    with dspy.context(lm=RuleFollowingLM()):
        optimized = optimizer.compile(Sentiment(), trainset=TRAIN, valset=VAL)
    assert seen and all(lm is reflection for lm in seen)
    assert optimized.classify.signature.instructions == FIXED_CLASSIFY


def test_auto_budget_is_dspys() -> None:
    theirs = dspy.GEPA(feedback_metric, auto="light", reflection_lm=RuleFollowingLM())
    for predictors, valset in [(1, 10), (2, 3), (5, 50)]:
        for auto, n in [("light", 6), ("medium", 12), ("heavy", 18)]:
            expected = theirs.auto_budget(predictors, n, valset)
            assert auto_budget(predictors, n, valset) == expected
            ours = GEPA(feedback_metric, auto=auto, reflection_lm="openai/x")
            assert ours.budget(predictors, 100, valset) == expected
    full = GEPA(plain_metric, max_full_evals=2, reflection_lm="openai/x")
    assert full.budget(2, 4, 3) == 14


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one budget"),
        ({"auto": "light", "max_metric_calls": 10}, "exactly one budget"),
        ({"auto": "huge"}, "auto must be one of"),
        ({"max_metric_calls": 0}, "max_metric_calls must be an int >= 1"),
        ({"max_metric_calls": 5, "reflection_lm": None}, "needs reflection_lm"),
        ({"max_metric_calls": 5, "code_proposer": object()}, "code_proposer is not supported"),
        ({"max_metric_calls": 5, "track_best_outputs": True}, "needs track_stats"),
        (
            {"max_metric_calls": 5, "gepa_kwargs": {"reflection_prompt_template": "x"}},
            "may not set 'reflection_prompt_template'",
        ),
    ],
)
def test_gepa_refuses_bad_options(options: dict[str, Any], message: str) -> None:
    options = {"reflection_lm": "openai/x", **options}
    with pytest.raises(ConfigError, match=message):
        GEPA(plain_metric, **options)


def test_gepa_refuses_bad_inputs_before_any_call() -> None:
    lm = RuleFollowingLM()
    optimizer = GEPA(plain_metric, max_metric_calls=10, reflection_lm=ScriptedLM([]))
    with dspy.context(lm=lm):
        with pytest.raises(ConfigError, match=r"trainset\[1\].*with_inputs"):
            optimizer.compile(Sentiment(), trainset=[TRAIN[0], dspy.Example(text="x")])
        with pytest.raises(ConfigError, match="teacher"):
            optimizer.compile(Sentiment(), trainset=TRAIN, teacher=Sentiment())
        with pytest.raises(ConfigError, match="trainset must hold"):
            optimizer.compile(Sentiment(), trainset=[])
    assert lm.calls == 0


def test_gepa_log_dir_resumes_the_run(tmp_path: Path) -> None:
    def compile_once(budget: int) -> Any:
        optimizer = GEPA(
            plain_metric,
            max_metric_calls=budget,
            reflection_lm=ScriptedLM(fixing_reflection),
            log_dir=str(tmp_path / "run"),
            gepa_kwargs={"display_progress_bar": False},
        )
        with dspy.context(lm=RuleFollowingLM()):
            return optimizer.compile(Sentiment(), trainset=TRAIN, valset=VAL)

    first = compile_once(3).gepetto_result
    assert first.total_metric_calls == 3 and first.best_score == 0.0
    second = compile_once(30).gepetto_result
    assert second.best_score == 1.0 and second.total_metric_calls <= 30
    assert (tmp_path / "run" / "journal.sqlite").exists()


# ----- dspy_lm -------------------------------------------------------------------------------


def test_dspy_lm_maps_gepetto_model_strings() -> None:
    assert dspy_lm("openai/gpt-4.1-mini", temperature=0).model == "openai/gpt-4.1-mini"
    assert dspy_lm("together/meta/llama").model == "together_ai/meta/llama"
    assert dspy_lm("vllm/my-model").model == "hosted_vllm/my-model"
    assert dspy_lm("fireworks_ai/x").model == "fireworks_ai/x"
    with pytest.raises(ConfigError, match="unknown model string"):
        dspy_lm("nope/x")
    with pytest.raises(ConfigError, match="served by gepetto's own llama-server"):
        dspy_lm("local/qwen2.5-coder-0.5b", api_base="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="server_options only applies"):
        dspy_lm("openai/x", server_options={})


def test_dspy_lm_never_records_the_key() -> None:
    lm = dspy_lm("openai/gpt-4.1-mini", api_key="sk-secret-123")
    assert "sk-secret-123" not in json.dumps(lm.dump_state())
    assert "sk-secret-123" not in repr(lm)


# ----- the full-program adapter --------------------------------------------------------------

SEED_SOURCE = f'''import dspy

program = dspy.Predict(dspy.Signature("text -> label", "{CLASSIFY_SEED}"))
'''
FIXED_SOURCE = SEED_SOURCE.replace(CLASSIFY_SEED, FIXED_CLASSIFY)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import dspy\nprogram = dspy.Predict(", "does not compile: SyntaxError"),
        ("raise RuntimeError('boom')", "RuntimeError: boom"),
        ("x = 1", "defines no `program`"),
        ("import dspy\nprogram = dspy.Module", "not a dspy.Module"),
    ],
)
def test_bad_source_scores_zero_with_the_error_as_feedback(source: str, problem: str) -> None:
    adapter = DspyFullProgramAdapter(plain_metric, lm=RuleFollowingLM())
    result = adapter.evaluate(TRAIN[:2], {"program": source}, capture_traces=True)
    assert result.scores == [0.0, 0.0] and result.outputs == [{}, {}]
    dataset = adapter.make_reflective_dataset({"program": source}, result, ["program"])
    assert len(dataset["program"]) == 2 and problem in dataset["program"][0]["Feedback"]
    with pytest.raises(ConfigError, match="cannot be built"):
        adapter.build_program({"program": source})


def test_full_program_adapter_runs_and_reflects() -> None:
    adapter = DspyFullProgramAdapter(feedback_metric, lm=RuleFollowingLM())
    result = adapter.evaluate(TRAIN[:2], {"program": SEED_SOURCE}, capture_traces=True)
    assert result.scores == [0.0, 0.0]
    record = adapter.make_reflective_dataset({"program": SEED_SOURCE}, result, ["program"])[
        "program"
    ][0]
    assert record["Program Inputs"] == {"text": "a good day"}
    assert record["Program Trace"][0]["Called Module"] == "self"
    assert record["Feedback"] == "Expected 'positive'."
    assert adapter.evaluate(TRAIN, {"program": FIXED_SOURCE}).scores == [1.0] * 4


def test_full_program_adapter_keeps_the_contract() -> None:
    check_adapter_contract(
        lambda: DspyFullProgramAdapter(plain_metric, lm=RuleFollowingLM()),
        candidate={"program": SEED_SOURCE},
        examples=TRAIN,
        failing_example=sentiment_examples(["crash now"])[0],
        failure_text="AdapterParseError",
    )


def test_full_program_optimization() -> None:
    reflection = ScriptedLM([f"```python\n{FIXED_SOURCE}```"], repeat_last=True)
    adapter = DspyFullProgramAdapter(plain_metric, lm=RuleFollowingLM())
    result = gepetto.optimize(
        {"program": SEED_SOURCE},
        TRAIN,
        VAL,
        adapter=adapter,
        reflection_lm=reflection,
        reflection_prompt_template=FULL_PROGRAM_REFLECTION_TEMPLATE,
        max_metric_calls=20,
        display_progress_bar=False,
    )
    assert result.best_score == 1.0
    assert result.best_candidate["program"].strip() == FIXED_SOURCE.strip()
    assert "assigns the final dspy.Module" in reflection.prompts[0]
    with dspy.context(lm=RuleFollowingLM()):
        assert adapter.build_program(result.best_candidate)(text="good").label == "positive"


# ----- the optional extra --------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_gepetto_never_imports_dspy_or_litellm() -> None:
    done = _python(
        "import sys, gepetto, gepetto.adapters, gepetto.api\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dspy', 'litellm', 'gepa')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_dspy_the_error_names_the_extra() -> None:
    done = _python(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'dspy':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "try:\n"
        "    import gepetto.adapters.dspy\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'gepetto[dspy]'" in done.stdout

"""gepetto.optimize_anything: gepa 0.1.4's primary API, run on gepetto's engine.

The evaluators are real (they run code, count words); only the reflection model is
scripted, and the tests read the prompts it received.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

import gepetto
import gepetto.optimize_anything as oa
from gepetto import (
    AdapterContractError,
    ConfigError,
    EngineConfig,
    GEPAConfig,
    ReflectionConfig,
)
from gepetto.adapters.anything import AnythingAdapter
from gepetto.optimize_anything import OptimizationState, optimize_anything
from gepetto.testing import ScriptedLM

ABS_CASES = [(-3, 3), (0, 0), (5, 5), (-1, 1)]
BAD_ABS = "def f(x):\n    return x"
GOOD_ABS = "def f(x):\n    return -x if x < 0 else x"


def run_function(code: str, cases: list[tuple[int, int]]) -> tuple[float, dict[str, Any]]:
    """Score a function ``f`` on cases, in-process, on plain data."""
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    failures = [
        f"f({x}) returned {namespace['f'](x)!r}, expected {y!r}"
        for x, y in cases
        if namespace["f"](x) != y
    ]
    score = 1 - len(failures) / len(cases)
    return score, {"failures": failures or "none"}


def fenced(text: str) -> str:
    return f"```python\n{text}\n```"


def config(lm: Any, budget: int | None = 8, **engine: Any) -> GEPAConfig:
    return GEPAConfig(
        engine=EngineConfig(max_metric_calls=budget, **engine),
        reflection=ReflectionConfig(reflection_lm=lm),
    )


class Counting:
    """An evaluator wrapper that counts its calls (thread-safe)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls, self._lock = fn, 0, threading.Lock()
        self.seen: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, candidate: Any, **kwargs: Any) -> Any:
        # Declaring **kwargs asks for every keyword offered: opt_state too; the wrapped
        # evaluators do not take it.
        assert isinstance(kwargs.pop("opt_state"), OptimizationState)
        with self._lock:
            self.calls += 1
            self.seen.append((candidate, kwargs))
        return self.fn(candidate, **kwargs)


# ----- the module and its names ---------------------------------------------------------------


def test_the_module_is_callable_and_holds_the_function() -> None:
    assert gepetto.optimize_anything is oa
    assert callable(gepetto.optimize_anything)
    assert oa.optimize_anything is optimize_anything
    assert gepetto.log is oa.log and gepetto.SideInfo is oa.SideInfo
    evaluate = Counting(lambda text: float("!" in text))
    result = gepetto.optimize_anything(  # the module, called like the function
        "hi", evaluator=evaluate, config=config(ScriptedLM([fenced("hi!")]), budget=4)
    )
    assert result.best_candidate == "hi!"


# ----- modes ----------------------------------------------------------------------------------


def test_single_task_str_seed_improves_code_within_an_exact_budget() -> None:
    evaluate = Counting(lambda code: run_function(code, ABS_CASES))
    lm = ScriptedLM([fenced(GOOD_ABS)], repeat_last=True)
    result = optimize_anything(
        BAD_ABS,
        evaluator=evaluate,
        objective="f(x) must return the absolute value of x.",
        config=config(lm, budget=7),
    )
    assert isinstance(result.best_candidate, str)
    assert result.best_candidate == GOOD_ABS
    assert result.candidates[0] == {"current_candidate": BAD_ABS}
    assert result.best_score == 1.0 and result.seed_score == 0.5
    # The evaluator got the plain string, positionally, and no example.
    assert all(isinstance(c, str) and kw == {} for c, kw in evaluate.seen)
    # Every evaluator call is one metric call, and the budget is never exceeded.
    assert evaluate.calls == result.total_metric_calls <= 7
    prompt = lm.prompts[0]
    assert BAD_ABS in prompt and "f(-3) returned -3, expected 3" in prompt
    assert "Goal: f(x) must return the absolute value of x." in prompt


def test_a_reply_repeating_the_code_is_asked_again_in_words_for_code() -> None:
    """The retry note of optimize_anything speaks of the current version and sets no word
    limit (a prompt's note asks for instructions under N words: wrong for code)."""
    evaluate = Counting(lambda code: run_function(code, ABS_CASES))
    lm = ScriptedLM([fenced(BAD_ABS), fenced(GOOD_ABS)], repeat_last=True)
    result = optimize_anything(BAD_ABS, evaluator=evaluate, config=config(lm, budget=4))
    assert result.best_candidate == GOOD_ABS
    retry = lm.prompts[1].split("IMPORTANT:")[1]
    assert "repeated the current version unchanged" in retry
    assert "words" not in retry and "instructions" not in retry


def test_single_task_defaults_follow_gepa() -> None:
    evaluate = Counting(lambda text: float(len(text)) / 10)
    lm = ScriptedLM([fenced("longer text")], repeat_last=True)
    result = optimize_anything("short", evaluator=evaluate, config=config(lm, budget=4))
    # A score above 1.0 is not "perfect": no warning, no skipping; minibatch of 1.
    assert result.best_candidate == "longer text" and result.best_score == pytest.approx(1.1)
    assert result.num_val_instances == 1


def test_multi_task_dict_seed_with_objective_scores() -> None:
    dataset = [{"word": w} for w in ("alpha", "beta", "gamma")]

    def evaluate(candidate: dict[str, str], example: dict[str, str]) -> Any:
        hit = example["word"] in candidate["prompt"]
        brevity = 1.0 / (1 + len(candidate["prompt"].split()))
        return float(hit), {
            "scores": {"hit": float(hit), "brevity": brevity},
            "feedback": "ok" if hit else f"mention {example['word']}",
        }

    counting = Counting(evaluate)
    lm = ScriptedLM([fenced("say alpha beta gamma")], repeat_last=True)
    result = optimize_anything(
        {"prompt": "say alpha"}, evaluator=counting, dataset=dataset, config=config(lm, 20)
    )
    assert result.best_candidate == {"prompt": "say alpha beta gamma"}
    assert {kw["example"]["word"] for _, kw in counting.seen} == {"alpha", "beta", "gamma"}
    assert all(isinstance(c, dict) for c, _ in counting.seen)
    assert result.objective_scores is not None
    assert set(result.objective_scores[0]) == {"hit", "brevity"}
    assert "Scores (higher is better)" in lm.prompts[0] and "mention" in lm.prompts[0]
    assert counting.calls == result.total_metric_calls <= 20


def test_generalization_reflects_on_the_dataset_and_selects_on_the_valset() -> None:
    train = [{"word": w} for w in ("alpha", "beta")]
    val = [{"word": w} for w in ("alpha", "beta", "delta")]
    counting = Counting(lambda c, example: float(example["word"] in c["prompt"]))
    lm = ScriptedLM([fenced("alpha beta delta")], repeat_last=True)
    result = optimize_anything(
        {"prompt": "alpha"},
        evaluator=counting,
        dataset=train,
        valset=val,
        config=config(lm, 15),
    )
    assert result.num_val_instances == 3
    assert result.best_candidate == {"prompt": "alpha beta delta"}
    assert "delta" not in lm.prompts[0]  # reflection sees only training examples
    assert counting.calls == result.total_metric_calls <= 15


def test_seedless_the_reflection_model_writes_the_first_candidate() -> None:
    evaluate = Counting(lambda code: run_function(code, ABS_CASES))
    lm = ScriptedLM([fenced(BAD_ABS), fenced(GOOD_ABS)], repeat_last=True)
    result = optimize_anything(
        None,
        evaluator=evaluate,
        objective="Write f(x), the absolute value of x.",
        background="Plain Python, no imports.",
        config=config(lm, budget=5),
    )
    assert result.candidates[0] == {"current_candidate": BAD_ABS}
    assert result.best_candidate == GOOD_ABS
    assert "Write f(x), the absolute value of x." in lm.prompts[0]
    assert "Plain Python, no imports." in lm.prompts[0]
    assert result.num_reflection_calls == lm.calls  # the seed's call counts
    assert evaluate.calls == result.total_metric_calls <= 5


def test_seedless_with_a_dataset_shows_sample_inputs() -> None:
    lm = ScriptedLM([fenced("hello"), fenced("hello world")], repeat_last=True)
    optimize_anything(
        evaluator=lambda c, example: float(example in c),
        dataset=["hello", "world"],
        objective="Mention every word.",
        config=config(lm, budget=4),
    )
    assert "- Example 1: hello" in lm.prompts[0]


# ----- side information -----------------------------------------------------------------------


def test_log_and_captured_stdio_reach_the_reflection_prompt() -> None:
    encodings: list[object] = []

    def evaluate(text: str) -> float:
        encodings.append(sys.stdout.encoding)
        oa.log("logged hint:", text.upper())
        print("printed line")
        print("warned line", file=sys.stderr)
        return 0.0

    lm = ScriptedLM([fenced("next")], repeat_last=True)
    real_stdout = sys.stdout
    optimize_anything(
        "seed text",
        evaluator=evaluate,
        config=config(lm, budget=3, capture_stdio=True),
    )
    assert sys.stdout is real_stdout
    assert all(isinstance(e, str) for e in encodings)
    prompt = lm.prompts[0]
    assert "logged hint: SEED TEXT" in prompt
    assert "printed line" in prompt and "warned line" in prompt


def test_log_from_a_thread_the_evaluator_starts_and_without_capture() -> None:
    def evaluate(text: str) -> float:
        context = oa.get_log_context()

        def work() -> None:
            oa.set_log_context(context)
            oa.log("from a thread")

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        print("not captured")
        return 0.0

    lm = ScriptedLM([fenced("next")], repeat_last=True)
    optimize_anything("seed", evaluator=evaluate, config=config(lm, budget=3))
    assert "from a thread" in lm.prompts[0] and "not captured" not in lm.prompts[0]


def test_log_outside_an_evaluator_warns() -> None:
    with pytest.warns(UserWarning, match="outside of an evaluator"):
        oa.log("nobody listens")
    with pytest.raises(RuntimeError):
        oa.get_log_context()


def test_concurrent_evaluations_keep_their_logs_apart() -> None:
    async def evaluate(text: str, example: int) -> float:
        oa.log(f"start {example}")
        await asyncio.sleep(0.01 * (4 - example))
        oa.log(f"end {example}")
        return 1.0

    def sync_evaluate(text: str, example: int) -> float:
        oa.log(f"start {example}")
        threading.Event().wait(0.01 * (4 - example))
        oa.log(f"end {example}")
        return 1.0

    async def run(fn: Any) -> list[Any]:
        adapter = AnythingAdapter(fn, None, str_mode=True, with_examples=True)
        batches = await asyncio.gather(
            *(adapter.evaluate([n], {"current_candidate": "c"}) for n in range(4))
        )
        return [b.outputs[0]["log"] for b in batches]

    expected = [f"start {n}\nend {n}\n" for n in range(4)]
    assert asyncio.run(run(evaluate)) == expected
    assert asyncio.run(run(sync_evaluate)) == expected


def test_side_info_specific_to_a_component_and_opt_state() -> None:
    states: list[OptimizationState] = []

    def evaluate(candidate: dict[str, str], opt_state: OptimizationState) -> Any:
        states.append(opt_state)
        return 0.5, {
            "common": "seen by both",
            "a_specific_info": {"note": "only for a", "scores": {"len": 1.0}},
            "b_specific_info": {"note": "only for b"},
        }

    lm = ScriptedLM([fenced("new a"), fenced("new b")], repeat_last=True)
    result = optimize_anything({"a": "A", "b": "B"}, evaluator=evaluate, config=config(lm, 5))
    assert states[0].best_example_evals == []
    assert states[-1].best_example_evals[0]["score"] == 0.5
    first = lm.prompts[0]
    assert "only for a" in first and "only for b" not in first and "seen by both" in first
    assert result.objective_scores is not None and "a::len" in result.objective_scores[0]


# ----- evaluators: async, batch, failures ------------------------------------------------------


def test_async_evaluator_with_parallel_proposals() -> None:
    async def evaluate(text: str) -> float:
        await asyncio.sleep(0)
        return float(text.count("!"))

    lm = ScriptedLM(lambda prompt: fenced(prompt.split("```\n")[1].split("\n```")[0] + "!"))
    result = optimize_anything(
        "go",
        evaluator=evaluate,
        config=config(lm, budget=12, parallel_proposals=2),
    )
    assert result.total_metric_calls <= 12 and result.best_score is not None
    assert result.best_score >= 1.0


def test_batch_evaluator_gets_pairs_once_per_batch() -> None:
    calls: list[list[tuple[Any, Any]]] = []

    def batch(pairs: list[tuple[str, Any]]) -> list[Any]:
        calls.append(pairs)
        return [(float(ex in text), {"word": ex}) for text, ex in pairs]

    lm = ScriptedLM([fenced("a b c")], repeat_last=True)
    result = optimize_anything(
        "a", batch_evaluator=batch, dataset=["a", "b", "c"], config=config(lm, 12)
    )
    assert result.best_candidate == "a b c"
    assert len(calls[0]) == 3 and calls[0][0] == ("a", "a")  # the seed's validation, at once
    assert sum(len(c) for c in calls) == result.total_metric_calls <= 12


def test_batch_evaluator_with_the_wrong_number_of_results_is_a_contract_error() -> None:
    lm = ScriptedLM([fenced("x")], repeat_last=True)
    with pytest.raises(AdapterContractError, match="2 results for 3 pairs"):
        optimize_anything(
            "a", batch_evaluator=lambda pairs: [1.0, 1.0], dataset=[1, 2, 3], config=config(lm)
        )


def test_an_evaluator_that_raises_scores_zero_with_the_error_in_side_info() -> None:
    def evaluate(text: str, example: int) -> float:
        if example == 2:
            raise ValueError("cannot handle 2")
        return 0.5

    lm = ScriptedLM([fenced("x")], repeat_last=True)
    result = optimize_anything(
        "a",
        evaluator=evaluate,
        dataset=[1, 2, 3],
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=9, seed=1),
            reflection=ReflectionConfig(reflection_lm=lm, reflection_minibatch_size=3),
        ),
    )
    assert result.val_subscores[0] == {0: 0.5, 1: 0.0, 2: 0.5}
    assert "ValueError: cannot handle 2" in lm.prompts[0]


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ((1.0, {}, "extra"), "tuple of 3 values"),
        ("0.5", "score '0.5'"),
        (True, "score True"),
        ((1.0, ["not", "a", "dict"]), "side_info of type list"),
        (float("nan"), "score nan"),
    ],
)
def test_an_evaluator_breaking_the_contract_stops_with_a_clear_error(
    returned: object, message: str
) -> None:
    with pytest.raises(AdapterContractError, match=message):
        optimize_anything(
            "a", evaluator=lambda text: returned, config=config(ScriptedLM(["```\nb\n```"]))
        )


# ----- bad input: a ConfigError before any call ------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed_candidate": None}, "'objective' is required"),
        ({"seed_candidate": None, "objective": "  "}, "'objective' is required"),
        ({"seed_candidate": 3}, "seed_candidate must be"),
        ({"seed_candidate": {}}, "seed_candidate must be a non-empty dict"),
        ({"evaluator": None}, "pass evaluator="),
        ({"evaluator": "not callable"}, "evaluator must be callable"),
        ({"objective": 3}, "objective must be a str"),
        ({"config": {"engine": {}}}, "config must be a gepetto.GEPAConfig"),
        ({"config": GEPAConfig(engine=EngineConfig(max_metric_calls=5))}, "reflection_lm"),
        ({"dataset": []}, "dataset|trainset"),
        (
            {
                "objective": "x",
                "config": GEPAConfig(
                    engine=EngineConfig(max_metric_calls=5),
                    reflection=ReflectionConfig(
                        reflection_lm=ScriptedLM([]),
                        reflection_prompt_template="<curr_param> <side_info>",
                    ),
                ),
            },
            "cannot be combined",
        ),
        ({"config": config(ScriptedLM([]), budget=None)}, "max_metric_calls|stop"),
    ],
)
def test_bad_input_is_refused_before_any_call(kwargs: dict[str, Any], message: str) -> None:
    evaluate = Counting(lambda *a, **k: 1.0)
    arguments: dict[str, Any] = {
        "seed_candidate": "seed",
        "evaluator": evaluate,
        "config": config(ScriptedLM([])),
        **kwargs,
    }
    with pytest.raises(ConfigError, match=message):
        optimize_anything(**arguments)
    assert evaluate.calls == 0


@pytest.mark.parametrize(
    ("dataset", "budget", "message"),
    [([], 4, "dataset|trainset"), (None, None, "stop condition"), ("abc", 4, "dataset|trainset")],
)
def test_seedless_bad_input_is_refused_before_the_seed_is_written(
    dataset: Any, budget: int | None, message: str
) -> None:
    lm = ScriptedLM([fenced("seed")])
    with pytest.raises(ConfigError, match=message):
        optimize_anything(
            None,
            evaluator=lambda t, example=None: 1.0,
            dataset=dataset,
            objective="x",
            config=config(lm, budget=budget),
        )
    assert lm.calls == 0


def test_capture_stdio_is_a_checked_engine_setting_not_an_optimize_keyword() -> None:
    with pytest.raises(ConfigError, match="capture_stdio"):
        EngineConfig(capture_stdio="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown option"):
        GEPAConfig.from_options(capture_stdio=True)


# ----- resume ---------------------------------------------------------------------------------


def test_resume_from_run_dir_pays_nothing_twice(tmp_path: Any) -> None:
    run_dir = str(tmp_path / "run")
    evaluate = Counting(lambda text: float(text.count("!")))
    lm = ScriptedLM(lambda prompt: fenced(prompt.split("```\n")[1].split("\n```")[0] + "!"))
    first = optimize_anything("go", evaluator=evaluate, config=config(lm, 4, run_dir=run_dir))
    paid = evaluate.calls
    assert paid == first.total_metric_calls <= 4
    second = optimize_anything("go", evaluator=evaluate, config=config(lm, 10, run_dir=run_dir))
    assert evaluate.calls == second.total_metric_calls <= 10
    assert second.num_candidates >= first.num_candidates
    assert second.candidates[: first.num_candidates] == first.candidates


def test_seedless_resume_reuses_the_written_seed(tmp_path: Any) -> None:
    run_dir = str(tmp_path / "run")
    replies = [fenced("first"), fenced("first!")]
    lm = ScriptedLM(replies, repeat_last=True)
    settings = config(lm, 3, run_dir=run_dir)
    first = optimize_anything(
        None, evaluator=lambda t: float(len(t)), objective="long", config=settings
    )
    other = ScriptedLM([fenced("a different seed")], repeat_last=True)
    second = optimize_anything(
        None,
        evaluator=lambda t: float(len(t)),
        objective="long",
        config=config(other, 5, run_dir=run_dir),
    )
    assert second.candidates[0] == first.candidates[0] == {"current_candidate": "first"}
    assert all("Write the first version" not in p for p in other.prompts)


# ----- gepa's docstring examples, with our own artifacts --------------------------------------


def test_the_docstring_examples_of_gepa_run_with_a_scripted_reflection_model() -> None:
    # Single-task search: code scored by running it, notes through oa.log.
    def evaluate(candidate: str) -> float:
        score, info = run_function(candidate, ABS_CASES)
        oa.log(f"Score: {score}, failures: {info['failures']}")
        return score

    single = optimize_anything(
        seed_candidate=BAD_ABS,
        evaluator=evaluate,
        objective="Return the absolute value.",
        config=config(ScriptedLM([fenced(GOOD_ABS)], repeat_last=True), budget=6),
    )
    assert single.best_candidate == GOOD_ABS

    # Multi-task search: one prompt for a batch of related problems.
    problems = [{"word": w} for w in ("red", "green", "blue")]

    def mentions(candidate: dict[str, str], example: dict[str, str]) -> tuple[float, Any]:
        hit = example["word"] in candidate["prompt"]
        return float(hit), {"missing": None if hit else example["word"]}

    lm = ScriptedLM([fenced("Name red, green and blue.")], repeat_last=True)
    multi = optimize_anything(
        seed_candidate={"prompt": "Name red."},
        evaluator=mentions,
        dataset=problems,
        objective="Prompts that name every colour.",
        config=config(lm, budget=15),
    )
    assert multi.best_candidate == {"prompt": "Name red, green and blue."}

    # Generalization: train on some problems, must generalize to others.
    general = optimize_anything(
        seed_candidate={"prompt": "Name red."},
        evaluator=mentions,
        dataset=problems[:2],
        valset=problems,
        objective="Prompts that name every colour.",
        config=config(ScriptedLM([fenced("Name red, green, blue.")], repeat_last=True), 12),
    )
    assert general.best_score == 1.0

    # Seedless: the model writes the first draft from the objective and background.
    seedless = optimize_anything(
        seed_candidate=None,
        evaluator=mentions_str,
        dataset=problems,
        objective="Write a sentence naming colours.",
        background="Primary colours of light.",
        config=config(ScriptedLM([fenced("red"), fenced("red green blue")], repeat_last=True), 12),
    )
    assert seedless.best_candidate == "red green blue"


def mentions_str(candidate: str, example: dict[str, str]) -> float:
    return float(example["word"] in candidate)


def test_async_form_and_the_result_renders() -> None:
    lm = ScriptedLM([fenced("b!")], repeat_last=True)

    async def main() -> Any:
        return await oa.aoptimize_anything(
            "b", evaluator=lambda text: float("!" in text), config=config(lm, budget=4)
        )

    result = asyncio.run(main())
    assert isinstance(result, gepetto.AnythingResult) and isinstance(result, gepetto.Result)
    assert result.best_candidate == "b!"
    assert result.to_dict()["candidates"][result.best_idx] == {"current_candidate": "b!"}
    assert "best" in repr(result).lower()


def test_gepa_engine_names_parallel_max_workers_and_best_example_evals_k() -> None:
    seen: list[int] = []

    def evaluate(text: str, example: int, opt_state: OptimizationState) -> float:
        seen.append(len(opt_state.best_example_evals))
        return float(len(text))

    lm = ScriptedLM(lambda prompt: fenced(prompt.split("```\n")[1].split("\n```")[0] + "!"))
    settings = GEPAConfig(
        engine=EngineConfig(max_metric_calls=12, parallel=False, best_example_evals_k=1),
        reflection=ReflectionConfig(reflection_lm=lm),
    )
    result = optimize_anything("go", evaluator=evaluate, dataset=[1, 2], config=settings)
    assert max(seen) == 1 and result.total_metric_calls <= 12
    with pytest.raises(ConfigError, match="max_workers"):
        EngineConfig(max_workers=0)


def test_observers_get_the_run_events() -> None:
    seen: list[str] = []

    class Names:
        def __getattr__(self, name: str) -> Any:
            if name.startswith("on_"):
                return lambda event: seen.append(event.name)
            raise AttributeError(name)

    lm = ScriptedLM([fenced("b!")], repeat_last=True)
    optimize_anything(
        "b",
        evaluator=lambda text: float("!" in text),
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=4),
            reflection=ReflectionConfig(reflection_lm=lm),
            callbacks=[Names()],
        ),
    )
    assert seen[0] == "run_started" and seen[-1] == "run_finished"
    assert "new_best_candidate" in seen


def test_gepa_stoppers_and_callbacks_work_in_config() -> None:
    seen: list[str] = []

    class GepaCallback:
        def on_iteration_start(self, event: dict[str, Any]) -> None:
            seen.append("iteration_start")

    lm = ScriptedLM(lambda prompt: fenced(prompt.split("```\n")[1].split("\n```")[0] + "!"))
    result = optimize_anything(
        "go",
        evaluator=lambda text: float(text.count("!")),
        config=GEPAConfig(
            reflection=ReflectionConfig(reflection_lm=lm),
            stop_callbacks=[gepetto.MaxMetricCallsStopper(5)],
            callbacks=[GepaCallback()],
        ),
    )
    assert result.total_metric_calls <= 6 and "MaxMetricCallsStopper" in (result.stop_reason or "")
    assert "iteration_start" in seen

"""optimize_anything's refiner: gepa 0.1.4's semantics with a scripted refiner model.

Ported from gepa's tests/test_refiner.py (which calls a hosted model): the refiner prompt
joins the seed, refining goes on while the score strictly improves, the score is the best
attempt's, unusable replies are recorded as attempts, and each refined evaluation is a
metric call inside the run's budget.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from gepetto import ConfigError, EngineConfig, GEPAConfig, ReflectionConfig
from gepetto.adapters.anything import AnythingAdapter
from gepetto.adapters.refiner import REFINER_COMPONENT, Refiner, default_refiner_prompt
from gepetto.optimize_anything import RefinerConfig, optimize_anything


class ScriptedRefiner:
    """A plain-callable refiner model: replies in order, prompts kept."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.replies[min(len(self.prompts), len(self.replies)) - 1]


def refine(refiner: Refiner, candidate: dict[str, str], scorer: Any) -> Any:
    async def evaluate(refined: dict[str, str]) -> tuple[float, dict[str, Any]]:
        return scorer(refined)

    score, info = scorer(candidate)
    return asyncio.run(refiner.refine(candidate, score, info, evaluate))


def by_length(candidate: dict[str, str]) -> tuple[float, dict[str, Any]]:
    return float(len(candidate["text"])), {"scores": {"length": len(candidate["text"])}}


def async_lm(lm: ScriptedRefiner) -> Any:
    async def call(prompt: str) -> str:
        return lm(prompt)

    return call


SEED = {"text": "a", REFINER_COMPONENT: "Make it longer."}


def test_refining_continues_while_the_score_strictly_improves() -> None:
    lm = ScriptedRefiner('{"text": "aa"}', '{"text": "aaa"}', '{"text": "b"}', '{"text": "x"}')
    outcome = refine(Refiner(async_lm(lm), max_refinements=5), dict(SEED), by_length)
    assert outcome.score == 3.0
    assert outcome.candidate == {"text": "aaa", REFINER_COMPONENT: "Make it longer."}
    assert outcome.calls == 3  # "aa", "aaa", then "b" did not improve: stop
    attempts = outcome.side_info["refiner_prompt_specific_info"]["Attempts"]
    assert [a["score"] for a in attempts] == [1.0, 2.0, 3.0, 1.0]
    # the original evaluation's side information, with the best attempt's scores
    assert outcome.side_info["scores"] == {"length": 1}
    assert outcome.side_info["refiner_prompt_specific_info"]["scores"] == {"length": 3}
    # the model sees the instructions, the current candidate and the history
    assert "Make it longer." in lm.prompts[1]
    assert json.dumps({"text": "aa"}, indent=2) in lm.prompts[1]
    assert '"score": 2.0' in lm.prompts[1]
    assert REFINER_COMPONENT not in lm.prompts[0].split("```json")[1].split("```")[0]


def test_at_most_max_refinements_and_fenced_replies() -> None:
    lm = ScriptedRefiner('```json\n{"text": "aa"}\n```', '{"text": "aaa"}')
    outcome = refine(Refiner(async_lm(lm), max_refinements=1), dict(SEED), by_length)
    assert (outcome.score, outcome.calls, len(lm.prompts)) == (2.0, 1, 1)


def test_unusable_replies_are_recorded_attempts_and_cost_no_metric_call() -> None:
    lm = ScriptedRefiner("no json here", '["a list"]', '{"other": "x"}', '{"text": "aa"}')
    outcome = refine(Refiner(async_lm(lm), max_refinements=4), dict(SEED), by_length)
    attempts = outcome.side_info["refiner_prompt_specific_info"]["Attempts"]
    assert [a.get("error", "")[:16] for a in attempts[1:4]] == [
        "JSON parse error",
        "JSON parse error",
        "unknown componen",
    ]
    assert attempts[1]["raw_output"] == "no json here" and attempts[1]["score"] == -1e9
    assert (outcome.score, outcome.calls) == (2.0, 1)
    # no "scores" in the original side information: none for the refiner either
    assert (
        "scores"
        not in refine(Refiner(async_lm(lm)), dict(SEED), lambda c: (0.0, {})).side_info[
            "refiner_prompt_specific_info"
        ]
    )


def test_a_failing_refiner_model_ends_refining_with_the_original() -> None:
    async def broken(prompt: str) -> str:
        raise RuntimeError("model down")

    outcome = refine(Refiner(broken, max_refinements=3), dict(SEED), by_length)
    assert (outcome.score, outcome.calls, outcome.candidate) == (1.0, 0, SEED)
    attempts = outcome.side_info["refiner_prompt_specific_info"]["Attempts"]
    assert attempts[-1]["error"] == "RuntimeError: model down"


def counting_evaluator() -> tuple[list[str], Any]:
    seen: list[str] = []

    def evaluator(candidate: str) -> tuple[float, dict[str, Any]]:
        seen.append(candidate)
        return float(len(candidate)), {"feedback": f"{len(candidate)} characters"}

    return seen, evaluator


def config(max_metric_calls: int, refiner: RefinerConfig | None, reflection: Any) -> GEPAConfig:
    return GEPAConfig(
        engine=EngineConfig(max_metric_calls=max_metric_calls),
        reflection=ReflectionConfig(reflection_lm=reflection),
        refiner=refiner,
    )


def growing_refiner() -> ScriptedRefiner:
    return ScriptedRefiner(*(json.dumps({"current_candidate": "x" * n}) for n in range(2, 60)))


@pytest.mark.parametrize("budget", [1, 2, 5, 9])
def test_refinements_are_metric_calls_inside_the_budget(budget: int) -> None:
    seen, evaluator = counting_evaluator()
    refiner_lm = growing_refiner()
    result = optimize_anything(
        "x",
        evaluator=evaluator,
        config=config(
            budget,
            RefinerConfig(refiner_lm=refiner_lm, max_refinements=50),
            lambda prompt: "```\nxy\n```",
        ),
    )
    assert len(seen) == result.total_metric_calls == budget  # every call counted, none over
    assert result.val_aggregate_scores[0] == float(budget)  # the best refined score counts


def test_the_seed_gets_a_refiner_prompt_that_evolves() -> None:
    seen, evaluator = counting_evaluator()
    reflection_prompts: list[str] = []

    def reflection_lm(prompt: str) -> str:
        reflection_prompts.append(prompt)
        return "```\nBe bold.\n```"

    result = optimize_anything(
        "x",
        evaluator=evaluator,
        objective="Write a long text.",
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=12),
            reflection=ReflectionConfig(reflection_lm=reflection_lm, module_selector="all"),
            refiner=RefinerConfig(refiner_lm=ScriptedRefiner("nope"), max_refinements=1),
        ),
    )
    seed = result.candidates[0]
    assert seed[REFINER_COMPONENT] == default_refiner_prompt("Write a long text.", None)
    assert "Write a long text." in seed[REFINER_COMPONENT]
    assert isinstance(result.best_candidate, str)
    assert any(c[REFINER_COMPONENT] == "Be bold." for c in result.candidates[1:])
    # the refiner's attempts are shown when the refiner prompt is reflected on
    assert any("Attempts" in prompt for prompt in reflection_prompts)
    assert all(c in {"x", "Be bold."} for c in seen)


def test_a_seed_with_its_own_refiner_prompt_keeps_it() -> None:
    result = optimize_anything(
        {"text": "a", REFINER_COMPONENT: "mine"},
        evaluator=lambda c: 0.5,
        config=config(
            2, RefinerConfig(refiner_lm=ScriptedRefiner("nope")), lambda p: "```\nb\n```"
        ),
    )
    assert result.candidates[0][REFINER_COMPONENT] == "mine"


def test_the_refiner_defaults_to_the_reflection_model() -> None:
    prompts: list[str] = []

    def model(prompt: str) -> str:
        prompts.append(prompt)
        return '{"current_candidate": "xx"}' if "Refine a candidate" in prompt else "```\ny\n```"

    seen, evaluator = counting_evaluator()
    optimize_anything("x", evaluator=evaluator, config=config(2, RefinerConfig(), model))
    assert seen == ["x", "xx"]
    assert "Refine a candidate" in prompts[0]


def test_batch_evaluator_only_refines_with_one_pair_batches() -> None:
    sizes: list[int] = []

    def batch_evaluator(pairs: list[tuple[str, Any]]) -> list[float]:
        sizes.append(len(pairs))
        return [float(len(candidate)) for candidate, _ in pairs]

    optimize_anything(
        "x",
        batch_evaluator=batch_evaluator,
        dataset=[1, 2, 3],
        config=config(
            8,
            RefinerConfig(refiner_lm=growing_refiner()),
            lambda prompt: "```\nxy\n```",
        ),
    )
    assert sizes and set(sizes) == {1}


def test_refiner_config_checks_itself() -> None:
    with pytest.raises(ConfigError, match="max_refinements"):
        RefinerConfig(max_refinements=0)
    with pytest.raises(ConfigError, match="refiner_lm"):
        RefinerConfig(refiner_lm=3)
    assert GEPAConfig(refiner={"max_refinements": 2}).refiner == RefinerConfig(max_refinements=2)
    with pytest.raises(ConfigError, match="the refiner needs a model"):
        optimize_anything(
            "x",
            evaluator=lambda c: 1.0,
            config=GEPAConfig(
                engine=EngineConfig(max_metric_calls=2),
                reflection=ReflectionConfig(custom_candidate_proposer=lambda *a: {}),
                refiner=RefinerConfig(),
            ),
        )


def test_the_fingerprint_holds_max_refinements() -> None:
    def adapter(refiner: Refiner | None) -> AnythingAdapter:
        return AnythingAdapter(
            lambda c: 1.0, None, str_mode=True, with_examples=False, refiner=refiner
        )

    plain = adapter(None).fingerprint()
    assert "refiner" not in plain
    assert (
        adapter(Refiner(async_lm(ScriptedRefiner("")), 2)).fingerprint()
        != adapter(Refiner(async_lm(ScriptedRefiner("")), 3)).fingerprint()
    )


@pytest.mark.parametrize("budget", [4, 7, 13])
def test_concurrent_refining_stays_inside_the_budget(budget: int) -> None:
    """Four examples evaluated at once, each refining while it improves: the calls the
    refiners ask for come out of one budget."""
    seen: list[str] = []
    lock = threading.Lock()

    async def evaluator(candidate: str, example: int) -> float:
        with lock:
            seen.append(candidate)
        await asyncio.sleep(0)
        return float(len(candidate) + example)

    result = optimize_anything(
        "x",
        evaluator=evaluator,
        dataset=[0, 1, 2, 3],
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=budget, max_concurrency=4),
            reflection=ReflectionConfig(reflection_lm=lambda prompt: "```\nxy\n```"),
            refiner=RefinerConfig(refiner_lm=growing_refiner(), max_refinements=20),
        ),
    )
    assert len(seen) == result.total_metric_calls == budget


GOLDEN = 42


def guess_fitness(candidate: dict[str, str], example: int = 0) -> tuple[float, dict[str, Any]]:
    """gepa's test_refiner fitness: a negative distance, with an accuracy objective."""
    off_by = abs(int(candidate["number"]) - GOLDEN - example)
    return -off_by, {"off_by": off_by, "scores": {"accuracy": max(0.0, 1 - off_by / 100)}}


def test_when_every_refinement_fails_the_scores_are_the_originals() -> None:
    """Ported from gepa's test_refiner_fallback_scores_when_all_refinements_fail."""
    adapter = AnythingAdapter(
        guess_fitness,
        None,
        str_mode=False,
        with_examples=False,
        refiner=Refiner(async_lm(ScriptedRefiner("this is not valid json at all")), 3),
    )
    candidate = {"number": "50", REFINER_COMPONENT: "Return a JSON dict with 'number'."}
    batch = asyncio.run(adapter.evaluate([None], candidate, capture_traces=True))
    info = batch.outputs[0]
    attempts = info["refiner_prompt_specific_info"]["Attempts"]
    assert len([a for a in attempts if "side_info" in a]) == 1
    assert len([a for a in attempts if "error" in a]) == 3
    assert info["refiner_prompt_specific_info"]["scores"] == {"accuracy": 0.92}
    assert batch.scores == [-8.0] and batch.num_metric_calls == 1
    assert batch.objective_scores == [{"accuracy": 0.92, "refiner_prompt::accuracy": 0.92}]


@pytest.mark.parametrize("frontier_type", ["instance", "objective", "hybrid", "cartesian"])
def test_the_refiner_works_with_every_frontier(frontier_type: str) -> None:
    """Ported from gepa's TestRefinerFrontierTypes, with a scripted refiner."""
    refiner_lm = ScriptedRefiner(*(json.dumps({"number": str(50 - n)}) for n in range(1, 40)))
    result = optimize_anything(
        {"number": "50"},
        evaluator=guess_fitness,
        dataset=[0, 1, 2],
        config=GEPAConfig(
            engine=EngineConfig(max_metric_calls=12, frontier_type=frontier_type),
            reflection=ReflectionConfig(reflection_lm=lambda prompt: "```\n45\n```"),
            refiner=RefinerConfig(refiner_lm=refiner_lm, max_refinements=2),
        ),
    )
    assert REFINER_COMPONENT in result.best_candidate
    assert result.total_metric_calls <= 12
    assert "refiner_prompt::accuracy" in (result.objective_scores or [{}])[0]


def test_a_refiner_client_is_metered_as_the_task_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from gepetto.lm.openai_client import OpenAIClient
    from gepetto.lm.reliability import RetryPolicy
    from tests.lm.fault_server import FaultServer, ok

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FaultServer() as server:
        server.play(*(ok(json.dumps({"current_candidate": "x" * n})) for n in range(2, 9)))
        client = OpenAIClient(
            "gpt-fault",
            base_url=server.openai_base_url,
            api_key="sk-test",
            retry=RetryPolicy(max_attempts=1),
            timeout=5.0,
        )
        seen, evaluator = counting_evaluator()
        result = optimize_anything(
            "x",
            evaluator=evaluator,
            config=config(3, RefinerConfig(refiner_lm=client, max_refinements=5), lambda p: "x"),
        )
    assert seen == ["x", "xx", "xxx"]
    assert result.lm_usage["task"]["calls"] == len(server.requests) == 2


def test_a_resume_keeps_max_refinements(tmp_path: Any) -> None:
    def run(budget: int, max_refinements: int) -> Any:
        return optimize_anything(
            "x",
            evaluator=lambda c: float(len(c)),
            config=GEPAConfig(
                engine=EngineConfig(max_metric_calls=budget, run_dir=tmp_path),
                reflection=ReflectionConfig(reflection_lm=lambda p: "```\nxy\n```"),
                refiner=RefinerConfig(
                    refiner_lm=lambda p: '{"current_candidate": "xxx"}',
                    max_refinements=max_refinements,
                ),
            ),
        )

    assert run(4, 2).total_metric_calls == 4
    assert run(8, 2).total_metric_calls == 8  # resumed, with a larger budget
    with pytest.raises(ConfigError, match="different adapter"):
        run(12, 3)

"""A two-predictor DSPy program on the real local models, optimized through
``gepetto.adapters.dspy.GEPA``.

The program routes a support message (``classify``: message -> label) and answers it
(``reply``: message, label -> reply); the metric scores the label. The 0.5B task model runs
through DSPy's own LM (``dspy_lm("local/qwen2.5-coder-0.5b")``). With the vague seed
instruction it writes a sentence instead of a label; the scripted reflection adds the label
list, and the score on held-out messages must rise. The real 1.5B model reflects in one
test, which asserts only that the run works and is not made worse. The optimized program
must save, load and answer the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.dspy_fakes import CACHE_DIR  # first: quiet DSPy before it is imported

import dspy  # isort: skip

from gepetto.adapters.default import normalize_label
from gepetto.adapters.dspy import GEPA, dspy_lm, stop_local_servers
from gepetto.datasets import LABELS_PROMPT, SEED_PROMPT, ticket_routing_splits
from gepetto.testing import ScriptedLM

pytestmark = [pytest.mark.llm, pytest.mark.slow]

REPLY_PROMPT = "Write a one-sentence reply to the customer."
LABEL_RULE = f"{LABELS_PROMPT} Answer with the label only."


class Support(dspy.Module):
    """Route a support message, then reply to it."""

    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(dspy.Signature("message -> label", SEED_PROMPT))
        self.reply = dspy.Predict(dspy.Signature("message, label -> reply", REPLY_PROMPT))

    def forward(self, message: str) -> dspy.Prediction:
        label = self.classify(message=message).label
        reply = self.reply(message=message, label=label).reply
        return dspy.Prediction(label=label, reply=reply)


def examples(split: list[dict[str, Any]]) -> list[dspy.Example]:
    return [
        dspy.Example(message=e["input"], label=e["answer"]).with_inputs("message") for e in split
    ]


TRAIN, VAL, TEST = (
    examples(s) for s in ticket_routing_splits(4, seeds=(1, 2, 3), tricky_fraction=0)
)


def metric(
    gold: dspy.Example,
    pred: dspy.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> dspy.Prediction:
    score = float(normalize_label(str(pred.label)) == gold.label)
    if score:
        return dspy.Prediction(score=score, feedback=f"Correct: the label is '{gold.label}'.")
    return dspy.Prediction(
        score=score,
        feedback=f"Incorrect: the label must be exactly '{gold.label}' (one word: billing, "
        f"technical, account or shipping), but it was '{pred.label}'.",
    )


def scripted_reflection(prompt: Any) -> str:
    """Adds the label list to classify's instructions; keeps reply's."""
    if SEED_PROMPT in json.dumps(prompt):
        return f"```\n{LABEL_RULE}\n```"
    return f"```\n{REPLY_PROMPT}\n```"


@pytest.fixture(scope="module")
def task_lm() -> Iterator[Any]:
    assert CACHE_DIR  # DSPy's cache is off: every answer below is a real model call
    lm = dspy_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=48, cache=False)
    yield lm
    stop_local_servers()


@pytest.fixture(scope="module")
def optimized(task_lm: Any) -> Any:
    optimizer = GEPA(
        metric,
        max_metric_calls=12,  # seed on val (3), minibatch (3), child (3), child on val (3)
        reflection_lm=ScriptedLM(scripted_reflection),
        component_selector="all",
        use_merge=False,
        num_threads=4,
        gepa_kwargs={"testset": TEST, "display_progress_bar": False},
    )
    with dspy.context(lm=task_lm):
        return optimizer.compile(Support(), trainset=TRAIN, valset=VAL[:3])


def test_scripted_reflection_raises_the_held_out_score(optimized: Any) -> None:
    result = optimized.gepetto_result
    print(result)
    assert optimized.classify.signature.instructions == LABEL_RULE
    assert optimized.reply.signature.instructions == REPLY_PROMPT
    assert result.seed_test_score is not None and result.best_test_score is not None
    assert result.best_test_score > result.seed_test_score


def test_the_optimized_program_saves_loads_and_answers_the_same(
    optimized: Any, task_lm: Any, tmp_path: Path
) -> None:
    path = tmp_path / "support.json"
    optimized.save(str(path))
    loaded = Support()
    loaded.load(str(path))
    assert loaded.classify.signature.instructions == LABEL_RULE
    with dspy.context(lm=task_lm):
        before = [optimized(message=e.message).label for e in TEST[:3]]
        after = [loaded(message=e.message).label for e in TEST[:3]]
    assert after == before


def test_real_reflection_runs_and_does_not_make_things_worse(task_lm: Any) -> None:
    reflection = dspy_lm("local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=200, cache=False)
    optimizer = GEPA(
        metric,
        max_metric_calls=9,  # seed on val (3), minibatch (3), child (3)
        reflection_lm=reflection,
        use_merge=False,
        num_threads=4,
        gepa_kwargs={"display_progress_bar": False},
    )
    with dspy.context(lm=task_lm):
        optimized = optimizer.compile(Support(), trainset=TRAIN, valset=VAL[:3])
    result = optimized.gepetto_result
    print(result)
    assert result.best_score >= result.seed_score
    assert result.num_reflection_calls >= 1

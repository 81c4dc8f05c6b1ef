"""DSPy test helpers: a quiet DSPy (no disk cache in the home, no price list download), a
fake task model that follows one instruction, and a two-predictor program.

Import this module before ``dspy`` in a test module.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any

for _name, _value in {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)
CACHE_DIR = tempfile.mkdtemp(prefix="gepetto-dspy-cache-")
os.environ["DSPY_CACHEDIR"] = CACHE_DIR

import dspy  # noqa: E402
from dspy.clients.engines.dummy_engine import AsyncDummyEngine, DummyEngine  # noqa: E402
from dspy.utils.dummies import DummyLM  # noqa: E402

# Disk writes go to a temporary folder even if dspy was imported before this module.
dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False, disk_cache_dir=CACHE_DIR)

LOWERCASE_RULE = "Write the label in lowercase."
"""The instruction the fake model needs to give the expected label."""

CLASSIFY_SEED = "Classify the sentiment of the text as Positive or Negative."
EXPLAIN_SEED = "Explain the label in one sentence."


def _field(content: str, name: str) -> str:
    found = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?:\n\n|\Z)", content, re.DOTALL)
    return found.group(1).strip() if found else ""


class RuleFollowingLM(DummyLM):
    """A task model that follows :data:`LOWERCASE_RULE` when its instructions contain it.

    ``classify``: "Positive"/"Negative" by the word "good" in the text (lowercase with the
    rule). ``explain``: "Because of <the text>." A text containing "crash" makes it reply
    with something that does not parse.
    """

    def __init__(self) -> None:
        super().__init__({})
        owner = self

        class Engine(DummyEngine):
            def _complete_messages(self, messages: list[dict[str, Any]]) -> Any:
                return owner.reply(messages)

        self._engine_spec = Engine(self)
        self._async_engine_spec = AsyncDummyEngine(self._engine_spec)
        self.calls = 0

    def reply(self, messages: list[dict[str, Any]]) -> Any:
        from dspy.lm15 import Message, Response, TextPart, Usage

        self.calls += 1
        system = messages[0]["content"]
        user = messages[-1]["content"]
        text = _field(user, "text")
        if "crash" in text:
            output = "I refuse to follow the format."
        elif "[[ ## explanation ## ]]" in system:
            output = self._format_answer_fields({"explanation": f"Because of {text}."})
        else:
            label = "Positive" if "good" in text else "Negative"
            if LOWERCASE_RULE in system:
                label = label.lower()
            output = self._format_answer_fields({"label": label})
        return Response(
            id=None,
            model="rule-following",
            message=Message.assistant([TextPart(output)]),
            finish_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1, total_tokens=2),
        )


class Sentiment(dspy.Module):
    """Two predictors: ``classify`` (text -> label) then ``explain`` (text, label ->
    explanation)."""

    def __init__(self) -> None:
        super().__init__()
        self.classify = dspy.Predict(dspy.Signature("text -> label", CLASSIFY_SEED))
        self.explain = dspy.Predict(dspy.Signature("text, label -> explanation", EXPLAIN_SEED))

    def forward(self, text: str) -> dspy.Prediction:
        label = self.classify(text=text).label
        explanation = self.explain(text=text, label=label).explanation
        return dspy.Prediction(label=label, explanation=explanation)


def sentiment_examples(texts: list[str]) -> list[dspy.Example]:
    return [
        dspy.Example(text=t, label="positive" if "good" in t else "negative").with_inputs("text")
        for t in texts
    ]


TRAIN = sentiment_examples(["a good day", "a bad day", "good food", "bad weather"])
VAL = sentiment_examples(["good news", "bad news", "a good film"])


def plain_metric(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float:
    return float(pred.label == example.label)


def feedback_metric(
    gold: dspy.Example,
    pred: dspy.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> dspy.Prediction:
    """GEPA-style: per-predictor feedback naming the predictor."""
    score = float(pred.label == gold.label)
    if pred_name == "classify":
        feedback = (
            "Correct label."
            if score
            else f"classify wrote {pred.label!r}; the label must be exactly {gold.label!r}."
        )
    elif pred_name == "explain":
        feedback = f"explain: the explanation was {pred.explanation!r}."
    else:
        feedback = "Correct." if score else f"Expected {gold.label!r}."
    return dspy.Prediction(score=score, feedback=feedback)

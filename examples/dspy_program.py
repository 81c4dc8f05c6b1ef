"""A DSPy program optimized by gepetto on the local models: route a support message, then
reply to it.

The program has two predictors: ``classify`` (message -> label) and ``reply`` (message,
label -> reply). Its metric scores the label (billing, technical, account or shipping) and
says what was wrong, per predictor (a GEPA-style DSPy metric). gepetto optimizes both
instructions through ``gepetto.adapters.dspy.GEPA``, DSPy's optimizer interface: the task
model (Qwen2.5-Coder-0.5B) runs through DSPy's own LM (``dspy_lm``), the reflection model
(Qwen2.5-Coder-1.5B) too; both run offline in llama.cpp servers on 127.0.0.1 (install them
first: ``scripts/setup-local-llm``). The seed and the optimized program are scored on
held-out messages (gepetto's ``testset``, outside the budget), and the optimized program
is saved to ``dspy_support.json``.

    pip install 'gepetto[dspy]'
    python examples/dspy_program.py [--budget 30] [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B with a fixed proposal (the label list), to see
the wiring without waiting for the small reflection model to find it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price list download
os.environ.setdefault("DSPY_CACHEDIR", os.path.join(tempfile.gettempdir(), "gepetto-dspy-cache"))

import dspy

from gepetto.adapters.default import normalize_label
from gepetto.adapters.dspy import GEPA, dspy_lm, stop_local_servers
from gepetto.datasets import (
    LABELS_PROMPT,
    SEED_PROMPT,
    ticket_routing_splits,
)

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"
REPLY_PROMPT = "Write a one-sentence reply to the customer."


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


def metric(
    gold: dspy.Example,
    pred: dspy.Prediction,
    trace: Any = None,
    pred_name: str | None = None,
    pred_trace: Any = None,
) -> dspy.Prediction:
    """1 when the label is right; the feedback names the expected label."""
    score = float(normalize_label(str(pred.label)) == gold.label)
    if score:
        return dspy.Prediction(score=score, feedback=f"Correct: the label is '{gold.label}'.")
    if pred_name == "reply":
        feedback = "The reply is fine; the label it was given was wrong."
    else:
        feedback = (
            f"Incorrect: the label must be exactly '{gold.label}' (one word: billing, "
            f"technical, account or shipping), but it was '{pred.label}'."
        )
    return dspy.Prediction(score=score, feedback=feedback)


def scripted_reflection(prompt: Any) -> str:
    if SEED_PROMPT in json.dumps(prompt):
        return f"```\n{LABELS_PROMPT} Answer with the label only.\n```"
    return f"```\n{REPLY_PROMPT}\n```"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=30, help="max metric calls")
    parser.add_argument("--train", type=int, default=6)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=8)
    parser.add_argument("--scripted-reflection", action="store_true")
    args = parser.parse_args()

    train, val, test = (
        examples(split)
        for split in ticket_routing_splits(max(args.train, args.val, args.test), tricky_fraction=0)
    )
    train, val, test = train[: args.train], val[: args.val], test[: args.test]
    task_lm = dspy_lm(TASK_MODEL, temperature=0, max_tokens=48)
    reflection: Any = (
        scripted_reflection
        if args.scripted_reflection
        else dspy_lm(REFLECTION_MODEL, temperature=0.7, max_tokens=300)
    )
    dspy.configure(lm=task_lm)
    try:
        started = time.monotonic()
        optimizer = GEPA(
            metric,
            max_metric_calls=args.budget,
            reflection_lm=reflection,
            component_selector="all",
            use_merge=False,
            num_threads=4,
            gepa_kwargs={"testset": test},
        )
        optimized = optimizer.compile(Support(), trainset=train, valset=val)
        result = optimized.gepetto_result
        print(result)
        for name, predictor in optimized.named_predictors():
            print(f"\n{name}: {predictor.signature.instructions}")
        optimized.save("dspy_support.json")
        print("\nsaved dspy_support.json")
        print(f"validation: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
        print(
            f"held-out test ({len(test)} messages): "
            f"seed {result.seed_test_score:.2f} -> best {result.best_test_score:.2f}"
        )
        print(f"wall time: {(time.monotonic() - started) / 60:.1f} min")
    finally:
        stop_local_servers()


if __name__ == "__main__":
    main()

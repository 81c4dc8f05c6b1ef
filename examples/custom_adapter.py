"""A custom adapter, step by step, on the local models: a review triage system.

The system: one instruction tells the 0.5B task model how to triage a product review into
``refund``, ``replace`` or ``none``. The adapter below is the whole integration:

1. ``evaluate`` runs the model with the candidate's instruction on each review, scores the
   reply against the gold label, and keeps a trajectory (review, reply, feedback);
2. ``make_reflective_dataset`` turns trajectories into the records the reflection model reads;
3. ``check_adapter_contract`` checks it before any optimization is paid for;
4. ``gepetto.optimize`` improves the instruction with the 1.5B reflection model.

    python examples/custom_adapter.py [--budget 40] [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B model with a stand-in that proposes
:data:`TRIAGE_PROMPT`, a hand-written instruction (to see the loop work in seconds).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import gepetto
from gepetto import EvaluationBatch
from gepetto.lm import as_async_lm
from gepetto.lm.registry import resolve_lm
from gepetto.testing.adapter_contract import check_adapter_contract

RULES = (
    "refund: the item never arrived or arrived broken beyond use; "
    "replace: it works but is the wrong size, colour or model; none: anything else."
)
REVIEWS = [
    ("The parcel never came and tracking stopped a week ago.", "refund"),
    ("Arrived in pieces, the glass is shattered.", "refund"),
    ("I ordered the blue one and got red.", "replace"),
    ("Nice shoes but one size too small.", "replace"),
    ("Works fine, a bit noisy.", "none"),
    ("Great value, would buy again.", "none"),
    ("Box was empty when I opened it.", "refund"),
    ("They sent the 64 GB model instead of 128 GB.", "replace"),
    ("Battery lasts two days, as promised.", "none"),
    ("Screen cracked on delivery and it does not turn on.", "refund"),
    ("Fits well, but I wanted the large and got medium.", "replace"),
    ("Delivery was quick, the colour is lovely.", "none"),
]
SEED = "Classify the review."
TRIAGE_PROMPT = (
    "Is the customer owed a refund, a replacement, or nothing? Broken or never arrived: refund. "
    "Wrong size, colour or model: replace. Happy or minor complaint: none. Reply with one "
    "word: refund, replace or none."
)


class TriageAdapter:
    """Scores a triage instruction by exact match of the model's label with the gold one."""

    def __init__(self, model: Any) -> None:
        self.model = as_async_lm(model, role="model")  # an LM client or any callable

    async def _triage(self, instruction: str, review: str) -> str:
        messages = [
            {"role": "system", "content": instruction},
            {"role": "user", "content": review},
        ]
        return str(await self.model(messages)).strip()

    async def evaluate(
        self, batch: list[dict[str, str]], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[dict[str, str], str]:
        replies = await asyncio.gather(
            *(self._triage(candidate["instruction"], ex["review"]) for ex in batch),
            return_exceptions=True,
        )
        outputs, scores, traces = [], [], []
        for example, reply in zip(batch, replies, strict=True):
            if isinstance(reply, BaseException):  # one failing call never stops the run
                text, score, feedback = "", 0.0, f"the model call failed: {reply}"
            else:
                text = reply
                label = text.lower().strip(" .'\"`")
                score = 1.0 if label == example["label"] else 0.0
                feedback = "correct" if score else (
                    f"expected exactly '{example['label']}', got '{text[:80]}'. Rules: {RULES}"
                )  # fmt: skip
            outputs.append(text)
            scores.append(score)
            traces.append({"review": example["review"], "reply": text, "feedback": feedback})
        return EvaluationBatch(outputs, scores, traces if capture_traces else None)

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[dict[str, str], str],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, str]]]:
        records = [
            {"Inputs": t["review"], "Generated Outputs": t["reply"], "Feedback": t["feedback"]}
            for t in eval_batch.trajectories or []
        ]
        return dict.fromkeys(components_to_update, records)


async def run(budget: int, scripted_reflection: bool) -> None:
    examples = [{"review": review, "label": label} for review, label in REVIEWS]
    train, val = examples[::2], examples[1::2]
    task_lm = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=12)
    reflection_lm: Any = (
        (lambda prompt: f"```\n{TRIAGE_PROMPT}\n```")
        if scripted_reflection
        else resolve_lm("local/qwen2.5-coder-1.5b", temperature=0.7, max_tokens=400)
    )
    try:
        result = await gepetto.aoptimize(
            seed_candidate={"instruction": SEED},
            trainset=train,
            valset=val,
            adapter=TriageAdapter(task_lm),
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            seed=0,
        )
    finally:
        await task_lm.aclose()
        if not scripted_reflection:
            await reflection_lm.aclose()
    print("optimized instruction:\n" + result.best_candidate["instruction"] + "\n")
    print(f"validation accuracy: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=40, help="metric calls (default 40)")
    parser.add_argument("--scripted-reflection", action="store_true", help="no 1.5B model")
    args = parser.parse_args()

    # Step 3: the contract, checked with a stand-in model before any real call is paid for.
    def stand_in(messages: list[dict[str, str]]) -> str:
        if messages[-1]["content"] == "boom":
            raise RuntimeError("boom")
        return "none"

    check_adapter_contract(
        lambda: TriageAdapter(stand_in),
        {"instruction": SEED},
        [{"review": review, "label": label} for review, label in REVIEWS[:3]],
        failing_example={"review": "boom", "label": "none"},
        failure_text="boom",
    )
    print("adapter contract: ok")
    asyncio.run(run(args.budget, args.scripted_reflection))


if __name__ == "__main__":
    main()

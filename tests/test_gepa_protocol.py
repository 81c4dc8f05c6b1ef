"""An adapter written against gepa 0.1.4's documented protocol runs unchanged.

The adapter below follows the gepa README: it imports ``EvaluationBatch`` from the library
(here ``gepetto``, imported as ``gepa``), implements ``evaluate`` and
``make_reflective_dataset`` with gepa's record keys ("Inputs", "Generated Outputs",
"Feedback"), and is passed with gepa's keyword names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gepetto as gepa
from gepetto.testing import FeedbackFollowingLM

# ---- user code, written for gepa ----------------------------------------------------------

Task = dict[str, Any]


class CapitalsAdapter:
    """Answers with the capital named in the prompt; scores exact matches (gepa-style)."""

    def evaluate(
        self, batch: list[Task], candidate: dict[str, str], capture_traces: bool = False
    ) -> gepa.EvaluationBatch:
        outputs, scores, trajectories = [], [], []
        for example in batch:
            prompt = candidate["system_prompt"]
            answer = example["answer"] if example["answer"] in prompt.split() else "unknown"
            score = 1.0 if answer == example["answer"] else 0.0
            outputs.append({"full_assistant_response": answer})
            scores.append(score)
            if capture_traces:
                trajectories.append({"data": example, "full_assistant_response": answer})
        return gepa.EvaluationBatch(
            outputs=outputs, scores=scores, trajectories=trajectories if capture_traces else None
        )

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: gepa.EvaluationBatch,
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        component = components_to_update[0]
        records = []
        for trace, score in zip(eval_batch.trajectories, eval_batch.scores, strict=True):
            data = trace["data"]
            feedback = (
                "The answer is correct."
                if score == 1.0
                else f"The answer is wrong. missing words: {data['answer']}"
            )
            records.append(
                {
                    "Inputs": data["input"],
                    "Generated Outputs": trace["full_assistant_response"],
                    "Feedback": feedback,
                }
            )
        return {component: records}


# ---- end of user code ---------------------------------------------------------------------

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Kenya": "Nairobi"}
DATA = [{"input": f"Capital of {c}?", "answer": a} for c, a in CAPITALS.items()]


def test_gepa_adapter_runs_unchanged_with_gepa_keywords() -> None:
    result = gepa.optimize(
        seed_candidate={"system_prompt": "You answer geography questions."},
        trainset=DATA,
        valset=DATA,
        adapter=CapitalsAdapter(),
        reflection_lm=FeedbackFollowingLM(words_per_call=2),
        candidate_selection_strategy="pareto",
        skip_perfect_score=True,
        reflection_minibatch_size=2,
        perfect_score=1.0,
        module_selector="round_robin",
        max_metric_calls=120,
        seed=0,
        display_progress_bar=False,
    )
    assert result.val_aggregate_scores[0] == 0.0
    assert result.val_aggregate_scores[result.best_idx] == 1.0
    assert set(CAPITALS.values()) <= set(result.best_candidate["system_prompt"].split())
    # gepa's GEPAResult attribute names are available.
    assert len(result.candidates) == len(result.parents) == len(result.discovery_eval_counts)
    assert set(result.per_val_instance_best_candidates) == set(range(len(DATA)))
    assert result.total_metric_calls <= 120


@dataclass
class ForeignEvaluationBatch:
    """Stands in for gepa's own ``EvaluationBatch`` class (same fields, another class)."""

    outputs: list[Any]
    scores: list[float]
    trajectories: list[Any] | None = None
    objective_scores: list[dict[str, float]] | None = None
    num_metric_calls: int | None = None


def test_adapter_returning_gepas_own_batch_class_is_accepted() -> None:
    class ForeignAdapter(CapitalsAdapter):
        def evaluate(
            self, batch: list[Task], candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            native = super().evaluate(batch, candidate, capture_traces)
            return ForeignEvaluationBatch(native.outputs, native.scores, native.trajectories)

    result = gepa.optimize(
        {"system_prompt": "Answer."},
        DATA,
        adapter=ForeignAdapter(),
        reflection_lm=FeedbackFollowingLM(words_per_call=4),
        max_metric_calls=60,
        display_progress_bar=False,
    )
    assert result.best_score == 1.0

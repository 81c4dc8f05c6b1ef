"""The reflective proposer: corrective retries and the free proposal guards (scripted LMs)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.lm.protocol import as_async_lm
from gepetto.proposers import (
    ProposalOutcome,
    ReflectiveProposer,
    check_proposal,
    resolve_templates,
)
from gepetto.proposers.guards import pasted_records
from gepetto.records import ReflectionRecord, record_from_dict
from gepetto.storage.sqlite import SQLiteStorage
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset
from gepetto.types import candidate_hash

RECORDS = [
    {
        "Inputs": "My package for order #48213 arrived crushed, I want a refund.",
        "Generated Outputs": "I am sorry to hear that your package arrived damaged.",
        "Feedback": "Incorrect: expected 'shipping'. A physical delivery problem is 'shipping', "
        "even when the customer asks for a refund.",
    }
]
PARENT = "Classify the customer message."


def propose(lm: ScriptedLM, **options: Any) -> ProposalOutcome:
    proposer = ReflectiveProposer(
        as_async_lm(lm), resolve_templates(None, ["instructions"]), **options
    )
    return asyncio.run(
        proposer.propose({"instructions": PARENT}, {"instructions": RECORDS}, ["instructions"])
    )


def test_an_unusable_reply_is_asked_again_with_a_corrective_note() -> None:
    lm = ScriptedLM(["Let me think about the labels first.", "```\nAnswer: shipping.\n```"])
    outcome = propose(lm)
    assert outcome.texts == {"instructions": "Answer: shipping."}
    assert outcome.lm_calls == 2
    assert "IMPORTANT" not in lm.prompts[0]
    assert lm.prompts[1].startswith(lm.prompts[0])
    assert "did not put the new instructions between ``` lines" in lm.prompts[1]


def test_a_reply_that_makes_a_candidate_already_tried_is_asked_again() -> None:
    tried_text = "Answer: refund."
    tried = frozenset({candidate_hash({"instructions": tried_text})})
    lm = ScriptedLM([f"```\n{tried_text}\n```", "```\nAnswer: shipping.\n```"])
    proposer = ReflectiveProposer(as_async_lm(lm), resolve_templates(None, ["instructions"]))
    outcome = asyncio.run(
        proposer.propose(
            {"instructions": PARENT}, {"instructions": RECORDS}, ["instructions"], tried=tried
        )
    )
    assert outcome.texts == {"instructions": "Answer: shipping."} and outcome.lm_calls == 2
    assert "repeated instructions that were already tried" in lm.prompts[1]
    # Without the run's tried candidates the same reply is a usable text.
    again = ScriptedLM([f"```\n{tried_text}\n```"])
    assert propose(again).texts == {"instructions": tried_text}


def test_a_truncated_reply_is_told_to_be_shorter() -> None:
    lm = ScriptedLM(["```\nA very long text that was cut", "```\nShort.\n```"])
    assert propose(lm).texts == {"instructions": "Short."}
    assert "cut off" in lm.prompts[1] and "shorter" in lm.prompts[1]


def test_retries_are_bounded_and_counted() -> None:
    lm = ScriptedLM(["", "no fence", "still none"])
    outcome = propose(lm, retries=2)
    assert outcome.texts == {}
    assert outcome.lm_calls == 3
    assert outcome.failures["instructions"] == "no fenced block in reply (after 3 attempts)"


def test_no_retry_when_disabled() -> None:
    lm = ScriptedLM(["no fence", "```\nunused\n```"])
    outcome = propose(lm, retries=0)
    assert outcome.lm_calls == 1 and outcome.failures == {
        "instructions": "no fenced block in reply"
    }


def test_a_reply_that_repeats_the_current_text_is_asked_again() -> None:
    lm = ScriptedLM([f"```\n  {PARENT}\n```", "```\nRoute delivery problems to shipping.\n```"])
    outcome = propose(lm)
    assert outcome.texts == {"instructions": "Route delivery problems to shipping."}
    assert outcome.lm_calls == 2
    assert "repeated the current instructions unchanged" in lm.prompts[1]


def test_a_text_repeated_unchanged_after_the_retries_is_a_failure() -> None:
    lm = ScriptedLM([f"```\n{PARENT}\n```"], repeat_last=True)
    outcome = propose(lm, retries=1)
    assert outcome.texts == {}
    assert outcome.failures == {
        "instructions": "the reply repeats the current text unchanged (after 2 attempts)"
    }


def test_a_good_first_reply_costs_one_call() -> None:
    lm = ScriptedLM(["```\nRoute delivery problems to shipping.\n```", "unused"])
    outcome = propose(lm)
    assert outcome.lm_calls == 1 and outcome.flags == {}


LONG_PARENT = " ".join(f"rule{i} says route topic{i} carefully" for i in range(15))


@pytest.mark.parametrize(
    ("parent", "child", "flagged"),
    [
        (LONG_PARENT, "Answer with the label.", "drops most of the parent's text"),
        (LONG_PARENT, LONG_PARENT + " Delivery problems are shipping.", None),
        (PARENT, "Answer with the label.", None),  # a short parent may be rewritten freely
        (
            PARENT,
            "Classify. E.g. My package for order #48213 arrived crushed -> shipping",
            "copies",
        ),
        (PARENT, "Never say: I am sorry to hear that your package arrived damaged.", "copies"),
        # restating the rule from the feedback is what reflection is for
        (
            PARENT,
            "A physical delivery problem is 'shipping', even when the customer asks for a refund.",
            None,
        ),
    ],
)
def test_guards(parent: str, child: str, flagged: str | None) -> None:
    why = check_proposal(parent, child, RECORDS)
    if flagged is None:
        assert why is None
    else:
        assert why is not None and flagged in why


def test_flag_keeps_the_text_and_reject_discards_it() -> None:
    copy = "```\nMy package for order #48213 arrived crushed, I want a refund: shipping\n```"
    flagged = propose(ScriptedLM([copy]))
    assert "instructions" in flagged.texts and "copies" in flagged.flags["instructions"]
    rejected = propose(ScriptedLM([copy]), guards="reject")
    assert rejected.texts == {} and rejected.failures["instructions"].startswith(
        "rejected by guard"
    )
    off = propose(ScriptedLM([copy]), guards="off")
    assert "instructions" in off.texts and off.flags == {}


def test_flags_are_journaled_and_reported(tmp_path: Path) -> None:
    seed = LONG_PARENT  # a short reply drops most of it: flagged, still evaluated
    seen: list[Any] = []

    class Recorder:
        def on_reflection_finished(self, event: Any) -> None:
            seen.append(event)

    result = gepetto.optimize(
        {"instructions": seed},
        keyword_dataset(["alpha", "beta"]),
        adapter=KeywordAdapter(),
        reflection_lm=ScriptedLM(["```\nalpha beta\n```"], repeat_last=True),
        max_metric_calls=12,
        callbacks=[Recorder()],
        display_progress_bar=False,
        run_dir=tmp_path,
    )
    assert result.num_candidates == 2  # flagged, but kept and evaluated: it wins
    assert seen and "drops most" in seen[0].flags["instructions"]
    storage = SQLiteStorage(tmp_path / "journal.sqlite")
    records = [record_from_dict(body) for _, body in storage.read("default")]
    storage.close()
    reflections = [r for r in records if isinstance(r, ReflectionRecord)]
    assert reflections and "drops most" in reflections[0].flags["instructions"]


@pytest.mark.parametrize(
    ("option", "value"), [("proposal_guards", "strict"), ("reflection_retries", -1)]
)
def test_bad_options_are_refused_before_any_call(option: str, value: object) -> None:
    lm = ScriptedLM(["```\nx\n```"], repeat_last=True)
    adapter = KeywordAdapter()
    with pytest.raises(ConfigError, match=option):
        gepetto.optimize(
            {"instructions": "Answer."},
            keyword_dataset(["alpha"]),
            adapter=adapter,
            reflection_lm=lm,
            max_metric_calls=10,
            **{option: value},
        )
    assert adapter.evaluate_calls == 0 and lm.calls == 0


PASTED = (
    "```\nClassify the message.\n\nInput: My parcel is late.\nGenerated Output: shipping\n"
    "Feedback: Correct\n```"
)


def test_pasted_outputs_and_feedback_are_flagged_and_rejected_on_request() -> None:
    flagged = propose(ScriptedLM([PASTED]))
    assert flagged.texts["instructions"].endswith("Feedback: Correct")
    assert flagged.flags["instructions"].startswith("pastes the examples")
    assert flagged.lm_calls == 1
    rejected = propose(ScriptedLM([PASTED]), guards="reject")
    assert rejected.texts == {}
    assert rejected.failures["instructions"].startswith("rejected by guard: pastes the examples")


@pytest.mark.parametrize(
    ("parent", "child", "pasted"),
    [
        (PARENT, "Input: a\nGenerated Outputs: b\nFeedback: Correct", True),
        (PARENT, "- **Generated Output:** b\n- **Feedback**: wrong", True),
        (PARENT, "1. Generated outputs: b\n   feedback: wrong", True),
        # one label alone, or example syntax with inputs and answers, is not a paste
        (PARENT, "Give feedback: be kind.\nFeedback: one sentence.", False),
        (PARENT, "Input: a\nOutput: b", False),
        (PARENT, "Answer 'shipping'; the generated outputs must be one word.", False),
        # the parent already had such lines: the child is judged like its parent was
        ("Generated Outputs: b\nFeedback: ok", "Generated Outputs: c\nFeedback: ok", False),
    ],
)
def test_pasted_records(parent: str, child: str, pasted: bool) -> None:
    assert (pasted_records(parent, child, RECORDS) is not None) is pasted


def test_pasted_records_uses_the_records_own_labels() -> None:
    records = [{"question": "q", "answer given": "a", "critique": "too long"}]
    assert pasted_records("Be brief.", "Answer given: a\nCritique: too long", records)
    assert pasted_records("Be brief.", "Generated Outputs: a\nFeedback: x", records) is None
    assert pasted_records("Be brief.", "Answer given: a", [{"question": "q"}]) is None

"""Reading reflection replies: only a complete fenced block becomes a new text."""

from __future__ import annotations

import pytest

from gepetto.proposers import (
    DEFAULT_REFLECTION_TEMPLATE,
    correction_for,
    extract_new_text,
    format_side_info,
    render_reflection_prompt,
)


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        ("```\nAnswer in one word.\n```", "Answer in one word."),
        (
            "Sure! Here it is:\n```text\nAnswer in one word.\n```\nHope it helps.",
            "Answer in one word.",
        ),
        ("Old:\n```\nold\n```\nNew:\n```markdown\nnew text\n```", "new text"),
        ("<think>let me think ```\nnot this\n```</think>\n```\nreal\n```", "real"),
        ("```Answer with a label.\nThen stop.\n```", "Answer with a label.\nThen stop."),
        ("```\n  multi\n  line\n```", "multi\n  line"),
        # no fences, but a clear delimiter
        ("Certainly! Here is the improved prompt:\n\nAnswer in one word.", "Answer in one word."),
        ("Sure, here are the new instructions:\nAnswer.\nBe brief.", "Answer.\nBe brief."),
        ("**New instructions:**\nAnswer in one word.", "Answer in one word."),
        ("Improved prompt: Answer in one word.", "Answer in one word."),
        (
            "I studied the feedback.\n\nRevised instructions:\nAnswer in one word.\n\n"
            "This version adds the format.\n\nNote: shorter.",
            "Answer in one word.",
        ),
        ("<think>hmm</think>\nHere is the new prompt:\nAnswer.", "Answer."),
    ],
)
def test_usable_replies(reply: str, text: str) -> None:
    assert extract_new_text(reply).text == text


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        ("", "empty reply"),
        ("   \n", "empty reply"),
        ("Certainly! Below is a new instruction: answer briefly.", "no fenced block in reply"),
        ("Here:\n```\nAnswer briefly and", "unclosed fenced block in reply (truncated?)"),
        ("<think>I will write ```\nsomething\n``` later", "no fenced block in reply"),
        ("```\n\n```", "empty fenced block in reply"),
        # monologues and preambles that introduce nothing are not adopted
        (
            "To improve the instructions, let's analyze the feedback.\n1. The task",
            "no fenced block in reply",
        ),
        ("Sure! Let me analyze the feedback.\nThe answers were wrong.", "no fenced block in reply"),
        ("Here are the improved instructions:", "no fenced block in reply"),
        ("Answer in one word.", "no fenced block in reply"),
        # a reply cut off after an earlier complete block must not adopt that block
        (
            "Old:\n```\nold text\n```\nNew:\n```\nnew text, cut",
            "unclosed fenced block in reply (truncated?)",
        ),
        ("``` Improve the assistant\nby doing", "unclosed fenced block in reply (truncated?)"),
    ],
)
def test_unusable_replies(reply: str, problem: str) -> None:
    extracted = extract_new_text(reply)
    assert extracted.text is None
    assert extracted.problem == problem


def test_render_fills_both_placeholders() -> None:
    prompt = render_reflection_prompt(
        DEFAULT_REFLECTION_TEMPLATE,
        "Be brief.",
        [{"Inputs": {"question": "2+2?"}, "Generated Outputs": "5", "Feedback": "wrong, 4"}],
    )
    assert "<curr_param>" not in prompt and "<side_info>" not in prompt
    assert "Be brief." in prompt
    assert "Example 1\n- Inputs:\n  - question: 2+2?\n- Generated Outputs: 5" in prompt
    assert "- Feedback: wrong, 4" in prompt
    assert "under 150 words" in prompt  # <max_words> is filled


def test_side_info_renders_nested_values() -> None:
    text = format_side_info([{"a": [1, {"b": "c"}], "empty": {}, "long": "one\ntwo"}])
    assert text == (
        "Example 1\n- a:\n  - Item 1: 1\n  - Item 2:\n    - b: c\n- empty: (none)\n"
        "- long: one\n  two"
    )


def test_word_limit_grows_with_the_current_text() -> None:
    long_text = " ".join(["word"] * 400)
    prompt = render_reflection_prompt(DEFAULT_REFLECTION_TEMPLATE, long_text, [{"x": 1}])
    assert "under 800 words" in prompt


@pytest.mark.parametrize(
    "problem",
    [
        "empty reply",
        "no fenced block in reply",
        "unclosed fenced block in reply (truncated?)",
        "empty fenced block in reply",
        "something new",
    ],
)
def test_every_problem_has_a_corrective_note(problem: str) -> None:
    note = correction_for(problem, 150)
    assert "IMPORTANT" in note and "under 150 words" in note and "```" in note
    assert ("could not be used" in note) == (problem == "something new")


@pytest.mark.parametrize(
    "problem",
    [
        "empty reply",
        "no fenced block in reply",
        "unclosed fenced block in reply (truncated?)",
        "the reply repeats the current text unchanged",
        "the addition only repeats the current text",
    ],
)
def test_without_a_word_limit_the_note_fits_any_artifact(problem: str) -> None:
    """optimize_anything's template sets no length: its retry notes ask for no word limit and
    speak of the current version, not of instructions for an assistant (the artifact may be
    code)."""
    note = correction_for(problem, None)
    assert "IMPORTANT" in note and "complete new version" in note and "```" in note
    assert "words" not in note and "instructions" not in note and "assistant" not in note

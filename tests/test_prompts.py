"""Reading reflection replies: only a complete fenced block becomes a new text."""

from __future__ import annotations

import pytest

from gepetto.proposers import (
    DEFAULT_REFLECTION_TEMPLATE,
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
    assert "# Example 1" in prompt and "### question" in prompt and "wrong, 4" in prompt


def test_side_info_renders_nested_values() -> None:
    text = format_side_info([{"a": [1, {"b": "c"}], "empty": {}}])
    assert "## a" in text and "### Item 1" in text and "#### b" in text and "c" in text

"""The reflective merge's calls: the prompt, the replies that are asked for again, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gepetto.lm.errors import LMAuthError, LMServerError
from gepetto.proposers.merging import merge_component

A, B = "Answer in French.", "Answer in one word."


class Replies:
    """An async reflection model replying from a script, keeping the prompts it got."""

    def __init__(self, *replies: str | Exception) -> None:
        self.replies = list(replies)
        self.prompts: list[str] = []

    async def __call__(self, prompt: Any) -> str:
        self.prompts.append(prompt)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def merge(lm: Replies, retries: int = 1) -> Any:
    return asyncio.run(merge_component(lm, "instructions", A, B, (4, 2), retries))


def test_both_texts_and_the_wins_are_in_the_prompt_and_the_fenced_reply_is_the_text() -> None:
    lm = Replies("Here it is:\n```\nAnswer in one French word.\n```")
    merged = merge(lm)
    assert merged.text == "Answer in one French word." and merged.problem is None
    assert merged.calls == 1
    (prompt,) = lm.prompts
    assert A in prompt and B in prompt
    assert "version A gives the better result on 4 examples" in prompt
    assert "version B on 2 examples" in prompt


@pytest.mark.parametrize(
    ("first_reply", "note"),
    [
        (f"```\n{A}\n```", "repeats version A unchanged"),
        (f"```\n  {B}  \n```", "repeats version B unchanged"),
        ("I would merge them by keeping both rules.", "did not put the new version between"),
    ],
)
def test_a_reply_repeating_a_parent_or_without_text_is_asked_for_again(
    first_reply: str, note: str
) -> None:
    lm = Replies(first_reply, "```\nAnswer in one French word.\n```")
    merged = merge(lm)
    assert merged.text == "Answer in one French word." and merged.calls == 2
    assert note in lm.prompts[1]
    assert lm.prompts[1].startswith(lm.prompts[0])


def test_after_the_retries_the_problem_is_returned_not_raised() -> None:
    merged = merge(Replies(f"```\n{A}\n```", f"```\n{A}\n```"))
    assert merged.text is None
    assert merged.problem == "the reply repeats version A unchanged (after 2 attempts)"


def test_a_failing_call_is_a_failed_merge_and_a_fatal_one_is_raised() -> None:
    merged = merge(Replies(LMServerError("503 from the server")))
    assert merged.text is None and merged.calls == 1
    assert merged.problem is not None and merged.problem.startswith("reflection LM failed")
    with pytest.raises(LMAuthError):
        merge(Replies(LMAuthError("bad key")))

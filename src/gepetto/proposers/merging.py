"""The reflective merge's prompt: one text written from two that each do better somewhere.

A reflective merge (``merge_strategy="reflective"``, see :mod:`gepetto.strategies.merge`)
hands the reflection model the two parents' texts of a component both changed, with how many
validation examples each wins, and asks for one text that keeps what makes each succeed. No
example is shown: the wins are counted on the validation set, whose data never reaches a
prompt (it would be learned, and validation would stop measuring generalization).

:func:`merge_component` makes the calls: a reply without a usable text, or one that only
repeats a parent, is asked for again (``retries`` times) with a note saying what was wrong.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gepetto.lm.errors import is_fatal
from gepetto.lm.streaming import stream_labels
from gepetto.proposers.prompts import correction_for, extract_new_text, unchanged

__all__ = ["MERGE_PROMPT", "MergedComponent", "merge_component", "render_merge_prompt"]

MERGE_PROMPT = """\
Two versions of the same text were written for one task. Neither is better everywhere: \
version A gives the better result on {wins_a} examples where B does worse, and version B \
on {wins_b} examples where A does worse.

Version A:
```
{text_a}
```

Version B:
```
{text_b}
```

Write one version that does what both do well. Keep every rule, fact, step, format \
requirement and example of either version that the other lacks; where the two contradict \
each other, keep the choice of the version that wins on more examples, unless the other's \
choice is clearly more specific. Do not add anything that is in neither version, and do not \
explain. Reply with the complete merged version between two lines of three backticks \
(```)."""

PROBLEM_REPEATS_A = "the reply repeats version A unchanged"
PROBLEM_REPEATS_B = "the reply repeats version B unchanged"


def render_merge_prompt(text_a: str, text_b: str, wins: tuple[int, int]) -> str:
    """The merge prompt for one component.

    Example:
        >>> prompt = render_merge_prompt("Be brief.", "Answer in French.", (3, 2))
        >>> "on 3 examples where B does worse" in prompt, "Answer in French." in prompt
        (True, True)
    """
    return MERGE_PROMPT.format(text_a=text_a, text_b=text_b, wins_a=wins[0], wins_b=wins[1])


@dataclass(frozen=True, slots=True)
class MergedComponent:
    """One component's merge: the text (``None`` when no reply was usable, ``problem`` says
    why), the LM calls made, and the last prompt sent and reply received."""

    name: str
    text: str | None
    problem: str | None
    calls: int
    prompt: str | None = None
    reply: str | None = None


async def merge_component(
    lm: Callable[[Any], Awaitable[str]],
    name: str,
    text_a: str,
    text_b: str,
    wins: tuple[int, int],
    retries: int,
) -> MergedComponent:
    """Ask ``lm`` to merge ``text_a`` and ``text_b``; at most ``retries + 1`` calls.

    Never raises for a bad reply or a failing call (a fatal error such as a wrong API key
    aside): those come back as ``problem``.
    """
    prompt = render_merge_prompt(text_a, text_b, wins)
    problem = "no reflection call made"
    reply: str | None = None
    calls = 0
    for attempt in range(retries + 1):
        asked = prompt if attempt == 0 else prompt + correction_for(problem, None)
        calls += 1
        try:
            with stream_labels(name):
                reply = await lm(asked)
        except Exception as error:  # an LM failure is a failed merge, not a crash
            if is_fatal(error):
                raise
            problem = f"reflection LM failed: {type(error).__name__}: {error}"
            return MergedComponent(name, None, problem, calls, asked)
        extracted = extract_new_text(reply)
        if extracted.text is None:
            problem = extracted.problem or "no text in reply"
        elif unchanged(text_a, extracted.text):
            problem = PROBLEM_REPEATS_A
        elif unchanged(text_b, extracted.text):
            problem = PROBLEM_REPEATS_B
        else:
            return MergedComponent(name, extracted.text, None, calls, asked, reply)
    if calls > 1:
        problem = f"{problem} (after {calls} attempts)"
    return MergedComponent(name, None, problem, calls, prompt, reply)

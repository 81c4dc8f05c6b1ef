"""The reflection prompt: its template, how it is filled, and how the reply is read.

Templates use the same two placeholders as gepa, so a user's gepa template works unchanged:

- ``<curr_param>``: the current text of the component being improved;
- ``<side_info>``: the examples the candidate was run on, with outputs and feedback.

The reply must hold the new text in a fenced block (three backticks). A reply without a
complete fenced block is *not* adopted: gepetto never turns a preamble, a refusal or a
truncated monologue into the new prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.errors import ConfigError

__all__ = [
    "DEFAULT_REFLECTION_TEMPLATE",
    "PLACEHOLDERS",
    "ExtractedText",
    "extract_new_text",
    "format_side_info",
    "render_reflection_prompt",
    "validate_template",
]

PLACEHOLDERS = ("<curr_param>", "<side_info>")

DEFAULT_REFLECTION_TEMPLATE = """\
You are improving the instructions that an assistant follows to do a task.

The assistant currently follows these instructions:
```
<curr_param>
```

Below are task inputs the assistant received, what it answered, and feedback on each answer:
```
<side_info>
```

Write improved instructions for the assistant:
- Work out from the inputs what the task is and what format the answers must have.
- Study every piece of feedback. Write down the domain facts, rules and edge cases it reveals,
  because the assistant will not see this feedback again.
- Keep what already works, and state any general strategy that solved examples correctly.

Reply with the complete new instructions inside one block delimited by ``` and nothing else
inside that block."""

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)
_LANGUAGE_TAG = re.compile(r"^[A-Za-z0-9_+.-]{1,20}$")


def validate_template(template: str, *, where: str = "reflection_prompt_template") -> None:
    """Check that a template holds both placeholders.

    Raises:
        ConfigError: naming the missing placeholder(s).
    """
    if not isinstance(template, str):
        raise ConfigError(f"{where} must be a string, got {type(template).__name__}")
    missing = [p for p in PLACEHOLDERS if p not in template]
    if missing:
        raise ConfigError(
            f"{where} is missing the placeholder(s) {', '.join(missing)}; a template must "
            "contain <curr_param> (the current text) and <side_info> (examples with feedback)"
        )


def format_side_info(records: Sequence[Mapping[str, Any]]) -> str:
    """Render reflective records as markdown: one ``# Example N`` section per record."""
    return "\n\n".join(
        f"# Example {number}\n" + "".join(_render_field(k, v, 2) for k, v in record.items())
        for number, record in enumerate(records, start=1)
    )


def _render_field(key: str, value: Any, level: int) -> str:
    return f"{'#' * min(level, 6)} {key}\n{_render_value(value, level + 1)}"


def _render_value(value: Any, level: int) -> str:
    if isinstance(value, Mapping):
        return "".join(_render_field(str(k), v, level) for k, v in value.items()) or "\n"
    if isinstance(value, list | tuple):
        items = (_render_field(f"Item {i}", v, level) for i, v in enumerate(value, start=1))
        return "".join(items) or "\n"
    return f"{str(value).strip()}\n\n"


def render_reflection_prompt(
    template: str, current_text: str, records: Sequence[Mapping[str, Any]]
) -> str:
    """Fill a template with the current text and the formatted records."""
    side_info = format_side_info(records)
    return template.replace("<curr_param>", current_text).replace("<side_info>", side_info)


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """The outcome of reading a reflection reply: a text, or why there is none."""

    text: str | None
    problem: str | None = None


def extract_new_text(reply: str) -> ExtractedText:
    """Take the proposed text out of a reflection reply.

    Rules: ``<think>`` blocks are dropped (an unclosed one swallows the rest); the *last*
    complete fenced block is the answer (models often show the old text first); a first line
    that is only a language tag (```` ```text ````) is dropped; surrounding blank lines are
    trimmed. No complete fenced block, or an empty one, gives ``text=None`` and a reason.

    Example:
        >>> extract_new_text("Sure!\\n```\\nAnswer with one word.\\n```").text
        'Answer with one word.'
        >>> extract_new_text("Answer with one word.").problem
        'no fenced block in reply'
    """
    if not isinstance(reply, str) or not reply.strip():
        return ExtractedText(None, "empty reply")
    visible = _THINK_BLOCK.sub("", reply)
    blocks = _FENCE.findall(visible)
    if not blocks:
        if "```" in visible:
            return ExtractedText(None, "unclosed fenced block in reply (truncated?)")
        return ExtractedText(None, "no fenced block in reply")
    info, body = blocks[-1]
    info = info.strip()
    if info and not _LANGUAGE_TAG.match(info):
        body = info + "\n" + body  # text started on the fence line itself
    text = body.strip("\n").strip()
    if not text:
        return ExtractedText(None, "empty fenced block in reply")
    return ExtractedText(text)

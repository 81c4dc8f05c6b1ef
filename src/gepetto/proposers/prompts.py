"""The reflection prompt: its template, how it is filled, and how the reply is read.

Templates use the same two placeholders as gepa, so a user's gepa template works unchanged:

- ``<curr_param>``: the current text of the component being improved;
- ``<side_info>``: the examples the candidate was run on, with outputs and feedback.

The default template is written for small local models as much as for large ones: short,
explicit about the output format, with the examples listed compactly (markdown headings
made a 1.5B model copy the examples instead of answering; see docs/quality.md).

The new text must be clearly delimited in the reply: a fenced block (three backticks), or,
failing that, a text after a label such as ``New instructions:`` or after a one-line preamble
such as ``Here is the improved prompt:``. Anything else (a monologue, a refusal, a reply cut
off inside its fenced block) is *not* adopted; :func:`correction_for` tells the model what to
fix when it is asked again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gepetto.errors import ConfigError
from gepetto.image import Image, image_message

__all__ = [
    "APPEND_REFLECTION_TEMPLATE",
    "DEFAULT_REFLECTION_TEMPLATE",
    "EDIT_MODES",
    "PLACEHOLDERS",
    "PROBLEM_ONLY_WRONG_EXAMPLES",
    "WORD_LIMIT",
    "ExtractedText",
    "InstructionProposalSignature",
    "apply_edit",
    "correction_for",
    "extract_new_text",
    "format_side_info",
    "reflection_images",
    "render_reflection_prompt",
    "unchanged",
    "unusable_edit_problem",
    "validate_template",
]

PLACEHOLDERS = ("<curr_param>", "<side_info>")
EDIT_MODES = ("rewrite", "append")
"""How a reflection reply makes the new text: it *is* the new text, or it is appended."""
WORD_LIMIT = "<max_words>"
OPTIONAL_PLACEHOLDERS = (WORD_LIMIT,)
"""Filled when present: ``<max_words>`` is a length limit that grows with the current text."""

DEFAULT_REFLECTION_TEMPLATE = """\
Improve the instructions of an AI assistant.

Current instructions:
```
<curr_param>
```

The assistant followed them on the inputs below. Its answers and the feedback on each:

<side_info>

Write new instructions that make the assistant answer all of these correctly:
1. Say exactly what form the answer must take (the feedback shows the expected answers).
2. Add every rule or fact that the feedback reveals, as short general rules.
3. Add short examples, one per line, each an input and its correct answer: `"input" -> answer`.
4. Keep the rules and examples of the current instructions that worked.
Keep the instructions short (under <max_words> words). Put them between two lines of three \
backticks (```) and write nothing after the closing ```."""

APPEND_REFLECTION_TEMPLATE = """\
Improve the instructions of an AI assistant by adding to them.

Current instructions:
```
<curr_param>
```

The assistant followed them on the inputs below. Its answers and the feedback on each:

<side_info>

Write the lines to add to the instructions so that the assistant answers all of these \
correctly:
1. If the current instructions do not say exactly what form the answer must take, say it \
(the feedback shows the expected answers).
2. Add each rule or fact that the feedback reveals and the current instructions miss, as a \
short general rule.
3. After each rule, add one short example in your own words: "input" -> answer.
Write only the new lines (under 80 words), not the current instructions. Put them between \
two lines of three backticks (```) and write nothing after the closing ```."""
"""The template of ``reflection_edit="append"``: the reply is an addition to the current
text, which the proposer appends to it (see :func:`apply_edit`)."""

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
        raise ConfigError(  # gepa's message first: code written for gepa matches on it
            f"Missing placeholder(s) in prompt template: {', '.join(missing)} (in {where}); "
            "a template must contain <curr_param> (the current text) and <side_info> "
            "(examples with feedback)"
        )


def format_side_info(records: Sequence[Mapping[str, Any]]) -> str:
    """Render reflective records compactly: an ``Example N`` line, then one ``- key: value``
    line per field. Multi-line values continue on indented lines; nested mappings and lists
    become nested bullets.

    Example:
        >>> print(format_side_info([{"Inputs": "2+2?", "Feedback": "wrong, 4"}]))
        Example 1
        - Inputs: 2+2?
        - Feedback: wrong, 4
    """
    return "\n\n".join(
        f"Example {number}\n" + "\n".join(_render_field(str(k), v, 0) for k, v in record.items())
        for number, record in enumerate(records, start=1)
    )


def _render_field(key: str, value: Any, depth: int) -> str:
    indent = "  " * depth
    if isinstance(value, Mapping):
        items = [_render_field(str(k), v, depth + 1) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        items = [_render_field(f"Item {i}", v, depth + 1) for i, v in enumerate(value, start=1)]
    else:
        lines = str(value).strip().splitlines() or [""]
        continued = "".join(f"\n{indent}  {line}" for line in lines[1:])
        return f"{indent}- {key}: {lines[0]}{continued}".rstrip()
    return "\n".join([f"{indent}- {key}:", *items]) if items else f"{indent}- {key}: (none)"


IMAGE_PLACEHOLDER = "[IMAGE-{number} — see visual content]"
"""Where an :class:`~gepetto.image.Image` of the side information was (gepa's marker)."""

_IMAGES_NOTE = (
    "The evaluation data below includes visual content ({count} image(s)), attached after "
    "this text in the order of their [IMAGE-N] markers. Look at the images as well as the "
    "text when deciding what to improve.\n\n"
)


def _without_images(value: Any, images: list[Image]) -> Any:
    """``value`` with each image replaced by its placeholder (appended to ``images``)."""
    if isinstance(value, Image):
        images.append(value)
        return IMAGE_PLACEHOLDER.format(number=len(images))
    if isinstance(value, Mapping):
        return {k: _without_images(v, images) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_images(v, images) for v in value]
    return value


def _split_images(records: Sequence[Mapping[str, Any]]) -> tuple[list[Any], list[Image]]:
    images: list[Image] = []
    return [_without_images(record, images) for record in records], images


def reflection_images(records: Sequence[Mapping[str, Any]]) -> list[Image]:
    """The images in ``records``, numbered in the order of their placeholders in
    :func:`render_reflection_prompt`."""
    return _split_images(records)[1]


def max_words(current_text: str) -> int:
    """The length limit offered to the model: 150 words, or twice the current text's length."""
    return max(150, 2 * len(current_text.split()))


def render_reflection_prompt(
    template: str, current_text: str, records: Sequence[Mapping[str, Any]]
) -> str:
    """Fill a template with the current text, the formatted records and the length limit.

    An :class:`~gepetto.image.Image` in the records is shown as ``[IMAGE-N — see visual
    content]``, after a note saying how many there are; :func:`reflection_images` gives
    them, to send with the text (:func:`gepetto.image.image_message`).
    """
    shown, images = _split_images(records)
    side_info = format_side_info(shown)
    if images:
        side_info = _IMAGES_NOTE.format(count=len(images)) + side_info
    return (
        template.replace("<max_words>", str(max_words(current_text)))
        .replace("<curr_param>", current_text)
        .replace("<side_info>", side_info)
    )


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """The outcome of reading a reflection reply: a text, or why there is none.

    ``how`` says how the text was delimited: ``"fenced"``, ``"labelled"`` (after a label such
    as ``New instructions:``) or ``"after preamble"``; ``None`` when there is no text.
    """

    text: str | None
    problem: str | None = None
    how: str | None = None


_PROBLEM_EMPTY = "empty reply"
_PROBLEM_UNCLOSED = "unclosed fenced block in reply (truncated?)"
_PROBLEM_NO_FENCE = "no fenced block in reply"
_PROBLEM_EMPTY_FENCE = "empty fenced block in reply"
PROBLEM_NOTHING_ADDED = "the addition only repeats the current text"
PROBLEM_UNCHANGED = "the reply repeats the current text unchanged"
PROBLEM_ONLY_WRONG_EXAMPLES = "the reply only adds examples with the answers marked wrong"
PROBLEM_ALREADY_TRIED = "the reply is a version already tried"

_NOUN = r"(?:instructions?|prompt|system prompt|text|version)"
_LABEL = re.compile(
    rf"^[#*\s]*(?:(?:new|improved|updated|revised|rewritten|final)\s+{_NOUN})[*\s]*:[*\s]*(.*)$",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(
    r"^\W*(?:sure|certainly|of course|okay|ok|absolutely|great|here|below)\b[^\n]*\b"
    rf"{_NOUN}s?\b[^\n]*:\W*$",
    re.IGNORECASE,
)
_COMMENTARY = re.compile(
    r"^\W*(?:this|these|the (?:new|above|revised|improved)|note|explanation|changes?|i (?:have|"
    r"added|made))\b",
    re.IGNORECASE,
)


def extract_new_text(reply: str) -> ExtractedText:
    """Take the proposed text out of a reflection reply.

    Rules, in order:

    1. ``<think>`` blocks are dropped (an unclosed one swallows the rest).
    2. With fences: the *last* complete fenced block is the answer (models often show the
       old text first); a first line that is only a language tag (```` ```text ````) is
       dropped. A reply whose last fence is left open was cut off: no text.
    3. Without fences: the text after a label line (``New instructions:``), or after a
       first line that introduces it (``Sure, here is the improved prompt:``), up to a
       closing commentary paragraph (``This version ...``, ``Note: ...``).
    4. Anything else (no delimiter at all) gives no text: a bare reply cannot be told apart
       from a monologue about the task.

    Example:
        >>> extract_new_text("Sure!\\n```\\nAnswer with one word.\\n```").text
        'Answer with one word.'
        >>> extract_new_text("Here is the new prompt:\\nAnswer with one word.").text
        'Answer with one word.'
        >>> extract_new_text("Answer with one word.").problem
        'no fenced block in reply'
    """
    if not isinstance(reply, str) or not reply.strip():
        return ExtractedText(None, _PROBLEM_EMPTY)
    visible = _THINK_BLOCK.sub("", reply)
    if "```" in visible:
        return _from_fences(visible)
    return _from_delimited(visible)


def _from_fences(visible: str) -> ExtractedText:
    blocks = list(_FENCE.finditer(visible))
    if not blocks or "```" in visible[blocks[-1].end() :]:
        return ExtractedText(None, _PROBLEM_UNCLOSED)
    info, body = blocks[-1].group(1).strip(), blocks[-1].group(2)
    if info and not _LANGUAGE_TAG.match(info):
        body = info + "\n" + body  # text started on the fence line itself
    text = body.strip("\n").strip()
    if not text:
        return ExtractedText(None, _PROBLEM_EMPTY_FENCE)
    return ExtractedText(text, how="fenced")


def _from_delimited(visible: str) -> ExtractedText:
    lines = visible.strip().splitlines()
    for index, line in enumerate(lines):
        label = _LABEL.match(line)
        if label:
            rest = [label.group(1)] if label.group(1).strip() else []
            return _answer(rest + lines[index + 1 :], "labelled")
    if len(lines) > 1 and _PREAMBLE.match(lines[0]):
        return _answer(lines[1:], "after preamble")
    return ExtractedText(None, _PROBLEM_NO_FENCE)


def _answer(lines: list[str], how: str) -> ExtractedText:
    paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
    while len(paragraphs) > 1 and _COMMENTARY.match(paragraphs[-1]):
        paragraphs.pop()
    text = "\n\n".join(paragraphs).strip()
    if not text:
        return ExtractedText(None, _PROBLEM_NO_FENCE)
    return ExtractedText(text, how=how)


_CORRECTIONS = {
    _PROBLEM_EMPTY: "Your previous reply was empty.",
    _PROBLEM_UNCLOSED: "Your previous reply was cut off before the closing ``` line: write "
    "shorter instructions.",
    _PROBLEM_EMPTY_FENCE: "Your previous reply had nothing between the ``` lines.",
    _PROBLEM_NO_FENCE: "Your previous reply did not put the new instructions between ``` lines.",
    PROBLEM_NOTHING_ADDED: "Your previous reply only repeated lines the instructions already have.",
    PROBLEM_UNCHANGED: "Your previous reply repeated the current instructions unchanged: change "
    "them so that the assistant answers the examples above correctly.",
    PROBLEM_ONLY_WRONG_EXAMPLES: "Your previous reply gave examples the answers the assistant "
    "got wrong: give each example the answer the feedback expects.",
    PROBLEM_ALREADY_TRIED: "Your previous reply repeated instructions that were already tried: "
    "write different ones, so that the assistant answers the examples above correctly.",
}


# The same notes for any artifact (optimize_anything: code, configurations, ...), whose
# template sets no word limit: no instructions, no assistant, no length.
_ARTIFACT_CORRECTIONS = {
    **_CORRECTIONS,
    _PROBLEM_UNCLOSED: "Your previous reply was cut off before the closing ``` line: write it "
    "more briefly.",
    _PROBLEM_NO_FENCE: "Your previous reply did not put the new version between ``` lines.",
    PROBLEM_NOTHING_ADDED: "Your previous reply only repeated lines the current version "
    "already has.",
    PROBLEM_UNCHANGED: "Your previous reply repeated the current version unchanged: change it "
    "so that it fixes the problems reported above.",
    PROBLEM_ALREADY_TRIED: "Your previous reply repeated a version that was already tried: "
    "write a different one that fixes the problems reported above.",
}


def correction_for(problem: str, max_word_count: int | None, edit: str = "rewrite") -> str:
    """A corrective note appended to the reflection prompt when a reply had no usable text.

    ``edit="append"`` asks for the lines to add (at most 80 words) instead of the complete
    new instructions. ``max_word_count=None`` (a template without ``<max_words>``, such as
    ``optimize_anything``'s) words the note for any artifact, with no length limit.

    Example:
        >>> note = correction_for(PROBLEM_UNCHANGED, None)
        >>> "the current version unchanged" in note, "words" in note
        (True, False)
        >>> "under 150 words" in correction_for(PROBLEM_UNCHANGED, 150)
        True
    """
    notes = _ARTIFACT_CORRECTIONS if max_word_count is None else _CORRECTIONS
    what = notes.get(problem, f"Your previous reply could not be used ({problem}).")
    if edit == "append":
        wanted = "only the new lines to add (under 80 words)"
    elif max_word_count is None:
        wanted = "only the complete new version"
    else:
        wanted = f"only the complete new instructions (under {max_word_count} words)"
    return (
        f"\n\nIMPORTANT: {what} Reply with {wanted} between two lines of three backticks "
        "(```), and nothing after the closing ```."
    )


def apply_edit(current: str, proposed: str, edit: str) -> str | None:
    """The new text a reply makes, for an edit mode, or ``None`` when it changes nothing.

    ``"rewrite"``: the proposed text itself. ``"append"``: the current text, a blank line,
    then the proposed lines; when the reply repeats the whole current text (small models
    often do) it is taken as the complete new text. Returns ``None`` when the result is the
    current text again (whitespace aside), or when an addition adds nothing (every one of
    its lines is already in the current text): see :func:`unusable_edit_problem`.

    Example:
        >>> apply_edit("Answer briefly.", "Reply in French.", "append")
        'Answer briefly.\\n\\nReply in French.'
        >>> apply_edit("Answer  briefly.", "Answer briefly.", "rewrite") is None
        True
    """
    if unchanged(current, proposed):
        return None
    if edit != "append":
        return proposed
    if _squashed(current) in _squashed(proposed):
        return proposed
    known = {_squashed(line) for line in current.splitlines()}
    new_lines = [line for line in proposed.splitlines() if _squashed(line) not in known]
    if not any(line.strip() for line in new_lines):
        return None
    return current.rstrip() + "\n\n" + "\n".join(new_lines).strip("\n")


def unusable_edit_problem(current: str, proposed: str) -> str:
    """Why :func:`apply_edit` made no text of ``proposed``: it repeats ``current`` unchanged,
    or (append mode) it adds no line the current text lacks."""
    return PROBLEM_UNCHANGED if unchanged(current, proposed) else PROBLEM_NOTHING_ADDED


def unchanged(current: str, proposed: str) -> bool:
    """The same text, whitespace aside (case counts)."""
    return current.split() == proposed.split()


def _squashed(text: str) -> str:
    return " ".join(text.split()).lower()


class InstructionProposalSignature:
    """gepa's ``InstructionProposalSignature`` (``gepa.strategies.instruction_proposal``),
    served by this module's functions: code built on gepa renders and reads reflection
    prompts through it. The template and the formatting are gepetto's (this module's
    docstring), so its prompts read differently from gepa's."""

    default_prompt_template = DEFAULT_REFLECTION_TEMPLATE
    input_keys = ("current_instruction_doc", "dataset_with_feedback", "prompt_template")
    output_keys = ("new_instruction",)

    @classmethod
    def validate_prompt_template(cls, prompt_template: str | None) -> None:
        """Check ``prompt_template`` (``None``: the default).

        Raises:
            ConfigError: a placeholder is missing (a ``ValueError``).
        """
        if prompt_template is not None:
            validate_template(prompt_template)

    @classmethod
    def prompt_renderer(cls, input_dict: Mapping[str, Any]) -> str | list[dict[str, Any]]:
        """The reflection prompt: a ``str``, or one user message with the images of the
        records after the text (:func:`gepetto.image.image_message`)."""
        template = input_dict.get("prompt_template") or cls.default_prompt_template
        cls.validate_prompt_template(template)
        records = input_dict["dataset_with_feedback"]
        text = render_reflection_prompt(template, input_dict["current_instruction_doc"], records)
        return image_message(text, reflection_images(records))

    @classmethod
    def output_extractor(cls, lm_out: str) -> dict[str, str]:
        """``{"new_instruction": text}`` from a reply (:func:`extract_new_text`; the reply
        stripped when it delimits no text)."""
        found = extract_new_text(lm_out)
        return {"new_instruction": found.text if found.text is not None else lm_out.strip()}

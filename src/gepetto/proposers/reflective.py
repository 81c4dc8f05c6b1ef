"""Reflective mutation: ask an LM to rewrite components from examples with feedback.

:class:`ReflectiveProposer` renders the reflection prompt for each component to update,
calls the reflection LM (components in parallel), and extracts the new texts. A reply with
no usable text is asked for again (``retries`` times) with a note saying what was wrong;
every call counts as a reflection call. Usable texts go through the free checks of
:mod:`gepetto.proposers.guards` (and, with ``drop_wrong_examples``, lose their example lines
that teach an answer marked wrong). The proposer never raises for a bad reply or a failing LM
call: those become ``failures`` (component -> reason) in the returned
:class:`ProposalOutcome`, which the engine records.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.errors import ConfigError
from gepetto.image import image_message
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM
from gepetto.lm.streaming import stream_labels
from gepetto.proposers.guards import GuardMode, check_proposal, drop_wrong_examples
from gepetto.proposers.merging import merge_component
from gepetto.proposers.prompts import (
    APPEND_REFLECTION_TEMPLATE,
    DEFAULT_REFLECTION_TEMPLATE,
    EDIT_MODES,
    PROBLEM_ALREADY_TRIED,
    PROBLEM_ONLY_WRONG_EXAMPLES,
    WORD_LIMIT,
    apply_edit,
    correction_for,
    extract_new_text,
    max_words,
    reflection_images,
    render_reflection_prompt,
    unchanged,
    unusable_edit_problem,
    validate_template,
)
from gepetto.types import candidate_hash, lone_surrogate

__all__ = ["ProposalOutcome", "ReflectiveProposer", "resolve_edit_mode", "resolve_templates"]

logger = logging.getLogger("gepetto.reflection")


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """New texts by component, reasons for the components that got none, LM calls made.

    ``flags`` maps a component whose new text is kept but looks suspicious, or was repaired
    (see :mod:`gepetto.proposers.guards`), to the reason. ``alternatives``, when there are several
    proposals (best-of-n), lists them all, ``texts`` first; the engine scores each on the
    parent's minibatch and goes on with the best.

    What the reflection saw and said, for observers (gepa's callbacks get them; they are not
    journaled): ``reflective_dataset``, the adapter's records per component; ``prompts``, per
    component, the last prompt sent (a ``str``, or the message list when images were sent);
    ``replies``, per component, the model's reply to it.
    """

    texts: Mapping[str, str]
    failures: Mapping[str, str] = field(default_factory=dict)
    lm_calls: int = 0
    flags: Mapping[str, str] = field(default_factory=dict)
    alternatives: tuple[Mapping[str, str], ...] = ()
    reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    prompts: Mapping[str, Any] = field(default_factory=dict)
    replies: Mapping[str, str] = field(default_factory=dict)


def resolve_edit_mode(edit: object) -> str:
    """Check ``reflection_edit``: ``"rewrite"`` or ``"append"``.

    Raises:
        ConfigError: for anything else.
    """
    if edit not in EDIT_MODES:
        raise ConfigError(
            f"reflection_edit must be 'rewrite' (the reply is the new text) or 'append' (the "
            f"reply is added to the current text), got {edit!r}"
        )
    return str(edit)


def resolve_templates(
    template: str | Mapping[str, str] | None,
    components: Sequence[str],
    edit: str = "rewrite",
) -> dict[str, str]:
    """One validated template per component.

    A single string applies to every component; a mapping may name only some components
    (the others use the default template of the edit mode: :data:`DEFAULT_REFLECTION_TEMPLATE`,
    or :data:`APPEND_REFLECTION_TEMPLATE` for ``edit="append"``) and must not name unknown
    ones.

    Raises:
        ConfigError: for a missing placeholder or an unknown component name.
    """
    default = APPEND_REFLECTION_TEMPLATE if edit == "append" else DEFAULT_REFLECTION_TEMPLATE
    if template is None:
        return dict.fromkeys(components, default)
    if isinstance(template, str):
        validate_template(template)
        return dict.fromkeys(components, template)
    if not isinstance(template, Mapping):
        raise ConfigError(
            "reflection_prompt_template must be a string or a dict component -> string, "
            f"got {type(template).__name__}"
        )
    unknown = sorted(set(template) - set(components))
    if unknown:
        raise ConfigError(
            f"reflection_prompt_template names unknown component(s) {unknown}; "
            f"the seed candidate has {list(components)}"
        )
    for name, text in template.items():
        validate_template(text, where=f"reflection_prompt_template[{name!r}]")
    return {name: template.get(name, default) for name in components}


class ReflectiveProposer:
    """Proposes new component texts with a reflection LM.

    Args:
        lm: the reflection model as an async callable (see :func:`gepetto.lm.as_async_lm`).
        templates: one template per component (see :func:`resolve_templates`).
        retries: how many times a reply without a usable text is asked for again.
        guards: ``"flag"`` records suspicious texts, ``"reject"`` discards them, ``"off"``.
        samples: independent replies asked for per component (best-of-n); the distinct
            usable ones become the outcome's ``alternatives``.
        edit: ``"rewrite"``: a reply is the new text; ``"append"``: a reply is added to the
            current text (:func:`~gepetto.proposers.prompts.apply_edit`), and one that adds
            nothing new is unusable (asked for again like a reply without a text).
        drop_wrong_examples: remove the new example lines that pair a failed example's input
            with the answer the assistant gave to it
            (:func:`~gepetto.proposers.guards.drop_wrong_examples`); a reply that changes
            nothing else is asked for again.
    """

    def __init__(
        self,
        lm: AsyncLM,
        templates: Mapping[str, str],
        *,
        retries: int = 1,
        guards: GuardMode = "flag",
        samples: int = 1,
        edit: str = "rewrite",
        drop_wrong_examples: bool = False,
    ) -> None:
        self._lm = lm
        self._drop_wrong_examples = drop_wrong_examples
        self._edit = resolve_edit_mode(edit)
        self._templates = dict(templates)
        self._retries = retries
        self._guards = guards
        self._samples = samples

    async def propose(
        self,
        candidate: Mapping[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components: Sequence[str],
        rejected: Mapping[str, Sequence[tuple[str, str]]] | None = None,
        failed: Sequence[bool] | None = None,
        tried: Collection[str] = frozenset(),
    ) -> ProposalOutcome:
        """Rewrite ``components`` of ``candidate``; at least one LM call per component.

        ``rejected`` (component -> [(text, why)]) are earlier proposals that were not kept;
        they are shown after the prompt so the model does not propose them again. ``failed``
        says, per example of the reflective dataset (in the order of each component's
        records), whether it scored below perfect; a component whose record count differs
        is not repaired. ``tried`` holds the content hashes of candidates already tried: a
        text that makes ``candidate`` one of them (this component changed, the others as
        they are) is not usable, and is asked for again like an unchanged one.
        """
        memory = rejected or {}
        per_component = await asyncio.gather(
            *(
                asyncio.gather(
                    *(
                        self._propose_one(
                            candidate, reflective_dataset, name, memory.get(name, ()), failed, tried
                        )
                        for _ in range(self._samples)
                    )
                )
                for name in components
            )
        )
        calls = sum(r.calls for samples in per_component for r in samples)
        texts: dict[str, list[str]] = {}
        failures: dict[str, str] = {}
        flags: dict[str, str] = {}
        for name, samples in zip(components, per_component, strict=True):
            usable = [r for r in samples if r.text is not None]
            if not usable:
                failures[name] = samples[0].problem or "no usable text"
                continue
            texts[name] = list(dict.fromkeys(r.text for r in usable if r.text is not None))
            if usable[0].flag is not None:
                flags[name] = usable[0].flag
        depth = max((len(options) for options in texts.values()), default=0)
        alternatives = tuple(
            {name: options[min(i, len(options) - 1)] for name, options in texts.items()}
            for i in range(depth)
        )
        shown = [next((r for r in rs if r.text is not None), rs[0]) for rs in per_component]
        return ProposalOutcome(
            texts=alternatives[0] if alternatives else {},
            failures=failures,
            lm_calls=calls,
            flags=flags,
            alternatives=alternatives if len(alternatives) > 1 else (),
            reflective_dataset=reflective_dataset,
            prompts={r.name: r.prompt for r in shown if r.prompt is not None},
            replies={r.name: r.reply for r in shown if r.reply is not None},
        )

    async def merge(
        self,
        first: Mapping[str, str],
        second: Mapping[str, str],
        components: Sequence[str],
        wins: tuple[int, int],
    ) -> ProposalOutcome:
        """Write each of ``components`` from its two texts (``first``'s is version A), with
        the same model and retries as the reflections (see :mod:`gepetto.proposers.merging`);
        components in parallel, at least one LM call each."""
        merged = await asyncio.gather(
            *(
                merge_component(self._lm, name, first[name], second[name], wins, self._retries)
                for name in components
            )
        )
        return ProposalOutcome(
            texts={m.name: m.text for m in merged if m.text is not None},
            failures={m.name: m.problem or "no usable text" for m in merged if m.text is None},
            lm_calls=sum(m.calls for m in merged),
            prompts={m.name: m.prompt for m in merged if m.prompt is not None},
            replies={m.name: m.reply for m in merged if m.reply is not None},
        )

    async def _propose_one(
        self,
        candidate: Mapping[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        name: str,
        rejected: Sequence[tuple[str, str]] = (),
        failed: Sequence[bool] | None = None,
        tried: Collection[str] = frozenset(),
    ) -> _ComponentProposal:
        records = reflective_dataset.get(name)
        if not records:
            problem = "the reflective dataset has no records for this component"
            return _ComponentProposal(name, None, problem, calls=0)
        current = candidate[name]
        if failed is not None and len(failed) != len(records):
            failed = None
        template = self._templates[name]
        prompt = render_reflection_prompt(template, current, records)
        # Retry notes speak of instructions and their length where the template does (it
        # has <max_words>, or it asks for lines to add); else of any artifact (code, ...).
        limited = WORD_LIMIT in template or self._edit == "append"
        word_limit = max_words(current) if limited else None
        images = reflection_images(records)  # sent after the text, when there are any
        if rejected:
            prompt += render_rejected(rejected)
        calls = 0
        problem = "no reflection call made"
        sent: Any = None
        reply: str | None = None
        for attempt in range(self._retries + 1):
            asked = (
                prompt if attempt == 0 else prompt + correction_for(problem, word_limit, self._edit)
            )
            logger.debug("reflection prompt for %s (attempt %d):\n%s", name, attempt + 1, asked)
            calls += 1
            sent, reply = image_message(asked, images), None
            try:
                with stream_labels(name):  # a streaming client's text is this component's
                    reply = await self._lm(sent)
            except Exception as error:  # an LM failure is a failed proposal, not a crash
                if is_fatal(error):
                    raise
                problem = f"reflection LM failed: {type(error).__name__}: {error}"
                return _ComponentProposal(name, None, problem, calls, prompt=sent)
            extracted = extract_new_text(reply)
            if extracted.text is None:
                problem = extracted.problem or "no text in reply"
            else:
                text, problem, repair = self._new_text(current, extracted.text, records, failed)
                if text is not None and _already_tried(candidate, name, text, tried):
                    text, problem = None, PROBLEM_ALREADY_TRIED
                if text is not None:
                    checked = self._checked(name, current, text, records, calls, repair)
                    return dataclasses.replace(checked, prompt=sent, reply=reply)
            logger.info("reflection reply for %s unusable (%s)", name, problem)
        if calls > 1:
            problem = f"{problem} (after {calls} attempts)"
        return _ComponentProposal(name, None, problem, calls, prompt=sent, reply=reply)

    def _new_text(
        self,
        current: str,
        proposed: str,
        records: Sequence[Mapping[str, Any]],
        failed: Sequence[bool] | None,
    ) -> tuple[str | None, str, str | None]:
        """The new text a reply makes and a note of its repair, or ``None`` and why not."""
        text = apply_edit(current, proposed, self._edit)
        if text is None:
            return None, unusable_edit_problem(current, proposed), None
        if not self._drop_wrong_examples or failed is None:
            return text, "", None
        text, dropped = drop_wrong_examples(current, text, records, failed)
        if not dropped:
            return text, "", None
        if unchanged(current, text):
            return None, PROBLEM_ONLY_WRONG_EXAMPLES, None
        return text, "", _repair_note(dropped)

    def _checked(
        self,
        name: str,
        current: str,
        text: str,
        records: Sequence[Mapping[str, Any]],
        calls: int,
        repair: str | None = None,
    ) -> _ComponentProposal:
        flag = None if self._guards == "off" else check_proposal(current, text, records)
        if flag is not None:
            logger.info("proposal for %s flagged: %s", name, flag)
            if self._guards == "reject":
                return _ComponentProposal(name, None, f"rejected by guard: {flag}", calls)
        if repair is not None:
            logger.info("proposal for %s repaired: %s", name, repair)
        note = "; ".join(part for part in (flag, repair) if part is not None) or None
        return _ComponentProposal(name, text, None, calls, note)


@dataclass(frozen=True, slots=True)
class _ComponentProposal:
    name: str
    text: str | None
    problem: str | None
    calls: int
    flag: str | None = None
    prompt: Any = None  # the last prompt sent, and the reply to it
    reply: str | None = None


def _already_tried(
    candidate: Mapping[str, str], name: str, text: str, tried: Collection[str]
) -> bool:
    """Whether ``candidate`` with ``text`` as component ``name`` is a candidate already
    tried (a text that is not valid Unicode has no hash: the engine refuses it later)."""
    if not tried or lone_surrogate(text) is not None:
        return False
    return candidate_hash({**candidate, name: text}) in tried


def _repair_note(dropped: Sequence[str]) -> str:
    lines = "line" if len(dropped) == 1 else "lines"
    return (
        f"dropped {len(dropped)} example {lines} with an answer marked wrong "
        f"({dropped[0].strip()[:60]!r})"
    )


def render_rejected(rejected: Sequence[tuple[str, str]]) -> str:
    """The memory of rejected proposals, appended to a reflection prompt."""
    blocks = "\n\n".join(f"Tried ({why}):\n```\n{text}\n```" for text, why in rejected)
    return (
        "\n\nThese earlier proposals were tried and did not do better; do not propose them "
        f"again, and avoid their mistakes:\n\n{blocks}"
    )

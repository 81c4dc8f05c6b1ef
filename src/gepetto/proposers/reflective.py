"""Reflective mutation: ask an LM to rewrite components from examples with feedback.

:class:`ReflectiveProposer` renders the reflection prompt for each component to update,
calls the reflection LM (components in parallel), and extracts the new texts. It never
raises for a bad reply or a failing LM call: those become ``failures`` (component ->
reason) in the returned :class:`ProposalOutcome`, which the engine records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gepetto.errors import ConfigError
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import AsyncLM
from gepetto.proposers.prompts import (
    DEFAULT_REFLECTION_TEMPLATE,
    extract_new_text,
    render_reflection_prompt,
    validate_template,
)

__all__ = ["ProposalOutcome", "ReflectiveProposer", "resolve_templates"]

logger = logging.getLogger("gepetto.reflection")


@dataclass(frozen=True, slots=True)
class ProposalOutcome:
    """New texts by component, reasons for the components that got none, LM calls made."""

    texts: Mapping[str, str]
    failures: Mapping[str, str] = field(default_factory=dict)
    lm_calls: int = 0


def resolve_templates(
    template: str | Mapping[str, str] | None, components: Sequence[str]
) -> dict[str, str]:
    """One validated template per component.

    A single string applies to every component; a mapping may name only some components
    (the others use the default template) and must not name unknown ones.

    Raises:
        ConfigError: for a missing placeholder or an unknown component name.
    """
    if template is None:
        return dict.fromkeys(components, DEFAULT_REFLECTION_TEMPLATE)
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
    return {name: template.get(name, DEFAULT_REFLECTION_TEMPLATE) for name in components}


class ReflectiveProposer:
    """Proposes new component texts with a reflection LM.

    Args:
        lm: the reflection model as an async callable (see :func:`gepetto.lm.as_async_lm`).
        templates: one template per component (see :func:`resolve_templates`).
    """

    def __init__(self, lm: AsyncLM, templates: Mapping[str, str]) -> None:
        self._lm = lm
        self._templates = dict(templates)

    async def propose(
        self,
        candidate: Mapping[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        components: Sequence[str],
        rejected: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> ProposalOutcome:
        """Rewrite ``components`` of ``candidate``; one LM call per component.

        ``rejected`` (component -> [(text, why)]) are earlier proposals that were not kept;
        they are shown after the prompt so the model does not propose them again.
        """
        memory = rejected or {}
        results = await asyncio.gather(
            *(
                self._propose_one(candidate, reflective_dataset, name, memory.get(name, ()))
                for name in components
            )
        )
        texts = {name: text for name, text, _ in results if text is not None}
        failures = {name: problem for name, _, problem in results if problem is not None}
        return ProposalOutcome(texts, failures, lm_calls=len(components))

    async def _propose_one(
        self,
        candidate: Mapping[str, str],
        reflective_dataset: Mapping[str, Sequence[Mapping[str, Any]]],
        name: str,
        rejected: Sequence[tuple[str, str]] = (),
    ) -> tuple[str, str | None, str | None]:
        records = reflective_dataset.get(name)
        if not records:
            return name, None, "the reflective dataset has no records for this component"
        prompt = render_reflection_prompt(self._templates[name], candidate[name], records)
        if rejected:
            prompt += render_rejected(rejected)
        logger.debug("reflection prompt for %s:\n%s", name, prompt)
        try:
            reply = await self._lm(prompt)
        except Exception as error:  # an LM failure is a failed proposal, not a crash
            if is_fatal(error):
                raise
            return name, None, f"reflection LM failed: {type(error).__name__}: {error}"
        extracted = extract_new_text(reply)
        return name, extracted.text, extracted.problem


def render_rejected(rejected: Sequence[tuple[str, str]]) -> str:
    """The memory of rejected proposals, appended to a reflection prompt."""
    blocks = "\n\n".join(f"Tried ({why}):\n```\n{text}\n```" for text, why in rejected)
    return (
        "\n\nThese earlier proposals were tried and did not do better; do not propose them "
        f"again, and avoid their mistakes:\n\n{blocks}"
    )

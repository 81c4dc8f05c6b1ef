"""Proposers: how new candidate texts are made (reflective mutation, its prompt and guards)."""

from gepetto.proposers.guards import check_proposal
from gepetto.proposers.prompts import (
    APPEND_REFLECTION_TEMPLATE,
    DEFAULT_REFLECTION_TEMPLATE,
    apply_edit,
    correction_for,
    extract_new_text,
    format_side_info,
    render_reflection_prompt,
    validate_template,
)
from gepetto.proposers.reflective import ProposalOutcome, ReflectiveProposer, resolve_templates

__all__ = [
    "APPEND_REFLECTION_TEMPLATE",
    "DEFAULT_REFLECTION_TEMPLATE",
    "ProposalOutcome",
    "ReflectiveProposer",
    "apply_edit",
    "check_proposal",
    "correction_for",
    "extract_new_text",
    "format_side_info",
    "render_reflection_prompt",
    "resolve_templates",
    "validate_template",
]

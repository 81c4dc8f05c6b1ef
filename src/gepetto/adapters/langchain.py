"""A LangChain runnable chain as a GEPA adapter: the texts of its prompt templates are what
the optimizer rewrites.

Needs ``langchain-core`` (``pip install 'gepetto[langchain]'``); importing this module
without it raises an :class:`ImportError` that says so. Build the chain with LCEL as usual;
:class:`GepettoChatModel` is a LangChain chat model backed by any gepetto LM (a local
model, an OpenAI or Anthropic client), and any other LangChain chat model works too::

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Route the ticket."), ("human", "{message}")]
    )
    chain = prompt | GepettoChatModel(resolve_lm("local/qwen2.5-coder-0.5b")) | StrOutputParser()

    def metric(example, output, trace):
        ok = output.strip().lower() == example["answer"]
        return (1.0, "Correct.") if ok else (0.0, f"Expected {example['answer']}.")

    adapter = LangChainAdapter(chain, metric)
    result = gepetto.optimize(adapter.seed_candidate(), trainset, valset, adapter=adapter, ...)

**Components.** Every ``PromptTemplate`` and ``ChatPromptTemplate`` the chain is composed of
(through sequences, parallel maps, ``RunnablePassthrough.assign``, bindings, fallbacks and
branches; not inside a ``RunnableLambda`` or another opaque function) is a *template*, named
by its ``name`` when it has one, else ``"prompt"`` (the only unnamed one) or ``"prompt_1"``,
``"prompt_2"``, ... in the order they are found. A string ``PromptTemplate`` is one
component under that name; each text message of a ``ChatPromptTemplate`` is one component,
``"<template>.<role>"`` (``"prompt.system"``, ``"prompt.human"``; ``"prompt.human_2"`` for
a second human message). ``components=`` chooses some of them (default: all);
:meth:`LangChainAdapter.seed_candidate` gives their current texts.

**Candidates.** A candidate is applied by building a new chain whose templates have the
candidate's texts (the user's chain is never changed). A text must use exactly the
variables of the template it replaces (``{question}``, in the template's own format): a
text that drops or adds one, or that is not a valid template, scores 0 on every example
with feedback saying what to keep, and nothing is run.

**Examples and metric.** An example is a mapping whose ``"inputs"`` is the chain's input
(LangSmith's dataset layout; ``input_fn=`` takes it from elsewhere), and whatever the metric
needs. The metric is ``metric(example, output, trace) -> score | (score, feedback)`` (sync
or async) with the chain's (parsed) output. A failing chain (a model error, a parser that
rejects the reply) scores 0 with the error as feedback, except fatal LM errors (bad
credentials, an open circuit breaker), which stop the run.

**Traces** are plain JSON: the inputs, each step the chain ran in order (every rendered
prompt with its template's name, every model output, every parser output), the output,
the score and the feedback. The reflective record of a component shows its template's
rendered prompt and the model output that answered it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gepetto.adapters.default import EvaluationResult
from gepetto.adapters.running import PerLoopSemaphore, metric_verdict
from gepetto.errors import ConfigError
from gepetto.lm.client import LMClient
from gepetto.lm.errors import is_fatal
from gepetto.lm.protocol import as_async_lm
from gepetto.types import EvaluationBatch

INSTALL_HINT = "the LangChain adapter needs langchain-core: pip install 'gepetto[langchain]'"

try:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.prompt_values import PromptValue
    from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
    from langchain_core.prompts.chat import (
        AIMessagePromptTemplate,
        ChatMessagePromptTemplate,
        HumanMessagePromptTemplate,
        SystemMessagePromptTemplate,
    )
    from langchain_core.prompts.string import get_template_variables
    from langchain_core.runnables import Runnable
    from langchain_core.tracers.run_collector import RunCollectorCallbackHandler
    from pydantic import BaseModel, ConfigDict
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(INSTALL_HINT) from _missing

__all__ = ["INSTALL_HINT", "GepettoChatModel", "LangChainAdapter", "Template"]

_TEXT_CHARS = 4000
"""A rendered prompt or an output longer than this is cut in traces."""

Metric = Callable[[Any, Any, Mapping[str, Any]], Any]


# ----- the chat model --------------------------------------------------------------------


class GepettoChatModel(BaseChatModel):
    """A LangChain chat model that answers with a gepetto LM.

    Args:
        lm: a gepetto LM client (``resolve_lm("local/qwen2.5-coder-0.5b")``), or any LM
            callable ``messages -> str`` (sync or async). Keyword arguments bound to the
            model (``model.bind(temperature=0)``) are passed to a client's call.

    System, human and AI messages become ``system``, ``user`` and ``assistant`` messages; a
    client's token usage is reported as the reply's ``usage_metadata``; ``stop`` sequences
    cut the reply.
    """

    lm: Any
    model_config = ConfigDict(arbitrary_types_allowed=True)

    def __init__(self, lm: Any, **kwargs: Any) -> None:
        if not callable(lm):
            raise ConfigError(
                f"GepettoChatModel needs a gepetto LM client or a callable, got {type(lm).__name__}"
            )
        super().__init__(lm=lm, **kwargs)  # type: ignore[call-arg]

    @property
    def _llm_type(self) -> str:
        return "gepetto"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": _model_name(self.lm)}

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = [_as_chat_message(message) for message in messages]
        usage = None
        if isinstance(self.lm, LMClient):
            completion = await self.lm.acomplete(prompt, **kwargs)
            text = completion.text
            usage = {
                "input_tokens": completion.usage.input_tokens,
                "output_tokens": completion.usage.output_tokens,
                "total_tokens": completion.usage.input_tokens + completion.usage.output_tokens,
            }
        else:
            text = await as_async_lm(self.lm, role="GepettoChatModel.lm")(prompt)
        for marker in stop or []:
            if marker and marker in text:
                text = text[: text.index(marker)]
        message = AIMessage(content=text, usage_metadata=usage)
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": _model_name(self.lm)},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        """The sync path (``chain.invoke``): the async call on an event loop of its own."""
        coroutine = self._agenerate(messages, stop, None, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coroutine)
        with ThreadPoolExecutor(1) as pool:  # called from inside a running loop
            return pool.submit(asyncio.run, coroutine).result()


def _model_name(lm: Any) -> str:
    return str(getattr(lm, "model", None) or getattr(lm, "__name__", type(lm).__name__))


_ROLES = {"system": "system", "human": "user", "ai": "assistant"}


def _as_chat_message(message: BaseMessage) -> dict[str, Any]:
    role = getattr(message, "role", None) if message.type == "chat" else None
    return {"role": role or _ROLES.get(message.type, "user"), "content": message.content}


# ----- the templates of a chain ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """One optimizable text of the chain.

    ``template`` is the name of the prompt template it belongs to; ``index`` the position
    of its message in a ``ChatPromptTemplate`` (``None`` for a string ``PromptTemplate``);
    ``variables`` what the text must keep (none for a fixed message); ``format`` the
    template format (``"f-string"``, ``"mustache"``, ``"jinja2"``; ``None`` for a fixed
    message).
    """

    name: str
    template: str
    index: int | None
    text: str
    variables: tuple[str, ...]
    format: str | None


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, Runnable):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _children(item)
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _children(item)


def _is_template(runnable: Any) -> bool:
    return isinstance(runnable, PromptTemplate | ChatPromptTemplate)


def _runnables(root: Any) -> Iterator[Any]:
    """Every runnable the chain is composed of, depth first, templates not entered."""
    seen: set[int] = set()
    stack = [root]
    order: list[Any] = []
    while stack:
        runnable = stack.pop()
        if id(runnable) in seen:
            continue
        seen.add(id(runnable))
        order.append(runnable)
        if _is_template(runnable) or not isinstance(runnable, BaseModel):
            continue
        found = [
            child
            for field in type(runnable).model_fields
            for child in _children(getattr(runnable, field, None))
        ]
        stack.extend(reversed(found))
    return iter(order)


def _rebuild(value: Any, replace: Callable[[Any], Any]) -> Any:
    """``value`` with every prompt template ``t`` in it replaced by ``replace(t)``; the same
    object when nothing in it changed (so unchanged parts are shared, never copied)."""
    if isinstance(value, Runnable):
        if _is_template(value):
            return replace(value)
        if not isinstance(value, BaseModel):
            return value  # a RunnableLambda or another opaque runnable
        updates = {}
        for field in type(value).model_fields:
            current = getattr(value, field, None)
            new = _rebuild(current, replace)
            if new is not current:
                updates[field] = new
        return value.model_copy(update=updates) if updates else value
    if isinstance(value, list | tuple):
        items = [_rebuild(item, replace) for item in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    if isinstance(value, dict):
        entries = {key: _rebuild(item, replace) for key, item in value.items()}
        if all(entries[key] is value[key] for key in value):
            return value
        return entries
    return value


def _role(message: Any) -> str | None:
    """The role of a text message of a chat template (``None``: not an optimizable text)."""
    if isinstance(message, ChatMessagePromptTemplate):
        return message.role if isinstance(message.prompt, PromptTemplate) else None
    for kind, role in (
        (SystemMessagePromptTemplate, "system"),
        (HumanMessagePromptTemplate, "human"),
        (AIMessagePromptTemplate, "ai"),
    ):
        if isinstance(message, kind):
            return role if isinstance(message.prompt, PromptTemplate) else None
    if isinstance(message, BaseMessage) and isinstance(message.content, str):
        return str(message.type)
    return None


def _texts(name: str, template: Any) -> list[Template]:
    if isinstance(template, PromptTemplate):
        variables = tuple(get_template_variables(template.template, template.template_format))
        return [Template(name, name, None, template.template, variables, template.template_format)]
    found: list[Template] = []
    used: dict[str, int] = {}
    for index, message in enumerate(template.messages):
        role = _role(message)
        if role is None:
            continue
        used[role] = used.get(role, 0) + 1
        label = f"{name}.{role}" if used[role] == 1 else f"{name}.{role}_{used[role]}"
        if isinstance(message, BaseMessage):
            found.append(Template(label, name, index, str(message.content), (), None))
        else:
            prompt = message.prompt
            variables = tuple(get_template_variables(prompt.template, prompt.template_format))
            found.append(
                Template(label, name, index, prompt.template, variables, prompt.template_format)
            )
    return found


def _find_templates(chain: Any) -> tuple[dict[int, str], list[Template]]:
    """The prompt templates of ``chain`` (by object id -> name) and their texts."""
    templates = [r for r in _runnables(chain) if _is_template(r)]
    unnamed = [t for t in templates if not t.name]
    names: dict[int, str] = {}
    for template in templates:
        if template.name:
            name = template.name
        elif len(unnamed) == 1:
            name = "prompt"
        else:
            name = f"prompt_{unnamed.index(template) + 1}"
        if name in names.values():
            raise ConfigError(
                f"two prompt templates of the chain are named {name!r}; give each a distinct "
                "name (PromptTemplate(..., name='...') or ChatPromptTemplate(..., name='...'))"
            )
        names[id(template)] = name
    return names, [text for t in templates for text in _texts(names[id(t)], t)]


def _variables_problem(spec: Template, text: str) -> str | None:
    """Why ``text`` cannot replace ``spec`` (``None``: it can)."""
    if spec.format is None:
        return None
    keep = " ".join("{" + v + "}" for v in spec.variables) or "no variables"
    try:
        found = tuple(get_template_variables(text, spec.format))
    except Exception as error:
        return (
            f"the text for {spec.name!r} is not a valid {spec.format} template ({error}); write "
            f"literal braces as {{{{ and }}}} and keep exactly {keep}"
        )
    if set(found) == set(spec.variables):
        return None
    dropped = sorted(set(spec.variables) - set(found))
    added = sorted(set(found) - set(spec.variables))
    what = "; ".join(
        part
        for part in (
            f"it dropped {', '.join('{' + v + '}' for v in dropped)}" if dropped else "",
            f"it added {', '.join('{' + v + '}' for v in added)}" if added else "",
        )
        if part
    )
    return (
        f"the text for {spec.name!r} must use exactly the variables of its template ({keep}), "
        f"but {what}: the chain cannot be run with it"
    )


# ----- the adapter -------------------------------------------------------------------------


class LangChainAdapter:
    """A LangChain runnable whose prompt templates are optimized (see the module docstring).

    Args:
        chain: the runnable (an LCEL chain such as ``prompt | model | parser``).
        metric: ``(example, output, trace) -> score | (score, feedback)`` (sync or async).
        components: the names of the texts to optimize (default: all the templates' texts;
            see :attr:`templates`).
        input_fn: ``example -> chain input`` (default: ``example["inputs"]``).
        max_concurrency: examples run at once for one batch.

    Raises:
        ConfigError: the chain is not a runnable, has no prompt template that can be seen,
            two templates of one name, or ``components`` names a text it does not have.
    """

    def __init__(
        self,
        chain: Any,
        metric: Metric,
        *,
        components: Sequence[str] | None = None,
        input_fn: Callable[[Any], Any] | None = None,
        max_concurrency: int = 8,
    ) -> None:
        if not isinstance(chain, Runnable):
            raise ConfigError(
                f"chain must be a LangChain Runnable (for example prompt | model | parser), got "
                f"{type(chain).__name__}"
            )
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.chain = chain
        self.metric = metric
        self.input_fn = input_fn
        self.max_concurrency = max_concurrency
        self._names, found = _find_templates(chain)
        if not found:
            raise ConfigError(
                "the chain has no PromptTemplate or ChatPromptTemplate text that gepetto can "
                "see; a template inside a RunnableLambda or a custom Runnable is hidden: "
                "compose the template into the chain with |"
            )
        self.templates: dict[str, Template] = {t.name: t for t in found}
        """Every text of the chain's templates, by component name."""
        chosen = list(components) if components is not None else list(self.templates)
        unknown = [name for name in chosen if name not in self.templates]
        if unknown or not chosen:
            raise ConfigError(
                f"components={chosen} names {unknown or 'nothing'}; the chain's template texts "
                f"are {list(self.templates)}"
            )
        self.components = chosen
        self._slots = PerLoopSemaphore(self.max_concurrency)

    # ----- configuration ---------------------------------------------------------------------

    def seed_candidate(self) -> dict[str, str]:
        """The current texts of the chosen components."""
        return {name: self.templates[name].text for name in self.components}

    def build_chain(self, candidate: Mapping[str, str]) -> Any:
        """A new chain with the candidate's texts (the others as they are).

        Raises:
            ConfigError: the candidate has a component the chain does not have, or a text
                with other variables than its template's (see :meth:`check_candidate`).
        """
        problems = self.check_candidate(candidate)
        if problems:
            raise ConfigError("; ".join(problems))
        return self._build(candidate)

    def check_candidate(self, candidate: Mapping[str, str]) -> list[str]:
        """Why the candidate's texts cannot be used (``[]``: they can).

        Raises:
            ConfigError: the candidate names a component the chain does not have.
        """
        unknown = [name for name in candidate if name not in self.templates]
        if unknown:
            raise ConfigError(
                f"the candidate has components {unknown} that are not texts of the chain's "
                f"templates; they are {list(self.templates)}"
            )
        return [
            problem
            for name, text in candidate.items()
            if (problem := _variables_problem(self.templates[name], text)) is not None
        ]

    def _build(self, candidate: Mapping[str, str]) -> Any:
        by_template: dict[str, dict[int | None, str]] = {}
        for name, text in candidate.items():
            spec = self.templates[name]
            by_template.setdefault(spec.template, {})[spec.index] = text

        def replace(template: Any) -> Any:
            name = self._names.get(id(template))
            if name is None:
                return template
            texts = by_template.get(name, {})
            if isinstance(template, PromptTemplate):
                update: dict[str, Any] = {"name": name}
                if None in texts:
                    update["template"] = texts[None]
                return template.model_copy(update=update)
            messages = list(template.messages)
            for index, text in texts.items():
                assert index is not None
                message = messages[index]
                if isinstance(message, BaseMessage):
                    messages[index] = message.model_copy(update={"content": text})
                else:
                    prompt = message.prompt.model_copy(update={"template": text})
                    messages[index] = message.model_copy(update={"prompt": prompt})
            return template.model_copy(update={"name": name, "messages": messages})

        return _rebuild(self.chain, replace)

    def lm_clients(self) -> Sequence[LMClient]:
        """The gepetto clients the chain's :class:`GepettoChatModel` objects call (metered
        by the run as role "task")."""
        found: list[LMClient] = []
        for runnable in _runnables(self.chain):
            lm = getattr(runnable, "lm", None)
            if (
                isinstance(runnable, GepettoChatModel)
                and isinstance(lm, LMClient)
                and all(lm is not known for known in found)
            ):
                found.append(lm)
        return found

    def fingerprint(self) -> str:
        """The configuration a resumed run must share (templates, models, metric)."""
        models = [
            f"{type(r).__name__}({_model_name(r.lm)})"
            if isinstance(r, GepettoChatModel)
            else type(r).__name__
            for r in _runnables(self.chain)
            if isinstance(r, BaseChatModel)
        ]
        metric = getattr(self.metric, "__qualname__", type(self.metric).__qualname__)
        seeds = {name: t.text for name, t in self.templates.items()}
        return (
            f"LangChainAdapter(templates={seeds!r}, components={self.components}, "
            f"models={models}, metric={metric})"
        )

    # ----- evaluate --------------------------------------------------------------------------

    def _input(self, example: Any) -> Any:
        if self.input_fn is not None:
            return self.input_fn(example)
        return example["inputs"]

    async def evaluate(
        self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
    ) -> EvaluationBatch[Any, dict[str, Any]]:
        """Run the chain built from the candidate on every example (concurrently); score
        the outputs with the metric.

        Raises:
            ConfigError: an example without ``"inputs"`` (and no ``input_fn``), or a
                candidate naming a component the chain does not have; before any model call.
        """
        if self.input_fn is None:
            for position, example in enumerate(batch):
                if not isinstance(example, Mapping) or "inputs" not in example:
                    raise ConfigError(
                        f"example {position} ({str(example)[:80]}) has no 'inputs' (the "
                        "chain's input); give examples {'inputs': {...}, ...} or pass "
                        "input_fn=lambda example: ... to LangChainAdapter"
                    )
        problems = self.check_candidate(candidate)
        if problems:
            runs = [self._rejected(example, problems) for example in batch]
        else:
            chain = self._build(candidate)
            slots = self._slots.get()
            runs = list(
                await asyncio.gather(*(self._run_one(chain, example, slots) for example in batch))
            )
        return EvaluationBatch(
            outputs=[trace["output"] for trace in runs],
            scores=[trace["score"] for trace in runs],
            trajectories=runs if capture_traces else None,
        )

    def _rejected(self, example: Any, problems: list[str]) -> dict[str, Any]:
        feedback = "Not run: " + "; ".join(problems) + "."
        return {
            "inputs": _jsonable(self._safe_input(example)),
            "steps": [],
            "output": None,
            "error": feedback,
            "score": 0.0,
            "feedback": feedback,
        }

    def _safe_input(self, example: Any) -> Any:
        try:
            return self._input(example)
        except Exception as error:
            return f"(the input could not be read: {type(error).__name__}: {error})"

    async def _run_one(self, chain: Any, example: Any, slots: asyncio.Semaphore) -> dict[str, Any]:
        collector = RunCollectorCallbackHandler()
        trace: dict[str, Any] = {"inputs": None, "steps": [], "output": None}
        output: Any = None
        failed: str | None = None
        async with slots:
            try:
                value = self._input(example)
                trace["inputs"] = _jsonable(value)
                output = await chain.ainvoke(value, config={"callbacks": [collector]})
            except Exception as error:
                if is_fatal(error):
                    raise
                failed = f"The chain failed: {type(error).__name__}: {_cut(str(error))}"
        trace["steps"] = _steps(collector.traced_runs, set(self._names.values()))
        trace["output"] = _jsonable(output)
        if failed is not None:
            trace["error"] = failed
            verdict = EvaluationResult(0.0, failed)
        else:
            verdict = await metric_verdict(self.metric, example, output, trace)
        trace["score"] = verdict.score
        trace["feedback"] = verdict.feedback
        return trace

    # ----- reflection ------------------------------------------------------------------------

    def make_reflective_dataset(
        self,
        candidate: dict[str, str],
        eval_batch: EvaluationBatch[Any, Any],
        components_to_update: list[str],
    ) -> dict[str, list[dict[str, Any]]]:
        """Per component, one record per example: the inputs, the prompt its template
        rendered and the model output that answered it, the chain's output, the feedback."""
        traces = eval_batch.trajectories or []
        dataset: dict[str, list[dict[str, Any]]] = {}
        for name in components_to_update:
            spec = self.templates.get(name)
            if spec is None:
                continue
            dataset[name] = [_record(trace, spec) for trace in traces]
        return dataset


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS] + " ...[cut]"


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON (messages as their text, pydantic models dumped)."""
    if value is None or isinstance(value, bool | int | float):
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, PromptValue):
        return _cut(value.to_string())
    if isinstance(value, BaseMessage):
        content = value.content
        return _cut(content) if isinstance(content, str) else _jsonable(content)
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(item) for item in value]
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return _cut(repr(value))


def _flatten(runs: Sequence[Any]) -> list[Any]:
    found: list[Any] = []
    for run in runs:
        found.append(run)
        found.extend(_flatten(run.child_runs))
    return found


def _llm_text(outputs: Mapping[str, Any] | None) -> str:
    generations = (outputs or {}).get("generations") or [[]]
    first = generations[0][0] if generations and generations[0] else {}
    if isinstance(first, Mapping):
        return str(first.get("text", ""))
    return str(getattr(first, "text", ""))


def _steps(roots: Sequence[Any], template_names: set[str]) -> list[dict[str, Any]]:
    """The prompt, model and parser steps of the traced runs, in the order they started."""
    runs = sorted(_flatten(roots), key=lambda run: run.start_time)
    steps: list[dict[str, Any]] = []
    for run in runs:
        step: dict[str, Any]
        if run.run_type == "prompt" and run.name in template_names:
            rendered = (run.outputs or {}).get("output")
            step = {"type": "prompt", "template": run.name, "rendered": _jsonable(rendered)}
        elif run.run_type in ("llm", "chat_model"):
            step = {"type": "model", "name": run.name, "output": _cut(_llm_text(run.outputs))}
        elif run.run_type == "parser":
            step = {
                "type": "parser",
                "name": run.name,
                "output": _jsonable((run.outputs or {}).get("output")),
            }
        else:
            continue
        if run.error:
            step["error"] = _cut(str(run.error).strip().splitlines()[-1])
        steps.append(step)
    return steps


def _record(trace: Mapping[str, Any], spec: Template) -> dict[str, Any]:
    steps = trace.get("steps", [])
    rendered: list[str] = []
    answers: list[str] = []
    for position, step in enumerate(steps):
        if step["type"] == "prompt" and step["template"] == spec.template:
            rendered.append(str(step["rendered"]))
            reply = next((s for s in steps[position + 1 :] if s["type"] == "model"), None)
            if reply is not None:
                answers.append(reply.get("error") or reply["output"])
    record: dict[str, Any] = {
        "Inputs": trace.get("inputs"),
        "Rendered prompt": "\n---\n".join(rendered)
        or ("(not rendered: " + trace["error"] + ")" if trace.get("error") else "(not used)"),
        "Model output": "\n---\n".join(answers) or "(no model call after this prompt)",
        "Final output": trace.get("output"),
        "Feedback": trace.get("feedback", ""),
    }
    if spec.variables:
        record["Variables the text must keep"] = " ".join("{" + v + "}" for v in spec.variables)
    return record

"""The LangChain adapter on LCEL chains of real langchain-core components; the chat model is
GepettoChatModel over a scripted LM (the real local model is in tests/lm/test_real_langchain.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import SystemMessage
from langchain_core.output_parsers import JsonOutputParser, StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

import gepetto
from gepetto.adapters.langchain import GepettoChatModel, LangChainAdapter
from gepetto.errors import ConfigError
from gepetto.testing import ScriptedLM
from gepetto.testing.adapter_contract import check_adapter_contract

SRC = str(Path(gepetto.__file__).resolve().parents[1])
SEED_SYSTEM = "Read the ticket."
LABEL_SYSTEM = "Answer with one label: billing or technical."
TICKETS = [
    {"inputs": {"message": "I was charged twice"}, "answer": "billing"},
    {"inputs": {"message": "The app crashes"}, "answer": "technical"},
    {"inputs": {"message": "A charge I do not know"}, "answer": "billing"},
]


class Router:
    """A scripted model that answers with a label only when its system prompt asks for one."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.calls.append(messages)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        user = messages[-1]["content"]
        if "boom" in user:
            raise RuntimeError("the model crashed on boom")
        if "label" not in system.lower():
            return f"This ticket is about: {user}"
        return "billing" if "charge" in user.lower() else "technical"


def label_metric(example: dict[str, Any], output: str, trace: Any) -> tuple[float, str]:
    if output.strip().lower() == example["answer"]:
        return 1.0, "Correct."
    return 0.0, f"Expected exactly '{example['answer']}', got {output[:60]!r}."


def routing_chain(model: Any) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", SEED_SYSTEM), ("human", "Ticket: {message}")]
    )
    return prompt | GepettoChatModel(model) | StrOutputParser()


def evaluate(adapter: LangChainAdapter, batch: list[Any], candidate: dict[str, str]) -> Any:
    return asyncio.run(adapter.evaluate(batch, candidate, capture_traces=True))


def test_the_components_are_the_templates_texts() -> None:
    first = ChatPromptTemplate.from_messages(
        [
            ("system", "Classify."),
            MessagesPlaceholder("history", optional=True),
            ("human", "Ticket: {message}"),
            ("human", "Again: {message}"),
        ]
    )
    second = PromptTemplate.from_template("Reply to a {label} ticket: {message}")
    model = GepettoChatModel(Router())
    chain = (
        RunnablePassthrough.assign(label=first | model | StrOutputParser())
        | second
        | model
        | StrOutputParser()
    )
    adapter = LangChainAdapter(chain, label_metric)
    assert adapter.seed_candidate() == {
        "prompt_1.system": "Classify.",
        "prompt_1.human": "Ticket: {message}",
        "prompt_1.human_2": "Again: {message}",
        "prompt_2": "Reply to a {label} ticket: {message}",
    }
    assert adapter.templates["prompt_2"].variables == ("label", "message")
    chosen = LangChainAdapter(chain, label_metric, components=["prompt_2"])
    assert chosen.seed_candidate() == {"prompt_2": "Reply to a {label} ticket: {message}"}
    # Named templates keep their names; a fixed message is a text too.
    named = ChatPromptTemplate([SystemMessage(content="Be brief."), ("human", "{q}")], name="ask")
    assert LangChainAdapter(named | model, label_metric).seed_candidate() == {
        "ask.system": "Be brief.",
        "ask.human": "{q}",
    }


def test_bad_configuration_is_a_clear_error() -> None:
    model = GepettoChatModel(Router())
    chain = routing_chain(Router())
    with pytest.raises(ConfigError, match="must be a LangChain Runnable"):
        LangChainAdapter("prompt | model", label_metric)
    with pytest.raises(ConfigError, match=r"names \['prompt\.user'\].*'prompt\.system'"):
        LangChainAdapter(chain, label_metric, components=["prompt.user"])
    hidden = RunnableLambda(lambda x: PromptTemplate.from_template("{q}").invoke(x)) | model
    with pytest.raises(ConfigError, match="inside a RunnableLambda"):
        LangChainAdapter(hidden, label_metric)
    twins = PromptTemplate.from_template("{a}", name="x") | PromptTemplate.from_template(
        "{text}", name="x"
    )
    with pytest.raises(ConfigError, match="two prompt templates of the chain are named 'x'"):
        LangChainAdapter(twins, label_metric)
    adapter = LangChainAdapter(chain, label_metric)
    with pytest.raises(ConfigError, match="has no 'inputs'"):
        evaluate(adapter, [{"message": "hi"}], adapter.seed_candidate())
    with pytest.raises(ConfigError, match=r"components \['instructions'\]"):
        evaluate(adapter, TICKETS, {"instructions": "Answer."})
    with pytest.raises(ConfigError, match="needs a gepetto LM client or a callable"):
        GepettoChatModel("local/qwen2.5-coder-0.5b")


def test_a_candidate_builds_a_new_chain_with_its_texts() -> None:
    router = Router()
    chain = routing_chain(router)
    adapter = LangChainAdapter(chain, label_metric)
    seed = adapter.seed_candidate()
    assert evaluate(adapter, TICKETS, seed).scores == [0.0, 0.0, 0.0]
    better = dict(seed, **{"prompt.system": LABEL_SYSTEM})
    result = evaluate(adapter, TICKETS, better)
    assert result.scores == [1.0, 1.0, 1.0]
    assert router.calls[-1][0] == {"role": "system", "content": LABEL_SYSTEM}
    # The user's chain is not changed, and the built chain runs on its own (sync too).
    assert chain.invoke({"message": "I was charged"}).startswith("This ticket is about")
    assert adapter.build_chain(better).invoke({"message": "I was charged"}) == "billing"


def test_a_text_that_changes_the_variables_scores_zero_without_running() -> None:
    router = Router()
    adapter = LangChainAdapter(routing_chain(router), label_metric)
    seed = adapter.seed_candidate()
    for text, why in [
        ("Ticket: {ticket}", "it dropped {message}; it added {ticket}"),
        ("Ticket:", "it dropped {message}"),
        ("Ticket: {message} {extra}", "it added {extra}"),
        ("Ticket: {message", "not a valid f-string template"),
    ]:
        result = evaluate(adapter, TICKETS[:2], dict(seed, **{"prompt.human": text}))
        assert result.scores == [0.0, 0.0]
        feedback = (result.trajectories or [])[0]["feedback"]
        assert why in feedback and "{message}" in feedback
    assert router.calls == []  # nothing was run
    with pytest.raises(ConfigError, match="dropped"):
        adapter.build_chain(dict(seed, **{"prompt.human": "Ticket:"}))
    # Literal braces are fine when escaped.
    escaped = dict(seed, **{"prompt.human": 'Ticket: {message} as {{"label": ...}}'})
    assert adapter.check_candidate(escaped) == []


def test_traces_show_each_prompt_model_output_and_parser_output() -> None:
    router = Router()
    model = GepettoChatModel(router)
    first = ChatPromptTemplate([("system", LABEL_SYSTEM), ("human", "{message}")], name="route")
    second = PromptTemplate.from_template("Reply to this {label} ticket: {message}", name="reply")
    chain = (
        RunnablePassthrough.assign(label=first | model | StrOutputParser())
        | second
        | model
        | StrOutputParser()
    )
    adapter = LangChainAdapter(chain, label_metric)
    result = evaluate(adapter, TICKETS[:1], adapter.seed_candidate())
    trace = (result.trajectories or [])[0]
    json.dumps(trace)
    assert trace["inputs"] == {"message": "I was charged twice"}
    assert [(s["type"], s.get("template")) for s in trace["steps"]] == [
        ("prompt", "route"),
        ("model", None),
        ("parser", None),
        ("prompt", "reply"),
        ("model", None),
        ("parser", None),
    ]
    assert trace["steps"][0]["rendered"] == f"System: {LABEL_SYSTEM}\nHuman: I was charged twice"
    assert trace["steps"][1]["output"] == "billing"
    assert trace["steps"][3]["rendered"] == "Reply to this billing ticket: I was charged twice"
    assert (
        trace["output"] == "This ticket is about: Reply to this billing ticket: I was charged twice"
    )
    assert trace["feedback"].startswith("Expected exactly 'billing'")
    dataset = adapter.make_reflective_dataset(
        adapter.seed_candidate(), result, ["reply", "route.system"]
    )
    reply, route = dataset["reply"][0], dataset["route.system"][0]
    assert reply["Rendered prompt"] == "Reply to this billing ticket: I was charged twice"
    assert reply["Model output"] == trace["output"]
    assert reply["Variables the text must keep"] == "{label} {message}"
    assert route["Model output"] == "billing"
    assert "Variables the text must keep" not in route


def test_a_failing_chain_scores_zero_with_the_error() -> None:
    adapter = LangChainAdapter(routing_chain(Router()), label_metric)
    result = evaluate(adapter, [TICKETS[0], {"inputs": {"message": "boom"}}], {})
    assert result.scores == [0.0, 0.0]
    assert "the model crashed on boom" in (result.trajectories or [])[1]["feedback"]
    parsing = (
        ChatPromptTemplate.from_messages([("system", LABEL_SYSTEM), ("human", "{message}")])
        | GepettoChatModel(Router())
        | JsonOutputParser()
    )
    failed = evaluate(LangChainAdapter(parsing, label_metric), TICKETS[:1], {})
    trace = (failed.trajectories or [])[0]
    assert failed.scores == [0.0]
    assert trace["feedback"].startswith("The chain failed: OutputParserException")
    assert trace["steps"][-1]["type"] == "parser" and "error" in trace["steps"][-1]


def test_the_adapter_keeps_the_contract() -> None:
    def make() -> LangChainAdapter:
        return LangChainAdapter(routing_chain(Router()), label_metric)

    check_adapter_contract(
        make,
        dict(make().seed_candidate(), **{"prompt.system": LABEL_SYSTEM}),
        TICKETS,
        failing_example={"inputs": {"message": "boom"}, "answer": "billing"},
        failure_text="the model crashed on boom",
    )


def test_optimization_improves_the_prompt_on_held_out_tickets() -> None:
    adapter = LangChainAdapter(routing_chain(Router()), label_metric, components=["prompt.system"])
    result = gepetto.optimize(
        adapter.seed_candidate(),
        TICKETS[:2],
        TICKETS[2:],
        testset=[
            {"inputs": {"message": "Charged for nothing"}, "answer": "billing"},
            {"inputs": {"message": "Sync is broken"}, "answer": "technical"},
        ],
        adapter=adapter,
        reflection_lm=ScriptedLM([f"```\n{LABEL_SYSTEM}\n```"], repeat_last=True),
        max_metric_calls=12,
        display_progress_bar=False,
    )
    assert result.seed_test_score == 0.0
    assert result.best_test_score == 1.0
    assert result.best_candidate == {"prompt.system": LABEL_SYSTEM}


def test_the_chat_model_wrapper() -> None:
    replies = ScriptedLM(["billing. And more STOP here"], repeat_last=True)
    model = GepettoChatModel(replies)
    message = model.invoke("Classify: charged twice", stop=["STOP"])
    assert message.content == "billing. And more "
    assert replies.prompts[-1] == [{"role": "user", "content": "Classify: charged twice"}]

    async def inside_a_loop() -> str:
        return str(model.invoke("again").content)  # the sync path from a running loop

    assert asyncio.run(inside_a_loop()).startswith("billing")


def test_without_the_extra_the_error_names_it() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "import gepetto, gepetto.adapters\n"
        "assert not [m for m, v in sys.modules.items() if v and m.startswith('langchain')]\n"
        "try:\n"
        "    import gepetto.adapters.langchain\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
        check=True,
    )
    assert "pip install 'gepetto[langchain]'" in done.stdout


def test_importing_gepetto_loads_neither_framework() -> None:
    code = (
        "import sys, gepetto, gepetto.adapters, gepetto.adapters.agent\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core', 'mcp', 'langsmith')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"

"""A LangChain chain optimized on the local models: support-ticket routing with LCEL.

The chain is ``ChatPromptTemplate | GepettoChatModel | StrOutputParser``: the chat model is
Qwen2.5-Coder-0.5B behind gepetto's LM client (no langchain-openai needed). gepetto
optimizes the texts of the prompt template (its system message; the human message
``{message}`` must keep its variable), and prints the seed's and the optimized chain's
scores on held-out tickets. The reflection model (Qwen2.5-Coder-1.5B) reads the rendered
prompts, the model's replies and the metric's feedback. Both models run offline in
llama.cpp servers on 127.0.0.1 (install them first: ``scripts/setup-local-llm``); needs
``pip install 'gepetto[langchain,local]'``.

    python examples/langchain_chain.py [--budget 40] [--train 8 --val 8 --test 12]
                                      [--scripted-reflection]

``--scripted-reflection`` replaces the 1.5B with a fixed proposal (the hand-written routing
prompt), to see the bookkeeping work in a small budget.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

os.environ.setdefault("LANGSMITH_TRACING", "false")  # nothing leaves the machine

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

import gepetto
from gepetto.adapters.default import normalize_label
from gepetto.adapters.langchain import GepettoChatModel, LangChainAdapter
from gepetto.datasets import HANDWRITTEN_PROMPT, SEED_PROMPT, ticket_routing

TASK_MODEL = "local/qwen2.5-coder-0.5b"
REFLECTION_MODEL = "local/qwen2.5-coder-1.5b"


def tickets(count: int, seed: int) -> list[dict[str, Any]]:
    """Ticket examples in LangSmith's layout: the chain's inputs, and what the metric needs."""
    return [
        {
            "inputs": {"message": e["input"]},
            "answer": e["answer"],
            "rule": " ".join((e.get("additional_context") or {}).values()),
        }
        for e in ticket_routing(count, seed=seed)
    ]


def label_metric(example: dict[str, Any], output: str, trace: Any) -> tuple[float, str]:
    """1 for exactly the right label; else what was expected, and the rule that decides."""
    if normalize_label(output) == example["answer"]:
        return 1.0, f"Correct: the label is '{example['answer']}'."
    return 0.0, (
        f"Incorrect: expected exactly '{example['answer']}' (one of billing, technical, "
        f"account, shipping), got {output.strip()[:80]!r}. {example['rule']}"
    ).strip()


def scripted_reflection(prompt: Any) -> str:
    """A stand-in reflection: the hand-written prompt for the system message."""
    if "Variables the text must keep" in str(prompt):  # the human message: keep it
        return "```\n{message}\n```"
    return f"```\n{HANDWRITTEN_PROMPT}\n```"


async def run(budget: int, sizes: tuple[int, int, int], scripted: bool) -> None:
    from gepetto.lm.registry import resolve_lm

    train, val, test = (tickets(n, seed=s) for n, s in zip(sizes, (1, 2, 3), strict=True))
    task_lm = resolve_lm(TASK_MODEL, temperature=0, max_tokens=12)
    reflection_lm: Any = (
        scripted_reflection
        if scripted
        else resolve_lm(
            REFLECTION_MODEL, temperature=0.7, max_tokens=300, extra_body={"repeat_penalty": 1.1}
        )
    )
    prompt = ChatPromptTemplate.from_messages([("system", SEED_PROMPT), ("human", "{message}")])
    chain = prompt | GepettoChatModel(task_lm) | StrOutputParser()
    adapter = LangChainAdapter(chain, label_metric, max_concurrency=4)
    started = time.monotonic()
    try:
        result = await gepetto.aoptimize(
            adapter.seed_candidate(),
            train,
            val,
            testset=test,
            adapter=adapter,
            reflection_lm=reflection_lm,
            max_metric_calls=budget,
            max_concurrency=4,
            display_progress_bar=False,
        )
    finally:
        await task_lm.aclose()
        if not scripted:
            await reflection_lm.aclose()
    print(result)
    print("\nbest candidate:")
    for name, text in result.best_candidate.items():
        print(f"  {name}: {text}")
    optimized = adapter.build_chain(result.best_candidate)  # a chain to deploy
    print(f"\noptimized chain: {optimized!r:.200}")
    print(f"\nvalidation: seed {result.seed_score:.2f} -> best {result.best_score:.2f}")
    print(f"held-out test: seed {result.seed_test_score:.2f} -> best {result.best_test_score:.2f}")
    print(f"wall time: {(time.monotonic() - started) / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--budget", type=int, default=40, help="max metric calls")
    parser.add_argument("--train", type=int, default=8, help="training tickets")
    parser.add_argument("--val", type=int, default=8, help="validation tickets")
    parser.add_argument("--test", type=int, default=12, help="held-out tickets")
    parser.add_argument("--scripted-reflection", action="store_true")
    args = parser.parse_args()
    sizes = (args.train, args.val, args.test)
    asyncio.run(run(args.budget, sizes, args.scripted_reflection))


if __name__ == "__main__":
    main()

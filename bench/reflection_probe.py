"""Reflection probe: how good are single proposals of a reflection template?

Cheaper than a whole optimization run (``bench/quality.py``): for each task, two fixed parent
prompts (the task's vague seed prompt and a format-only prompt) are run on the 30 training
examples with traces; two random 3-example minibatches per parent are turned into reflection
prompts with each template; the 1.5B reflection model answers ``--samples`` times per prompt
(temperature 0.7, as in the quality benchmark); each usable proposal is scored on the 30
validation examples by the 0.5B task model. Every proposal is one JSON line of
``bench/results/reflection_probe.jsonl`` (template, parent, minibatch, score or the reason it
was unusable, the extracted text and the raw reply); a summary table is printed at the end.

Templates: ``default`` (:data:`gepetto.DEFAULT_REFLECTION_TEMPLATE`), ``rules-only`` (the
default until 2026-11-28), ``layout`` (a ``Rules:`` / ``Examples:`` layout to fill in),
``worked`` (a worked reply for another task), ``answers-first`` and ``two-call`` (a first call
lists what the text must say, a second rewrites with that list). Needs the local models
(``scripts/setup-local-llm``)::

    .venv/bin/python bench/reflection_probe.py --templates default,rules-only --tasks tickets
    .venv/bin/python bench/reflection_probe.py --summary

Numbers are small samples at temperature 0.7: only large differences mean anything.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import git_commit
from gepetto import DEFAULT_REFLECTION_TEMPLATE, datasets
from gepetto.adapters import DefaultAdapter, exact_match_evaluator
from gepetto.evaluation import EvaluationBatch
from gepetto.lm.registry import resolve_lm
from gepetto.proposers.prompts import extract_new_text, render_reflection_prompt

RESULTS = Path(__file__).resolve().parent / "results" / "reflection_probe.jsonl"
SPLIT_SIZE = 30
MINIBATCHES = 2
MINIBATCH_SIZE = 3

_SHOWN = DEFAULT_REFLECTION_TEMPLATE[: DEFAULT_REFLECTION_TEMPLATE.index("Write new")]
"""What every probed template shows before its instructions: the current text and the
examples, worded as in the default template."""
_SHORT = "Keep the instructions short (under <max_words> words). "
_FENCES = (
    "Put them between two lines of three backticks (```) and write nothing after the closing ```."
)
_FENCE_RULE = "Keep the instructions under <max_words> words. " + _FENCES
_FORMAT_LAST = (
    _SHOWN + "Write new instructions that make the assistant answer all of these correctly:\n"
    "1. Add every rule or fact that the feedback reveals, as short general rules.\n"
    '2. Add short examples, one per line, each an input and its correct answer: `"input" -> '
    "answer`.\n"
    "3. Keep the rules and examples of the current instructions that worked.\n"
)
"""The default template's items with the answer form moved to the end (item 4, two wordings)."""

TEMPLATES: dict[str, str] = {
    "default": DEFAULT_REFLECTION_TEMPLATE,
    "rules-only": _SHOWN
    + "Write new instructions that make the assistant answer all of these correctly:\n"
    "1. Say exactly what form the answer must take (the feedback shows the expected answers).\n"
    "2. Add every rule or fact that the feedback reveals, as short general rules (do not copy "
    "the examples).\n"
    "3. Keep the parts of the current instructions that worked.\n" + _SHORT + _FENCES,
    "layout": _SHOWN
    + "Write new instructions that make the assistant answer all of these correctly, in this "
    "layout:\n```\n<the task in one sentence, with every allowed answer>\nRules:\n- <each rule "
    'or fact the feedback reveals, short and general>\nExamples:\n"<a short input in your own '
    'words>" -> <its correct answer>\nAnswer with only <the exact form of the answer>.\n```\n'
    "Keep the rules and examples of the current instructions that worked. " + _FENCE_RULE,
    "worked": _SHOWN
    + "Write new instructions that make the assistant answer all of these correctly:\n"
    "1. Say the task in one sentence, with every allowed answer.\n"
    "2. Add every rule or fact that the feedback reveals, as short general rules; keep the "
    "rules of the current instructions that worked.\n"
    '3. Add a few short examples in your own words, one per line: "input" -> correct answer.\n'
    "4. End with the exact form of the answer.\n\n"
    "For instance, for an assistant that names the city of an address, a good reply is:\n"
    "```\nName the city of the postal address.\nRules:\n- A district counts as its city.\n"
    'Examples:\n"12 rue de Rivoli, 75001 Paris" -> paris\n"5th Avenue, Manhattan" -> new york\n'
    "Answer with only the city name in lowercase.\n```\n\n" + _FENCE_RULE,
    "format-last": _FORMAT_LAST
    + "4. End with one line that says exactly what the answer must be and nothing else, as the "
    "expected answers in the feedback show.\n" + _SHORT + _FENCES,
    "format-last-example": _FORMAT_LAST
    + "4. End with one line that says exactly what the answer must be, as the expected answers "
    'in the feedback show (for example "Answer with only the city name, in lowercase.").\n'
    + _SHORT
    + _FENCES,
    "answers-first": _SHOWN
    + "Write new instructions that make the assistant answer all of these correctly:\n"
    "1. Begin with the task and the exact form of the answer that the feedback expects (if "
    "the feedback lists the allowed answers, name them all).\n"
    "2. Add every rule or fact that the feedback reveals, as short general rules (do not copy "
    "the examples).\n"
    "3. Keep what the current instructions got right; replace what made the answers wrong.\n"
    + _SHORT
    + _FENCES,
}
_DIAGNOSE = """\
An AI assistant followed these instructions:
```
<curr_param>
```

Its answers on some inputs and the feedback on each:

<side_info>

List what the instructions must say so that every answer is correct:
- the exact form of the answer (name every allowed answer if the feedback lists them);
- each rule or fact that the feedback reveals, as a short general rule.
Write only the list: at most 6 short lines."""
TWO_CALL = "two-call"
"""The second call of ``two-call`` is ``rules-only`` with the first call's list inserted."""

MIDRUN_TICKET_PROMPT = """Read the customer message and tell me exactly what it is about.
- The answer must be in simple, clear text.
- Rules:
  - A physical delivery problem (late, lost, damaged or wrong parcel) is 'shipping'.
  - A failure to log in or sign in is 'account', even when an error code or a technical \
message is shown.
  - Any charge or payment question is 'billing', even when the account was deleted or closed.
- Examples:
  "When will my parcel be delivered? It's been 7 days." -> Shipping
  "Login page shows code AUTH-22 and won't let me into my account." -> Account
  "I removed my Premium account on Monday, yet another invoice for $19.90 came." -> Billing
  "The calendar page takes over a minute to load in Chrome." -> Technical
  "After I closed my profile I still got billed for Family." -> Billing"""
"""A third ticket parent (2026-11-29): the best prompt of a real run (early rejection, seed 0,
0.30 test accuracy) that has the rules and examples but a vague answer form; appending
``Answer with only one label: billing, technical, account or shipping.`` raised it to 0.67."""

TASKS: dict[str, tuple[Callable[..., list[dict[str, Any]]], tuple[str, str]]] = {
    "tickets": (
        datasets.ticket_routing,
        (datasets.SEED_PROMPT, datasets.LABELS_PROMPT, MIDRUN_TICKET_PROMPT),
    ),
    "dates": (
        datasets.date_normalization,
        (datasets.DATES_SEED_PROMPT, datasets.DATES_FORMAT_PROMPT),
    ),
}


async def _reply(lm: Any, template: str, parent: str, records: list[dict[str, Any]]) -> str:
    if template != TWO_CALL:
        return str(await lm(render_reflection_prompt(TEMPLATES[template], parent, records)))
    findings = str(await lm(render_reflection_prompt(_DIAGNOSE, parent, records))).strip()
    second = TEMPLATES["rules-only"].replace(
        "Write new instructions that make",
        f"What the instructions must say:\n{findings}\n\nWrite new instructions that make",
    )
    return str(await lm(render_reflection_prompt(second, parent, records)))


async def probe(templates: list[str], tasks: list[str], samples: int, path: Path) -> None:
    task_lm = resolve_lm("local/qwen2.5-coder-0.5b", temperature=0, max_tokens=24)
    reflection_lm = resolve_lm(
        "local/qwen2.5-coder-1.5b",
        temperature=0.7,
        max_tokens=400,
        extra_body={"repeat_penalty": 1.1},
    )
    adapter = DefaultAdapter(task_lm, exact_match_evaluator(), max_concurrency=4)
    provenance = {"date": str(datetime.date.today()), "commit": git_commit()}
    try:
        with path.open("a") as out:
            for task in tasks:
                generate, parents = TASKS[task]
                train, val = generate(SPLIT_SIZE, seed=1), generate(SPLIT_SIZE, seed=2)
                for parent_index, parent in enumerate(parents):
                    candidate = {"instructions": parent}
                    traced = await adapter.evaluate(train, candidate, capture_traces=True)
                    rng = random.Random(parent_index)
                    for batch_index in range(MINIBATCHES):
                        ids = rng.sample(range(SPLIT_SIZE), MINIBATCH_SIZE)
                        batch = EvaluationBatch(
                            outputs=[traced.outputs[i] for i in ids],
                            scores=[traced.scores[i] for i in ids],
                            trajectories=[(traced.trajectories or [])[i] for i in ids],
                        )
                        records = adapter.make_reflective_dataset(
                            candidate, batch, ["instructions"]
                        )["instructions"]
                        for template in templates:
                            started = time.perf_counter()
                            replies = await asyncio.gather(
                                *(
                                    _reply(reflection_lm, template, parent, records)
                                    for _ in range(samples)
                                )
                            )
                            seconds = time.perf_counter() - started
                            for reply in replies:
                                extracted = extract_new_text(reply)
                                score = None
                                if extracted.text is not None:
                                    scored = await adapter.evaluate(
                                        val, {"instructions": extracted.text}
                                    )
                                    score = statistics.mean(scored.scores)
                                row = {
                                    "task": task,
                                    "parent": parent_index,
                                    "minibatch": batch_index,
                                    "template": template,
                                    "score": score,
                                    "problem": extracted.problem,
                                    "reflection_s": round(seconds, 1),
                                    "text": extracted.text,
                                    "reply": reply,
                                    **provenance,
                                }
                                out.write(json.dumps(row) + "\n")
                                out.flush()
                                print(task, parent_index, batch_index, template, score, flush=True)
    finally:
        await task_lm.aclose()
        await reflection_lm.aclose()


def summary(path: Path) -> str:
    """Per (task, template, parent): usable replies and the mean and max validation score."""
    groups: dict[tuple[str, str, int], list[float | None]] = defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        groups[(row["task"], row["template"], row["parent"])].append(row["score"])
    lines = [
        "| task | template | parent | usable | mean val | max val |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for (task, template, parent), scores in sorted(groups.items()):
        usable = [s for s in scores if s is not None]
        mean = f"{statistics.mean(usable):.2f}" if usable else "-"
        best = f"{max(usable):.2f}" if usable else "-"
        lines.append(
            f"| {task} | {template} | {parent} | {len(usable)} / {len(scores)} | {mean} | {best} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", default="default,rules-only")
    parser.add_argument("--tasks", default="tickets,dates")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--summary", action="store_true", help="only print the summary")
    args = parser.parse_args()
    if not args.summary:
        templates = args.templates.split(",")
        unknown = [t for t in templates if t not in {*TEMPLATES, TWO_CALL}]
        if unknown:
            raise SystemExit(f"unknown template(s) {unknown}; known: {[*TEMPLATES, TWO_CALL]}")
        tasks = args.tasks.split(",")
        if any(t not in TASKS for t in tasks):
            raise SystemExit(f"--tasks: choose from {list(TASKS)}")
        args.results.parent.mkdir(parents=True, exist_ok=True)
        asyncio.run(probe(templates, tasks, args.samples, args.results))
    print(summary(args.results))


if __name__ == "__main__":
    main()

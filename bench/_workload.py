"""A synthetic GEPA workload with real waiting, shared by gepa 0.1.4 and gepetto.

The task: each example asks about one *topic* (``topic07``) whose answer is a hidden fact
(``topic07=amber``). A candidate solves the example when its instructions state that fact and
no conflicting value for the same topic. The feedback names the fact that is missing (or the
wrong value that is present), so the instructions can learn the facts from it. Topics are
Zipf-distributed: a few facts matter for many examples, many for one or two.

- :class:`FactAdapter` is the system under optimization (gepa's adapter protocol, sync). Every
  example "calls the task LM", which sleeps ``task_latency``; the examples of a batch run in
  parallel threads (one shared pool), so a batch of N takes about one latency: the fastest
  way to run gepa, which calls ``evaluate`` with whole batches, one at a time.
- :class:`FactReflectionLM` is the reflection LM (a callable ``prompt -> str``): it sleeps
  ``reflection_latency``, reads the current text from the prompt's first fenced block and the
  facts named in the feedback, and returns the text with those facts added (wrong values
  replaced). It is deterministic given the prompt and its seed, and it sometimes recalls a
  value wrong, so not every proposal is accepted. With ``forget > 0`` it also drops each
  fact the parent already had with that chance (a reflection that regresses: the child
  loses what the parent had solved, which the minibatch may not show). With
  ``sampled=True`` a prompt asked again gets another reply (like a model sampled at a
  temperature above 0: what best-of-n needs); the first reply is the unsampled one. A
  reflective merge's prompt (``merge_strategy="reflective"``) gets the facts of both
  versions, each dropped with chance ``MERGE_LOSS``.
- :class:`CPUFactAdapter` is the same task with CPU work instead of waiting (a busy loop of
  ``task_latency`` seconds per example, one example after the other): what a Dask cluster
  speeds up and threads do not. It can be pickled (for ``executor=``).
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

SEED_TEXT = "Answer the question about the topic."
VALUES = [
    "amber", "basil", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "kelp", "lumen", "maple", "nectar", "onyx", "pewter", "quartz", "russet",
]  # fmt: skip
WRONG_RECALL = 0.3  # chance that the reflection LM writes a wrong value for a fact
MERGE_LOSS = 0.1  # chance that a reflective merge drops a fact one of its versions stated
MISSING = re.compile(r"MISSING FACT: (topic\d+)=([a-z]+)")
CONFLICT = re.compile(r"WRONG FACT: (topic\d+)=([a-z]+) should be \1=([a-z]+)")
FACT = re.compile(r"\b(topic\d+)=([a-z]+)\b")
FENCE = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Example:
    id: str
    topic: str
    question: str


@dataclass
class Task:
    facts: dict[str, str]
    trainset: list[Example]
    valset: list[Example]
    testset: list[Example] = field(default_factory=list)


def make_task(
    topics: int = 40,
    train: int = 60,
    val: int = 30,
    seed: int = 1234,
    zipf: float = 0.8,
    test: int = 0,
) -> Task:
    """Hidden facts for ``topics`` topics, and Zipf-distributed train/val(/test) examples.

    The held-out test examples are drawn after the others, so ``test=`` leaves the train and
    validation examples of a seed unchanged.
    """
    rng = random.Random(seed)
    names = [f"topic{i:02d}" for i in range(topics)]
    facts = {name: rng.choice(VALUES) for name in names}
    weights = [1 / (rank + 1) ** zipf for rank in range(topics)]

    def draw(count: int, split: str) -> list[Example]:
        chosen = rng.choices(names, weights, k=count)
        return [
            Example(f"{split}{i}", topic, f"What is the fact about {topic}?")
            for i, topic in enumerate(chosen)
        ]

    trainset, valset = draw(train, "train"), draw(val, "val")
    return Task(facts, trainset, valset, draw(test, "test"))


def stated_facts(text: str) -> dict[str, list[str]]:
    stated: dict[str, list[str]] = {}
    for topic, value in FACT.findall(text):
        stated.setdefault(topic, []).append(value)
    return stated


_POOL = ThreadPoolExecutor(max_workers=256, thread_name_prefix="task-lm")


@dataclass
class FactAdapter:
    """The system being optimized; ``batch_cls`` is gepa's or gepetto's ``EvaluationBatch``."""

    facts: dict[str, str]
    task_latency: float
    batch_cls: Any
    component: str = "instructions"
    metric_calls: int = 0
    evaluations: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # gepa 0.1.4 reads this attribute unconditionally; None = use the reflection LM.
    propose_new_texts = None

    def _answer(self, example: Example, text: str) -> tuple[float, str]:
        time.sleep(self.task_latency)  # the task LM call
        return self._answer_now(example, text)

    def _answer_now(self, example: Example, text: str) -> tuple[float, str]:
        values = stated_facts(text).get(example.topic, [])
        truth = self.facts[example.topic]
        wrong = [v for v in values if v != truth]
        if wrong:
            return 0.0, f"WRONG FACT: {example.topic}={wrong[0]} should be {example.topic}={truth}"
        if truth in values:
            return 1.0, "Correct."
        return 0.0, f"MISSING FACT: {example.topic}={truth}"

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces=False):  # type: ignore[no-untyped-def]
        text = candidate[self.component]
        with self._lock:
            self.metric_calls += len(batch)
            self.evaluations.extend((text, example.id) for example in batch)
        results = list(_POOL.map(lambda example: self._answer(example, text), batch))
        scores = [score for score, _ in results]
        outputs = [feedback for _, feedback in results]
        trajectories = (
            [{"example": e, "feedback": f} for e, (_, f) in zip(batch, results, strict=True)]
            if capture_traces
            else None
        )
        return self.batch_cls(outputs=outputs, scores=scores, trajectories=trajectories)

    def make_reflective_dataset(self, candidate, eval_batch, components_to_update):  # type: ignore[no-untyped-def]
        records = [
            {
                "Inputs": trace["example"].question,
                "Generated Outputs": "correct" if score >= 1 else "incorrect",
                "Feedback": trace["feedback"],
            }
            for trace, score in zip(eval_batch.trajectories, eval_batch.scores, strict=True)
        ]
        return dict.fromkeys(components_to_update, records)


class FactReflectionLM:
    """The reflection LM: sleeps, then adds the facts the feedback names (sometimes wrongly)."""

    def __init__(
        self, latency: float, seed: int, forget: float = 0.0, sampled: bool = False
    ) -> None:
        self.latency = latency
        self.seed = seed
        self.forget = forget
        self.sampled = sampled  # the n-th call with the same prompt gets the n-th reply
        self._seen: dict[str, int] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, prompt: Any) -> str:
        text = prompt if isinstance(prompt, str) else str(prompt[-1]["content"])
        with self._lock:
            self.calls += 1
            occurrence = self._seen.get(text, 0)
            if self.sampled:
                self._seen[text] = occurrence + 1
        time.sleep(self.latency)
        salt = f"{occurrence}\n" if occurrence else ""  # the first reply as without sampling
        digest = hashlib.sha256(f"{self.seed}\n{salt}{text}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if "Version B:" in text:
            return self._merged(text, rng)
        current_match = FENCE.search(text)
        current = current_match.group(1).strip() if current_match else SEED_TEXT
        stated = {topic: values[0] for topic, values in stated_facts(current).items()}
        if self.forget > 0:  # a regression: facts the parent had are lost
            for topic in sorted(stated):
                if rng.random() < self.forget:
                    del stated[topic]
        learned = dict(MISSING.findall(text))
        learned.update({topic: right for topic, _, right in CONFLICT.findall(text)})
        for topic in sorted(learned):
            value = learned[topic]
            if rng.random() < WRONG_RECALL:
                value = rng.choice([v for v in VALUES if v != value])
            stated[topic] = value
        return _reply(stated)

    @staticmethod
    def _merged(text: str, rng: random.Random) -> str:
        """A reflective merge's reply: version A's facts and those only B states, where the
        two disagree A's value; like a small model, it drops each fact with chance
        ``MERGE_LOSS`` (a merge is no free union)."""
        first, second = (stated_facts(block) for block in FENCE.findall(text)[:2])
        stated = {topic: values[0] for topic, values in second.items()}
        stated.update({topic: values[0] for topic, values in first.items()})
        kept = {t: v for t, v in sorted(stated.items()) if rng.random() >= MERGE_LOSS}
        return _reply(kept)


def _reply(stated: dict[str, str]) -> str:
    lines = [SEED_TEXT, *(f"Fact: {t}={stated[t]}." for t in sorted(stated))]
    body = "\n".join(lines)
    return f"Here are the improved instructions:\n```\n{body}\n```"


@dataclass
class CPUFactAdapter(FactAdapter):
    """:class:`FactAdapter` whose task "LM" is ``task_latency`` seconds of CPU work per
    example, the examples of a call one after the other (picklable, for ``executor=``)."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _answer(self, example: Example, text: str) -> tuple[float, str]:
        end = time.thread_time() + self.task_latency
        digest = text.encode()
        while time.thread_time() < end:  # CPU time of this thread: the task "model" runs
            digest = hashlib.sha256(digest).digest()
        return super()._answer_now(example, text)

    def evaluate(self, batch: list[Example], candidate: dict[str, str], capture_traces=False):  # type: ignore[no-untyped-def]
        text = candidate[self.component]
        results = [self._answer(example, text) for example in batch]
        return self.batch_cls(
            outputs=[feedback for _, feedback in results],
            scores=[score for score, _ in results],
            trajectories=[
                {"example": e, "feedback": f} for e, (_, f) in zip(batch, results, strict=True)
            ]
            if capture_traces
            else None,
        )

"""Atlas: a small fictional world for retrieval-augmented generation (RAG).

300 passages about 60 towns, 60 companies, 60 products, 60 people and 60 festivals, none of
which exist, so a model cannot answer from memory: it needs the passage. Questions need one
passage ("What is the chief export of Varnholm?") or two ("Who founded the company that
makes the Lumo lamp?": the product's passage names the maker, the maker's names the
founder). Each question comes as a user would write it, often after an aside that names
another place or firm ("My cousin lives in Kelmar. What is the chief export of
Varnholm?"), so searching with the whole message also finds the aside's passage: a query
rewrite that keeps the key terms retrieves better. Everything is generated from a fixed
seed, with no download::

    passages = atlas_passages()                 # [{"id", "text", "metadata"}, ...]
    train, val, test = atlas_splits()           # disjoint lists of questions

A question is ``{"id", "question", "answer", "answers", "gold_ids", "hops"}``: ``answer`` is
the short canonical answer, ``answers`` every accepted form, ``gold_ids`` the ids of the
passages it needs.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ATLAS_ANSWER_PROMPT",
    "ATLAS_QUERY_PROMPT",
    "ATLAS_SEED_ANSWER_PROMPT",
    "ATLAS_SEED_QUERY_PROMPT",
    "atlas_passages",
    "atlas_questions",
    "atlas_splits",
]

ATLAS_SEED_QUERY_PROMPT = "Rewrite the user's message as a search query."
ATLAS_QUERY_PROMPT = (
    "Write a short search query for the question at the end of the user's message; ignore any "
    "sentence before the question. Examples:\n"
    '"My aunt lives in Orby. What is the chief export of Kelby?" -> Kelby chief export\n'
    '"I read about Dorwick Mills. When does the Pellfeast Festival take place?" -> '
    "Pellfeast Festival month\n"
    "Reply with the query only."
)
"""A better query-rewrite prompt than the seed: the aside's names stay out of the query (two
examples, which the local 0.5B model follows where it ignores the same rule written alone)."""

ATLAS_SEED_ANSWER_PROMPT = "Answer the question using the context."
ATLAS_ANSWER_PROMPT = (
    "Answer the question from the context. Reply with only the short exact answer: a name, "
    "a year, a month, a colour or a few words. No sentence, no explanation, no punctuation."
)
"""A better answer prompt than the seed (a short exact answer, as the gold answers are)."""

_ONSETS = [
    "b",
    "br",
    "c",
    "d",
    "dr",
    "f",
    "g",
    "gr",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "th",
    "v",
    "w",
    "z",
    "st",
    "pl",
    "tr",
]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ou", "ei"]
_CODAS = ["", "n", "r", "l", "m", "s", "th", "nd", "rk", "ll", "st"]
_TOWN_ENDINGS = ["holm", "by", "ford", "mere", "wick", "stead", "ton", "dale"]
_COMPANY_ENDINGS = ["Works", "Foundry", "Company", "Mills", "Brothers", "Guild"]
_PRODUCT_KINDS = [
    "lamp",
    "kettle",
    "clock",
    "bicycle",
    "loom",
    "compass",
    "lantern",
    "radio",
    "typewriter",
    "camera",
]
_FIRST_NAMES = [
    "Tessa",
    "Oren",
    "Mira",
    "Anselm",
    "Ilse",
    "Bram",
    "Nadia",
    "Corin",
    "Edda",
    "Fenn",
    "Greta",
    "Hollis",
    "Ivo",
    "Jana",
    "Kasimir",
    "Lena",
    "Milo",
    "Nell",
    "Otto",
    "Perrin",
    "Rhea",
    "Soren",
    "Talia",
    "Ulric",
]
_RIVERS = [
    "Esk",
    "Tamber",
    "Holloway",
    "Brine",
    "Lark",
    "Wend",
    "Crane",
    "Mardle",
    "Ousel",
    "Fennick",
]
_EXPORTS = [
    "copper wire",
    "blue glass",
    "salted herring",
    "wool cloth",
    "clay pipes",
    "rope",
    "honey",
    "slate",
    "paper",
    "cider",
    "barley",
    "tin plates",
]
_COLOURS = ["green", "red", "black", "white", "yellow", "grey", "orange", "violet"]
_PROFESSIONS = [
    "clockmaker",
    "engineer",
    "painter",
    "cartographer",
    "chemist",
    "weaver",
    "architect",
    "botanist",
    "glassblower",
    "printer",
]
_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_ATTRACTIONS = [
    "lantern parade",
    "boat race",
    "cheese market",
    "kite contest",
    "choir",
    "fireworks",
]
_ASIDES = [
    "My cousin lives in {town}.",
    "We talked about {company} at lunch, but that is another story.",
    "I was reading about {person} yesterday.",
    "Last year I went to {town} for the {festival}.",
    "Someone gave me a {product} once.",
]

_COUNT = 60


@dataclass(frozen=True, slots=True)
class _World:
    towns: list[dict[str, Any]]
    companies: list[dict[str, Any]]
    products: list[dict[str, Any]]
    people: list[dict[str, Any]]
    festivals: list[dict[str, Any]]


def _names(rng: random.Random, count: int, make: Callable[[], str], taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = make()
        key = name.lower()
        if key not in taken and not any(key in t or t in key for t in taken if len(t) > 3):
            taken.add(key)
            names.append(name)
    return names


def _root(rng: random.Random) -> str:
    return (rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)).capitalize()


def _world() -> _World:
    rng = random.Random("gepetto-atlas/1")
    taken: set[str] = set()
    town_names = _names(rng, _COUNT, lambda: _root(rng) + rng.choice(_TOWN_ENDINGS), taken)
    towns = [
        {
            "id": f"town-{i:02d}",
            "name": name,
            "river": rng.choice(_RIVERS),
            "founded": rng.randint(1100, 1700),
            "export": rng.choice(_EXPORTS),
        }
        for i, name in enumerate(town_names)
    ]
    founder_names = _names(
        rng,
        _COUNT,
        lambda: f"{rng.choice(_FIRST_NAMES)} {_root(rng)}{rng.choice(['er', 'in', 'ow', 'ard'])}",
        taken,
    )
    people = [
        {
            "id": f"person-{i:02d}",
            "name": name,
            "profession": rng.choice(_PROFESSIONS),
            "born_in": rng.choice(towns),
        }
        for i, name in enumerate(founder_names)
    ]
    company_roots = _names(
        rng, _COUNT, lambda: _root(rng) + rng.choice(["well", "wright", "more", "field"]), taken
    )
    companies = [
        {
            "id": f"company-{i:02d}",
            "name": f"{root} {rng.choice(_COMPANY_ENDINGS)}",
            "founded": rng.randint(1850, 1990),
            "founder": people[i],
            "town": rng.choice(towns),
        }
        for i, root in enumerate(company_roots)
    ]
    product_roots = _names(
        rng, _COUNT, lambda: _root(rng) + rng.choice(["o", "a", "ix", "et"]), taken
    )
    products = [
        {
            "id": f"product-{i:02d}",
            "name": f"{root} {rng.choice(_PRODUCT_KINDS)}",
            "maker": rng.choice(companies),
            "colour": rng.choice(_COLOURS),
            "grams": rng.randrange(200, 5000, 50),
        }
        for i, root in enumerate(product_roots)
    ]
    festival_roots = _names(
        rng, _COUNT, lambda: _root(rng) + rng.choice(["feast", "fair", "tide"]), taken
    )
    festivals = [
        {
            "id": f"festival-{i:02d}",
            "name": f"{root} Festival",
            "month": rng.choice(_MONTHS),
            "town": rng.choice(towns),
            "attraction": rng.choice(_ATTRACTIONS),
        }
        for i, root in enumerate(festival_roots)
    ]
    return _World(towns, companies, products, people, festivals)


def _passage_texts(world: _World) -> list[tuple[str, str, str]]:
    """(id, kind, text) of every passage."""
    passages = []
    for t in world.towns:
        passages.append(
            (
                t["id"],
                "town",
                (
                    f"{t['name']} is a town on the {t['river']} river. It was founded in "
                    f"{t['founded']}, and its chief export is {t['export']}."
                ),
            )
        )
    for c in world.companies:
        passages.append(
            (
                c["id"],
                "company",
                (
                    f"{c['name']} was founded in {c['founded']} by {c['founder']['name']}. Its "
                    f"headquarters are in {c['town']['name']}."
                ),
            )
        )
    for p in world.products:
        passages.append(
            (
                p["id"],
                "product",
                (
                    f"The {p['name']} is made by {p['maker']['name']}. It comes in a "
                    f"{p['colour']} case and weighs {p['grams']} grams."
                ),
            )
        )
    for person in world.people:
        passages.append(
            (
                person["id"],
                "person",
                (
                    f"{person['name']} is a {person['profession']} who was born in "
                    f"{person['born_in']['name']}."
                ),
            )
        )
    for f in world.festivals:
        passages.append(
            (
                f["id"],
                "festival",
                (
                    f"The {f['name']} takes place every {f['month']} in {f['town']['name']}; "
                    f"visitors come for its {f['attraction']}."
                ),
            )
        )
    return passages


def atlas_passages() -> list[dict[str, Any]]:
    """The 300 passages: ``{"id", "text", "metadata": {"kind": ...}}`` (always the same)."""
    return [
        {"id": pid, "text": text, "metadata": {"kind": kind}}
        for pid, kind, text in _passage_texts(_world())
    ]


def _question(
    qid: str, text: str, answer: str, gold: list[str], also: list[str] | None = None
) -> dict[str, Any]:
    return {
        "id": qid,
        "question": text,
        "answer": answer,
        "answers": [answer, *(also or [])],
        "gold_ids": gold,
        "hops": len(gold),
    }


def _plain_questions(world: _World) -> list[dict[str, Any]]:
    questions = []
    for t in world.towns:
        questions.append(
            _question(
                f"q-{t['id']}-export",
                f"What is the chief export of {t['name']}?",
                t["export"],
                [t["id"]],
            )
        )
        questions.append(
            _question(
                f"q-{t['id']}-river",
                f"On which river is {t['name']}?",
                t["river"],
                [t["id"]],
                [f"{t['river']} river", f"the {t['river']} river"],
            )
        )
    for c in world.companies:
        questions.append(
            _question(
                f"q-{c['id']}-year",
                f"In which year was {c['name']} founded?",
                str(c["founded"]),
                [c["id"]],
            )
        )
    for p in world.products:
        questions.append(
            _question(
                f"q-{p['id']}-colour",
                f"What colour is the case of the {p['name']}?",
                p["colour"],
                [p["id"]],
            )
        )
        questions.append(
            _question(
                f"q-{p['id']}-founder",
                f"Who founded the company that makes the {p['name']}?",
                p["maker"]["founder"]["name"],
                [p["id"], p["maker"]["id"]],
            )
        )
        questions.append(
            _question(
                f"q-{p['id']}-hq",
                f"In which town are the headquarters of the maker of the {p['name']}?",
                p["maker"]["town"]["name"],
                [p["id"], p["maker"]["id"]],
            )
        )
    for person in world.people:
        questions.append(
            _question(
                f"q-{person['id']}-job",
                f"What is the profession of {person['name']}?",
                person["profession"],
                [person["id"]],
            )
        )
        questions.append(
            _question(
                f"q-{person['id']}-river",
                f"On which river is the town where {person['name']} was born?",
                person["born_in"]["river"],
                [person["id"], person["born_in"]["id"]],
                [f"{person['born_in']['river']} river", f"the {person['born_in']['river']} river"],
            )
        )
    for f in world.festivals:
        questions.append(
            _question(
                f"q-{f['id']}-month",
                f"In which month does the {f['name']} take place?",
                f["month"],
                [f["id"]],
            )
        )
    return questions


def _aside(rng: random.Random, world: _World, gold: list[str]) -> str:
    template = rng.choice(_ASIDES)

    def pick(items: list[dict[str, Any]]) -> dict[str, Any]:
        while True:
            item = rng.choice(items)
            if item["id"] not in gold:
                return item

    return template.format(
        town=pick(world.towns)["name"],
        company=pick(world.companies)["name"],
        person=pick(world.people)["name"],
        festival=pick(world.festivals)["name"],
        product=pick(world.products)["name"],
    )


def atlas_questions(*, aside_share: float = 0.75) -> list[dict[str, Any]]:
    """Every question (about 540), in a fixed shuffled order.

    Args:
        aside_share: the share of questions that start with an aside naming another
            entity (0: plain questions only).
    """
    if not 0 <= aside_share <= 1:
        raise ValueError(f"aside_share must be in [0, 1], got {aside_share}")
    world = _world()
    rng = random.Random("gepetto-atlas/questions")
    questions = _plain_questions(world)
    for question in questions:
        if rng.random() < aside_share:
            question["question"] = (
                f"{_aside(rng, world, question['gold_ids'])} {question['question']}"
            )
    rng.shuffle(questions)
    return questions


def atlas_splits(
    train: int = 40, val: int = 40, test: int = 80, *, aside_share: float = 0.75
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Disjoint train, validation and test questions (the first ones of the fixed order).

    Raises:
        ValueError: more questions asked than there are.
    """
    questions = atlas_questions(aside_share=aside_share)
    if min(train, val, test) < 0 or train + val + test > len(questions):
        raise ValueError(
            f"train + val + test must be at most {len(questions)} (non-negative), got "
            f"{train} + {val} + {test}"
        )
    return (
        questions[:train],
        questions[train : train + val],
        questions[train + val : train + val + test],
    )

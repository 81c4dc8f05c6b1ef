"""The shipped Atlas corpus: deterministic, consistent, and answerable from its passages."""

from __future__ import annotations

from gepetto.datasets.atlas import atlas_passages, atlas_questions, atlas_splits


def test_atlas_is_deterministic_and_its_ids_are_unique() -> None:
    passages = atlas_passages()
    assert len(passages) == 300 and passages == atlas_passages()
    assert len({p["id"] for p in passages}) == 300
    questions = atlas_questions()
    assert questions == atlas_questions() and len({q["id"] for q in questions}) == len(questions)


def test_every_answer_is_in_its_gold_passages() -> None:
    texts = {p["id"]: p["text"] for p in atlas_passages()}
    for question in atlas_questions():
        assert question["gold_ids"] and all(i in texts for i in question["gold_ids"])
        assert question["hops"] == len(question["gold_ids"]) in (1, 2)
        gold_text = " ".join(texts[i] for i in question["gold_ids"])
        assert question["answer"] in gold_text, question
        assert question["answer"] in question["answers"]


def test_two_hop_questions_need_both_passages() -> None:
    texts = {p["id"]: p["text"] for p in atlas_passages()}
    two_hop = [q for q in atlas_questions() if q["hops"] == 2]
    assert len(two_hop) >= 100
    for question in two_hop:
        first, second = question["gold_ids"]
        assert question["answer"] not in texts[first]  # the first passage leads to the second
        assert question["answer"] in texts[second]


def test_splits_are_disjoint_and_asides_can_be_turned_off() -> None:
    train, val, test = atlas_splits(30, 20, 50)
    ids = [q["id"] for q in train + val + test]
    assert (len(train), len(val), len(test)) == (30, 20, 50) and len(set(ids)) == 100
    plain = {q["id"]: q["question"] for q in atlas_questions(aside_share=0)}
    assert all(text.count("?") == 1 and "cousin" not in text for text in plain.values())
    with_asides = atlas_questions()
    share = sum(q["question"] != plain[q["id"]] for q in with_asides) / len(with_asides)
    assert 0.6 < share < 0.9
    assert all(q["question"].endswith(plain[q["id"]]) for q in with_asides)

"""Result: gepa-compatible attributes, JSON round-trip, display."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.result import Result
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, ScriptedLM, keyword_dataset


@pytest.fixture(scope="module")
def result() -> gepetto.Result:
    words = ["alpha", "beta", "gamma", "delta"]
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(words),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=80,
        display_progress_bar=False,
    )


def test_json_round_trip(result: gepetto.Result) -> None:
    text = result.to_json()
    assert json.loads(text)["schema_version"] == 1
    again = gepetto.Result.from_json(text)
    assert again == result
    assert again.per_val_instance_best_candidates == result.per_val_instance_best_candidates


def test_newer_schema_is_refused(result: gepetto.Result) -> None:
    data = result.to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="upgrade gepetto"):
        gepetto.Result.from_dict(data)


def test_views(result: gepetto.Result) -> None:
    assert result.best_candidate == result.candidates[result.best_idx]
    assert result.best_score == max(result.val_aggregate_scores)
    assert result.lineage(result.best_idx)[0] == 0
    assert result.best_idx in result.pareto_front
    assert result.discovery_eval_counts == sorted(result.discovery_eval_counts)
    assert result.num_val_instances == 4


def test_repr_and_rich(result: gepetto.Result) -> None:
    text = repr(result)
    assert "best candidate" in text and "metric calls" in text
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=120, force_terminal=False).print(result)
    rendered = buffer.getvalue()
    assert "gepetto result" in rendered
    assert f"{result.best_score:.4f}" in rendered


class RefusedKey(KeywordAdapter):
    """The user's system answers every call with a 401, as a revoked API key does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def evaluate(self, batch: Any, candidate: dict[str, str], capture_traces: bool = False) -> Any:
        from gepetto.lm.errors import LMAuthError

        self.calls += 1
        raise LMAuthError("401: invalid API key", provider="openai", status=401)


@pytest.fixture(scope="module")
def empty_result() -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta"]),
        adapter=RefusedKey(),
        reflection_lm=ScriptedLM([]),
        max_metric_calls=20,
        display_progress_bar=False,
    )


def test_a_run_stopped_before_the_seed_was_scored_has_a_readable_result(
    empty_result: gepetto.Result,
) -> None:
    result = empty_result
    assert result.num_candidates == 0
    assert "401" in (result.stop_reason or "")
    # The README's own line works: the seed's texts (unscored) and no score.
    assert result.best_candidate == {"instructions": "Answer."}
    assert result.best_score is None
    assert result.seed_score is None
    assert result.best_weighted_score is None
    assert result.best_test_score is None
    assert result.lineage(result.best_idx) == []
    lines = result.summary_lines()
    assert lines[0].startswith("no candidate was scored")
    assert "401" in repr(result)
    buffer = io.StringIO()
    from rich.console import Console

    Console(file=buffer, width=120, force_terminal=False).print(result)
    assert "gepetto result" in buffer.getvalue()


def test_an_empty_result_round_trips_through_standard_json(empty_result: gepetto.Result) -> None:
    text = empty_result.to_json()
    data = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))
    assert data["seed_candidate"] == {"instructions": "Answer."}
    again = gepetto.Result.from_json(text)
    assert again == empty_result
    assert again.best_candidate == {"instructions": "Answer."}
    assert again.best_score is None


def test_to_json_never_writes_non_standard_numbers() -> None:
    broken = dataclasses.replace(gepetto.Result.example(), val_aggregate_scores=[0.25, math.inf])
    with pytest.raises(ValueError, match="not JSON compliant"):
        broken.to_json(allow_nan=True)  # the caller cannot ask for Infinity either


# ----- gepa's GEPAResult fields and the lineage tree ----------------------------------------


def _run(**options: Any) -> Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(["alpha", "beta", "gamma", "delta"]),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,
        display_progress_bar=False,
        **options,
    )


def test_gepa_fields_are_filled_and_survive_json(tmp_path: Path) -> None:
    result = _run(run_dir=tmp_path)
    assert result.run_dir == str(tmp_path)
    assert result.num_full_val_evals == result.num_candidates  # full_eval: every one
    assert result.best_outputs_valset is not None
    assert result.objective_pareto_front is None  # KeywordAdapter has no objectives
    assert result.val_aggregate_subscores is None
    again = Result.from_json(result.to_json())
    assert again == result
    assert again.best_outputs_valset == result.best_outputs_valset
    assert isinstance(next(iter(again.best_outputs_valset.values()))[0], tuple)  # type: ignore[union-attr]


def test_objective_pareto_front_is_the_best_mean_per_objective() -> None:
    class TwoObjectives:
        def evaluate(
            self, batch: Any, candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            text = candidate["instructions"]
            scores = [1.0 if example["needs"] in text.split() else 0.0 for example in batch]
            objectives = [{"hit": s, "short": 1.0 / len(text)} for s in scores]
            return gepetto.EvaluationBatch(
                [text] * len(batch),
                scores,
                [{"s": s} for s in scores] if capture_traces else None,
                objectives,
            )

        def make_reflective_dataset(self, candidate: Any, eval_batch: Any, components: Any) -> Any:
            return {c: [{"Feedback": "add the missing words"}] for c in components}

    result = gepetto.optimize(
        {"instructions": "Answer."},
        [{"needs": "alpha"}, {"needs": "beta"}],
        adapter=TwoObjectives(),
        reflection_lm=ScriptedLM(
            ["```\nAnswer. alpha\n```", "```\nAnswer. alpha beta\n```"], repeat_last=True
        ),
        max_metric_calls=20,
        display_progress_bar=False,
    )
    assert result.objective_scores is not None
    front = result.objective_pareto_front
    assert front is not None and set(front) == {"hit", "short"}
    for name in front:
        assert front[name] == max(scores[name] for scores in result.objective_scores)
    assert result.val_aggregate_subscores == result.objective_scores
    assert Result.from_json(result.to_json()).objective_pareto_front == front


def test_a_result_written_before_these_fields_reads_with_defaults() -> None:
    data = Result.example().to_dict()
    for key in ("best_outputs_valset", "num_full_val_evals", "objective_pareto_front", "run_dir"):
        del data[key]
    old = Result.from_dict(data)
    assert old.best_outputs_valset is None and old.run_dir is None
    assert old.num_full_val_evals is None and old.objective_pareto_front is None


def test_candidate_tree_dot_has_a_node_per_candidate_and_an_edge_per_parent() -> None:
    result = Result.example()
    assert result.candidate_tree_dot() == result.lineage_dot()
    dot = result.candidate_tree_dot().splitlines()
    assert dot[0] == "digraph G {" and dot[-1] == "}"
    assert '    0 [label="0\\n(0.25)", fillcolor=lightgray, tooltip=" "];' in dot
    assert '    1 [label="1\\n(0.75)", fillcolor=cyan, tooltip=" "];' in dot
    assert "    0 -> 1;" in dot


def test_lineage_html_is_self_contained(tmp_path: Path) -> None:
    import html.parser

    result = _run()
    path = result.write_lineage_html(tmp_path / "tree.html")
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    for needle in ("http://", "https://", "src=", "<link", "import("):
        # The SVG namespace is an identifier, not a fetch.
        assert needle not in page.replace('xmlns="http://www.w3.org/2000/svg"', ""), needle

    class Collect(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.ids: list[str] = []
            self.lines = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            if tag == "g" and found.get("class") == "node":
                self.ids.append(str(found["id"]))
            if tag == "line":
                self.lines += 1

    parser = Collect()
    parser.feed(page)
    assert parser.ids == [f"node-{i}" for i in range(result.num_candidates)]
    assert parser.lines == sum(len(p) for p in result.parents)
    assert result.best_candidate["instructions"] in page
    # gepa's page holds the DOT text, the nodes' data as JSON and a tooltip element too.
    assert html.escape(result.candidate_tree_dot(), quote=False) in page
    data = page.split('<script type="application/json" id="lineage-data">')[1].split("</script>")[0]
    nodes = json.loads(data)
    assert [n["score"] for n in nodes] == result.val_aggregate_scores
    assert nodes[result.best_idx]["components"] == result.best_candidate
    assert 'id="tooltip"' in page and "showTooltip" in page


def test_lineage_html_escapes_texts_inside_its_scripts() -> None:
    page = Result(
        candidates=[{"p": "</script><b>x</b>"}],
        parents=[[]],
        val_aggregate_scores=[1.0],
        val_subscores=[{0: 1.0}],
        per_val_instance_best_candidates={0: {0}},
        discovery_eval_counts=[0],
    ).candidate_tree_html()
    assert "</script><b>" not in page and page.count("</script>") == 2


# ----- gepa's GEPAResult: built by hand, read from gepa's to_dict() ------------------------


def test_gepa_result_is_result_and_built_with_gepa_arguments_takes_the_first_best() -> None:
    assert gepetto.GEPAResult is Result
    result = gepetto.GEPAResult(
        candidates=[{"p": "a"}, {"p": "b"}, {"p": "c"}],
        parents=[[None], [0], [0]],  # type: ignore[list-item]
        val_aggregate_scores=[0.5, 0.7, 0.7],
        val_subscores=[{}, {}, {}],
        per_val_instance_best_candidates={0: {1, 2}},
        discovery_eval_counts=[0, 5, 5],
    )
    assert result.best_idx == 1 and result.best_candidate == {"p": "b"}
    assert result.total_metric_calls == 0
    assert "0 -> 1;" in result.candidate_tree_dot()


def test_from_dict_reads_gepa_v0_list_layout() -> None:
    payload = {
        "candidates": [{"p": "w=0"}, {"p": "w=1"}],
        "parents": [[None], [0]],
        "val_aggregate_scores": [0.15, 0.35],
        "val_subscores": [[0.1, 0.2], [0.3, 0.4]],
        "per_val_instance_best_candidates": [[0], [1]],
        "discovery_eval_counts": [0, 2],
        "best_outputs_valset": [[(0, "x")], [(1, "y")]],
        "total_metric_calls": 5,
        "seed": 42,
    }
    result = Result.from_dict(payload)
    assert result.val_subscores == [{0: 0.1, 1: 0.2}, {0: 0.3, 1: 0.4}]
    assert result.per_val_instance_best_candidates == {0: {0}, 1: {1}}
    assert result.best_outputs_valset == {0: [(0, "x")], 1: [(1, "y")]}
    assert result.parents == [[], [0]] and result.best_idx == 1
    assert result.total_metric_calls == 5 and result.seed == 42
    assert result.to_dict()["validation_schema_version"] == 2


def test_from_dict_reads_gepa_v2_layout_after_json() -> None:
    payload = {
        "candidates": [{"p": "a"}, {"p": "b"}],
        "parents": [[None], [0]],
        "val_aggregate_scores": [0.2, 0.6],
        "val_subscores": [{"0": 0.2, "ex": 0.2}, {"0": 0.6, "ex": 0.6}],
        "per_val_instance_best_candidates": {"0": [1], "ex": [1]},
        "val_aggregate_subscores": [{"acc": 0.2}, {"acc": 0.6}],
        "per_objective_best_candidates": {"acc": [1]},
        "objective_pareto_front": {"acc": 0.6},
        "discovery_eval_counts": [0, 3],
        "total_metric_calls": None,
        "validation_schema_version": 2,
    }
    result = Result.from_dict(json.loads(json.dumps(payload)))
    assert result.val_subscores[1] == {0: 0.6, "ex": 0.6}
    assert result.per_val_instance_best_candidates == {0: {1}, "ex": {1}}
    assert result.val_aggregate_subscores == [{"acc": 0.2}, {"acc": 0.6}]
    assert result.per_objective_best_candidates == {"acc": {1}}
    assert result.total_metric_calls == 0


def test_from_dict_refuses_a_newer_gepa_layout() -> None:
    with pytest.raises(ValueError, match="validation_schema_version 3"):
        Result.from_dict({"candidates": [], "validation_schema_version": 3})


def test_gepa_result_is_subscriptable_like_gepas_generic() -> None:
    assert gepetto.GEPAResult[Any, int].__origin__ is Result

"""gepa 0.1.4's 46 ``optimize`` keywords: accepted, in gepa's order, each with its meaning.

The tracking keywords that attach W&B and MLflow are tested with those trackers
(tests/observe/test_wandb.py, tests/observe/test_mlflow.py); ``max_reflection_cost`` with a
priced client against a local server (tests/lm/test_cost_cap.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import gepetto
from gepetto.errors import ConfigError
from gepetto.testing import FeedbackFollowingLM, KeywordAdapter, keyword_dataset

WORDS = ["alpha", "beta", "gamma", "delta"]
SEED = {"instructions": "Answer."}

# gepa/api.py:46, in order (docs/dev/gepa-0.1.4-api.md §2.1).
GEPA_PARAMETERS = [
    "seed_candidate",
    "trainset",
    "valset",
    "adapter",
    "task_lm",
    "evaluator",
    "reflection_lm",
    "reflection_lm_kwargs",
    "candidate_selection_strategy",
    "frontier_type",
    "skip_perfect_score",
    "batch_sampler",
    "reflection_minibatch_size",
    "perfect_score",
    "reflection_prompt_template",
    "custom_candidate_proposer",
    "module_selector",
    "use_merge",
    "max_merge_invocations",
    "merge_val_overlap_floor",
    "max_metric_calls",
    "max_reflection_cost",
    "stop_callbacks",
    "logger",
    "run_dir",
    "callbacks",
    "use_wandb",
    "wandb_api_key",
    "wandb_init_kwargs",
    "wandb_attach_existing",
    "use_mlflow",
    "mlflow_tracking_uri",
    "mlflow_experiment_name",
    "mlflow_attach_existing",
    "tracking_key_prefix",
    "track_best_outputs",
    "display_progress_bar",
    "use_cloudpickle",
    "cache_evaluation",
    "seed",
    "raise_on_exception",
    "val_evaluation_policy",
    "acceptance_criterion",
    "sampling_strategy",
    "selection_strategy",
    "reflection_strategy",
]


def run(**options: Any) -> gepetto.Result:
    options.setdefault("max_metric_calls", 40)
    return gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        display_progress_bar=False,
        **options,
    )


@pytest.mark.parametrize("entry", [gepetto.optimize, gepetto.aoptimize])
def test_all_46_gepa_parameters_are_positional_in_gepas_order(entry: Any) -> None:
    parameters = list(inspect.signature(entry).parameters.values())
    positional = [p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == GEPA_PARAMETERS


def test_every_gepa_keyword_is_a_setting_of_one_group() -> None:
    from gepetto.engine.options import setting_fields

    fields = setting_fields()
    inputs = {"seed_candidate", "trainset", "valset", "adapter", "task_lm", "evaluator"}
    assert set(GEPA_PARAMETERS) - inputs - {"use_merge"} <= set(fields)
    tracking = {name for name, (group, _) in fields.items() if group == "tracking"}
    assert tracking == {
        "logger",
        "use_wandb",
        "wandb_api_key",
        "wandb_init_kwargs",
        "wandb_attach_existing",
        "use_mlflow",
        "mlflow_tracking_uri",
        "mlflow_experiment_name",
        "mlflow_attach_existing",
        "tracking_key_prefix",
        "wandb_step_metric",  # optimize_anything's TrackingConfig only, in gepa
    }


def test_gepa_defaults_are_accepted_positionally() -> None:
    """A call that spells out gepa's defaults for the 25 new positions runs unchanged."""
    defaults = [None, None, None, None, None, False, None, None, False, False, None, None]
    defaults += [False, "", True, None, False, True, 0, True, None, "strict_improvement"]
    defaults += [None, None, None]
    args = [SEED, keyword_dataset(WORDS), None, KeywordAdapter(), None, None]
    args += [FeedbackFollowingLM(), None, "pareto", "instance", True, "epoch_shuffled", None]
    args += [1.0, None, None, "round_robin", False, 5, 5, 40]
    result = gepetto.optimize(*args, *defaults)
    assert result.best_score is not None and result.best_score > result.seed_score  # type: ignore[operator]


class Lines:
    """gepa's LoggerProtocol."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_logger_receives_the_runs_log_lines() -> None:
    lines = Lines()
    result = run(logger=lines)
    assert lines.lines[0].startswith("run started: components ['instructions']")
    assert any(line.startswith("candidate 1 added") for line in lines.lines)
    assert lines.lines[-1].startswith(f"run finished ({result.stop_reason})")


def test_logger_must_have_a_log_method() -> None:
    with pytest.raises(ConfigError, match="log\\(message: str\\)"):
        run(logger=print)


def test_a_failing_logger_does_not_change_the_run() -> None:
    class Broken:
        def log(self, message: str) -> None:
            raise RuntimeError("disk full")

    assert run(logger=Broken()).to_dict() == run().to_dict()


def test_use_cloudpickle_is_accepted_and_changes_nothing(tmp_path: Path) -> None:
    plain = run(run_dir=tmp_path / "a")
    pickled = run(run_dir=tmp_path / "b", use_cloudpickle=True)
    assert pickled.candidates == plain.candidates
    assert pickled.val_aggregate_scores == plain.val_aggregate_scores
    assert not list((tmp_path / "b").glob("*.bin")) and not list((tmp_path / "b").glob("*.pkl"))


@pytest.mark.parametrize(
    ("name", "supported"),
    [
        ("sampling_strategy", "PxNSampling(p, n)"),
        ("selection_strategy", "TopKImprovements(k)"),
    ],
)
def test_custom_proposal_strategies_are_refused_naming_the_supported_ones(
    name: str, supported: str
) -> None:
    class Strategy:  # a user-written gepa strategy would read gepa's GEPAState
        pass

    with pytest.raises(ConfigError) as caught:
        run(**{name: Strategy()})
    assert f"{name}=Strategy(...)" in str(caught.value)
    assert supported in str(caught.value)
    run(**{name: None})  # gepa's default is accepted


def test_track_best_outputs_keeps_the_front_outputs_per_validation_example() -> None:
    result = run()
    best = result.best_outputs_valset
    assert best is not None
    assert set(best) == set(result.per_val_instance_best_candidates)
    for example_id, pairs in best.items():
        front = result.per_val_instance_best_candidates[example_id]
        assert [candidate for candidate, _ in pairs] == sorted(front)
        for candidate, output in pairs:
            # KeywordAdapter's output is the component's text.
            assert output == result.candidates[candidate]["instructions"]
    assert run(track_best_outputs=False).best_outputs_valset is None


def test_best_outputs_survive_a_resume(tmp_path: Path) -> None:
    first = run(run_dir=tmp_path, max_metric_calls=20)
    assert first.best_outputs_valset
    resumed = run(run_dir=tmp_path, max_metric_calls=40)
    assert resumed.best_outputs_valset is not None
    for example_id, pairs in first.best_outputs_valset.items():
        for pair in pairs:
            if pair[0] in resumed.per_val_instance_best_candidates[example_id]:
                assert pair in resumed.best_outputs_valset[example_id]
    assert resumed.run_dir == str(tmp_path)


def test_raise_on_exception_is_a_bool() -> None:
    with pytest.raises(ConfigError, match="raise_on_exception"):
        run(raise_on_exception="yes")


def test_max_reflection_cost_needs_a_priced_client() -> None:
    with pytest.raises(ConfigError, match="max_reflection_cost") as caught:
        gepetto.optimize(
            SEED,
            keyword_dataset(WORDS),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_reflection_cost=1.0,
            display_progress_bar=False,
        )
    assert "FeedbackFollowingLM" in str(caught.value)


def test_max_reflection_cost_and_max_cost_usd_are_not_both_given() -> None:
    with pytest.raises(ConfigError, match="give one"):
        run(max_reflection_cost=1.0, max_cost_usd=2.0)


class Loader:
    """gepa's DataLoader protocol, with string ids and a fetch counter."""

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items
        self.fetches: list[Sequence[str]] = []

    def all_ids(self) -> list[str]:
        return list(self.items)

    def fetch(self, ids: Sequence[str]) -> list[Any]:
        self.fetches.append(list(ids))
        return [self.items[i] for i in ids]

    def __len__(self) -> int:
        return len(self.items)


def test_a_gepa_data_loader_is_read_once_in_id_order() -> None:
    loader = Loader({f"ex-{w}": {"needs": w} for w in WORDS})
    from_loader = gepetto.optimize(
        SEED,
        loader,
        loader,
        adapter=KeywordAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=40,
        display_progress_bar=False,
    )
    assert loader.fetches == [[f"ex-{w}" for w in WORDS]] * 2  # trainset, valset
    from_list = run()
    assert from_loader.candidates == from_list.candidates
    assert from_loader.val_aggregate_scores == from_list.val_aggregate_scores


def test_a_loaders_ids_are_part_of_the_runs_fingerprint(tmp_path: Path) -> None:
    examples = {f"ex-{w}": {"needs": w} for w in WORDS}
    run_with = {"adapter": KeywordAdapter(), "reflection_lm": FeedbackFollowingLM()}
    gepetto.optimize(SEED, Loader(examples), max_metric_calls=20, run_dir=tmp_path, **run_with)
    # Same examples, same ids: the run resumes.
    gepetto.optimize(SEED, Loader(examples), max_metric_calls=30, run_dir=tmp_path, **run_with)
    renamed = {f"other-{i}": example for i, example in examples.items()}
    with pytest.raises(ConfigError, match="trainset"):
        gepetto.optimize(SEED, Loader(renamed), max_metric_calls=40, run_dir=tmp_path, **run_with)


def test_a_loader_example_without_a_stable_form_is_identified_by_its_id(tmp_path: Path) -> None:
    class Opaque:
        def __init__(self, word: str) -> None:
            self.word = word

    class OpaqueAdapter(KeywordAdapter):
        def evaluate(
            self, batch: list[Any], candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            return super().evaluate([{"needs": e.word} for e in batch], candidate, capture_traces)

    loader = Loader({w: Opaque(w) for w in WORDS})
    result = gepetto.optimize(
        SEED,
        loader,
        adapter=OpaqueAdapter(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=20,
        run_dir=tmp_path,
        display_progress_bar=False,
    )
    assert result.num_candidates >= 1
    with pytest.raises(ConfigError, match="a gepa DataLoader, with all_ids"):
        gepetto.optimize(
            SEED,
            object(),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=20,
        )


def test_a_loader_whose_fetch_loses_examples_is_refused() -> None:
    class Short(Loader):
        def fetch(self, ids: Sequence[str]) -> list[Any]:
            return super().fetch(ids)[:-1]

    with pytest.raises(ConfigError, match="one example per id"):
        gepetto.optimize(
            SEED,
            Short({w: {"needs": w} for w in WORDS}),
            adapter=KeywordAdapter(),
            reflection_lm=FeedbackFollowingLM(),
            max_metric_calls=20,
        )


class ConversationStrategy:
    """gepa's ReflectionLM: reflect -> (proposal, next strategy); counts its turns."""

    def __init__(self, turn: int = 0, seen: list[int] | None = None) -> None:
        self.turn = turn
        self.seen = seen if seen is not None else []

    def reflect(self, candidate: dict[str, str], dataset: Any, components: list[str]) -> Any:
        self.seen.append(self.turn)
        word = WORDS[self.turn % len(WORDS)]
        proposal = types.SimpleNamespace(
            new_texts={c: f"{candidate[c]} {word}" for c in components}
        )
        return proposal, ConversationStrategy(self.turn + 1, self.seen)


def test_reflection_strategy_proposes_and_is_replaced_by_the_one_it_returns() -> None:
    strategy = ConversationStrategy()
    result = gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=KeywordAdapter(),
        reflection_strategy=strategy,
        max_metric_calls=60,
        display_progress_bar=False,
    )
    assert strategy.seen == list(range(len(strategy.seen)))  # each turn by the next strategy
    assert len(strategy.seen) >= 2
    assert result.best_score == 1.0


def test_reflection_strategy_conflicts_and_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="give one of the two"):
        run(reflection_strategy=ConversationStrategy(), custom_candidate_proposer=lambda *a: {})
    with pytest.raises(ConfigError, match="reflect\\(candidate"):
        run(reflection_strategy=object())


def test_best_outputs_keep_json_outputs_example_by_example() -> None:
    class Mixed(KeywordAdapter):
        """The output of 'alpha' is not JSON; 'beta' always raises."""

        def evaluate(
            self, batch: Any, candidate: dict[str, str], capture_traces: bool = False
        ) -> Any:
            if any(example["needs"] == "beta" for example in batch):
                raise ValueError("beta cannot be scored")
            result = super().evaluate(batch, candidate, capture_traces)
            result.outputs = [
                object() if example["needs"] == "alpha" else output
                for example, output in zip(batch, result.outputs, strict=True)
            ]
            return result

    result = gepetto.optimize(
        SEED,
        keyword_dataset(WORDS),
        adapter=Mixed(),
        reflection_lm=FeedbackFollowingLM(),
        max_metric_calls=30,
        display_progress_bar=False,
        raise_on_exception=False,
    )
    best = result.best_outputs_valset
    assert best is not None
    assert 0 not in best and 1 not in best  # alpha: not JSON; beta: raised
    assert best[2] and best[3]


# Every field of gepa 0.1.4's config classes (gepa/optimize_anything.py), in gepa's order.
GEPA_CONFIG_FIELDS: dict[str, tuple[str, ...]] = {
    "EngineConfig": (
        "run_dir",
        "seed",
        "display_progress_bar",
        "raise_on_exception",
        "use_cloudpickle",
        "track_best_outputs",
        "max_metric_calls",
        "max_candidate_proposals",
        "max_reflection_cost",
        "val_evaluation_policy",
        "candidate_selection_strategy",
        "frontier_type",
        "acceptance_criterion",
        "parallel",
        "max_workers",
        "cache_evaluation",
        "cache_evaluation_storage",
        "best_example_evals_k",
        "capture_stdio",
        "sampling_strategy",
        "selection_strategy",
    ),
    "ReflectionConfig": (
        "skip_perfect_score",
        "perfect_score",
        "reflection_strategy",
        "batch_sampler",
        "reflection_minibatch_size",
        "module_selector",
        "reflection_lm",
        "reflection_lm_kwargs",
        "reflection_prompt_template",
        "custom_candidate_proposer",
    ),
    "MergeConfig": (
        "max_merge_invocations",
        "merge_val_overlap_floor",
    ),
    "RefinerConfig": (
        "refiner_lm",
        "max_refinements",
    ),
    "TrackingConfig": (
        "logger",
        "use_wandb",
        "wandb_api_key",
        "wandb_init_kwargs",
        "wandb_attach_existing",
        "wandb_step_metric",
        "use_mlflow",
        "mlflow_tracking_uri",
        "mlflow_experiment_name",
        "mlflow_attach_existing",
        "key_prefix",
    ),
    "GEPAConfig": (
        "engine",
        "reflection",
        "tracking",
        "merge",
        "refiner",
        "stop_callbacks",
        "callbacks",
    ),
}


@pytest.mark.parametrize("group", sorted(GEPA_CONFIG_FIELDS))
def test_every_field_of_gepas_config_classes_exists(group: str) -> None:
    ours = {field.name for field in dataclasses.fields(getattr(gepetto, group))}
    missing = [name for name in GEPA_CONFIG_FIELDS[group] if name not in ours]
    assert not missing, f"gepetto.{group} lacks gepa's {missing}"

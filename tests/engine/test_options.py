"""The option groups: each setting declared once, checked when its group is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import gepetto
from gepetto import EngineConfig, GEPAConfig, MergeConfig, ReflectionConfig, TrackingConfig
from gepetto.engine.options import RESUMABLE, describe, setting_fields
from gepetto.testing import KeywordAdapter, ScriptedLM, keyword_dataset


def test_groups_are_frozen_and_check_themselves() -> None:
    engine = EngineConfig(parallel_proposals=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        engine.parallel_proposals = 3  # type: ignore[misc]
    with pytest.raises(gepetto.ConfigError, match="reflection_samples"):
        ReflectionConfig(reflection_samples=0)
    with pytest.raises(gepetto.ConfigError, match="frontier_type"):
        EngineConfig(frontier_type="everything")
    with pytest.raises(gepetto.ConfigError, match="max_merge_invocations"):
        MergeConfig(max_merge_invocations=-1)


def test_a_group_may_be_given_as_a_dict_as_in_gepa() -> None:
    config = GEPAConfig(engine={"seed": 4}, merge={"max_merge_invocations": 2})  # type: ignore[arg-type]
    assert config.engine.seed == 4
    assert config.merge == MergeConfig(max_merge_invocations=2)
    with pytest.raises(gepetto.ConfigError, match=r"GEPAConfig\.reflection must be"):
        GEPAConfig(reflection=3)  # type: ignore[arg-type]


def test_flat_options_apply_over_a_config_and_a_setting_given_twice_is_refused() -> None:
    base = GEPAConfig(engine=EngineConfig(max_metric_calls=50, seed=1))
    merged = GEPAConfig.from_options(base, parallel_proposals=3, use_merge=True)
    assert (merged.engine.seed, merged.engine.parallel_proposals) == (1, 3)
    assert merged.merge == MergeConfig()
    assert GEPAConfig.from_options(base, seed=1).engine.seed == 1  # the same value: fine
    with pytest.raises(gepetto.ConfigError, match="seed is given twice"):
        GEPAConfig.from_options(base, seed=2)
    with pytest.raises(gepetto.ConfigError, match="unknown option"):
        GEPAConfig.from_options(base, parallel_proposal=2)


def test_every_setting_says_once_whether_a_resume_may_change_it() -> None:
    recorded = set(describe(GEPAConfig()))
    for name in setting_fields():
        assert name in RESUMABLE or name in recorded or name == "objective_weights", name


def test_optimize_takes_the_groups(words: list[str]) -> None:
    data = keyword_dataset(words[:3])
    config = GEPAConfig(
        engine=EngineConfig(max_metric_calls=40, seed=3),
        reflection=ReflectionConfig(reflection_history=0, reflection_retries=0),
    )
    result = gepetto.optimize(
        {"instructions": "Answer."},
        data,
        adapter=KeywordAdapter(),
        reflection_lm=ScriptedLM(["```\nAnswer alpha beta gamma\n```"]),
        config=config,
    )
    assert result.total_metric_calls <= 40
    assert result.seed == 3
    assert result.best_score == 1.0


# ----- gepa 0.1.4's max_candidate_proposals, cache_evaluation_storage, wandb_step_metric ----


def keyword_run(words: list[str], **options: object) -> gepetto.Result:
    return gepetto.optimize(
        {"instructions": "Answer."},
        keyword_dataset(words[:4]),
        adapter=KeywordAdapter(),
        reflection_lm=ScriptedLM(["```\nAnswer alpha\n```"] * 20),
        display_progress_bar=False,
        **options,  # type: ignore[arg-type]
    )


def test_gepas_three_newer_fields_are_accepted_and_checked() -> None:
    engine = EngineConfig(max_candidate_proposals=3, cache_evaluation_storage="memory")
    assert (engine.max_candidate_proposals, engine.cache_evaluation_storage) == (3, "memory")
    assert EngineConfig().cache_evaluation_storage == "auto"
    assert TrackingConfig(wandb_step_metric="gepa/step").wandb_step_metric == "gepa/step"
    with pytest.raises(gepetto.ConfigError, match="max_candidate_proposals must be an int >= 1"):
        EngineConfig(max_candidate_proposals=0)
    with pytest.raises(ValueError, match="cache_evaluation_storage must be one of"):
        EngineConfig(cache_evaluation_storage="cloud")
    with pytest.raises(gepetto.ConfigError, match="wandb_step_metric must be a str"):
        TrackingConfig(wandb_step_metric=3)  # type: ignore[arg-type]
    # gepa's optimize() has none of them; gepetto's takes every setting flat.
    config = GEPAConfig.from_options(max_candidate_proposals=2, wandb_step_metric="s")
    assert (config.engine.max_candidate_proposals, config.tracking.wandb_step_metric) == (2, "s")
    assert "max_candidate_proposals" in RESUMABLE and "cache_evaluation_storage" in RESUMABLE


def test_max_candidate_proposals_stops_after_that_many_iterations(words: list[str]) -> None:
    result = keyword_run(words, max_candidate_proposals=2)
    assert result.num_iterations == 2
    assert result.stop_reason.startswith("MaxCandidateProposalsStopper fired: 2 iterations")
    # A stop condition in its own right: no max_metric_calls needed, and it adds to others.
    limited = keyword_run(words, max_metric_calls=200, max_candidate_proposals=1)
    assert limited.num_iterations == 1


def test_a_resume_may_raise_max_candidate_proposals(words: list[str], tmp_path: Path) -> None:
    first = keyword_run(words, max_candidate_proposals=1, run_dir=tmp_path)
    assert first.num_iterations == 1
    resumed = keyword_run(words, max_candidate_proposals=3, run_dir=tmp_path)
    assert resumed.num_iterations == 3
    assert resumed.candidates[: first.num_candidates] == first.candidates


def test_cache_evaluation_storage_keeps_gepas_checks(words: list[str], tmp_path: Path) -> None:
    disk = GEPAConfig(engine=EngineConfig(cache_evaluation_storage="disk"))
    with pytest.raises(ValueError, match=r"^cache_evaluation_storage='disk' requires run_dir"):
        keyword_run(words, max_metric_calls=20, config=disk)
    assert not list(tmp_path.iterdir())
    # With a run directory every value runs the same way: the journal keeps the evaluations.
    results = [
        keyword_run(
            words, max_metric_calls=20, cache_evaluation_storage=value, run_dir=tmp_path / value
        )
        for value in ("disk", "memory", "auto")
    ]
    assert len({str(r.candidates) for r in results}) == 1
    assert all((tmp_path / value / "journal.sqlite").exists() for value in ("disk", "memory"))
    with pytest.warns(UserWarning, match="is set but cache_evaluation=False"):
        keyword_run(
            words, max_metric_calls=20, cache_evaluation=False, cache_evaluation_storage="disk"
        )

"""The option groups: each setting declared once, checked when its group is built."""

from __future__ import annotations

import dataclasses

import pytest

import gepetto
from gepetto import EngineConfig, GEPAConfig, MergeConfig, ReflectionConfig
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

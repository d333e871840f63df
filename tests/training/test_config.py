"""The project config: strict keys, named errors, path resolution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from occam.config import ConfigError, load_config, parse_config
from tests.conftest import ROOT

MINIMAL: dict[str, Any] = {
    "project": "p",
    "data": {"path": "d.csv", "target": "y"},
    "goals": [{"metric": "roc_auc", "threshold": 0.7}],
}


def test_default_config_loads_and_resolves_paths() -> None:
    config = load_config(ROOT / "occam.yaml")
    assert config.data.path == ROOT / "data" / "flights.csv.gz"
    assert config.data.path.is_file()
    assert config.scoring == "roc_auc"


def test_misspelled_key_is_named_with_a_suggestion() -> None:
    raw = {**MINIMAL, "search": {"n_candidatez": 3}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert "`search.n_candidatez`: unknown key" in message
    assert "did you mean `n_candidates`?" in message


def test_bad_value_names_key_value_and_allowed() -> None:
    raw = {**MINIMAL, "goals": [{"metric": "auc", "threshold": 0.7}]}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "`goals.0.metric`" in str(err.value)
    assert "'roc_auc'" in str(err.value) and "got 'auc'" in str(err.value)


def test_missing_required_key_is_named() -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != "goals"}
    with pytest.raises(ConfigError, match=r"`goals`: required key is missing"):
        parse_config(raw)


def test_rule_baseline_needs_a_rule() -> None:
    with pytest.raises(ConfigError, match="strategy 'rule' needs a `rule:`"):
        parse_config({**MINIMAL, "baseline": {"strategy": "rule"}})


def test_duplicate_goal_metric_rejected() -> None:
    goals = [{"metric": "roc_auc", "threshold": 0.7}, {"metric": "roc_auc", "threshold": 0.8}]
    with pytest.raises(ConfigError, match="each metric may appear once"):
        parse_config({**MINIMAL, "goals": goals})


def test_not_a_mapping_and_not_yaml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listed)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


def test_labels_written_as_yaml_numbers_are_read_as_their_text() -> None:
    raw = yaml.safe_load(
        "project: p\n"
        "data: {path: d.csv, target: y}\n"
        "goals: [{metric: f1, threshold: 0.5}]\n"
        "goals_positive_label: 1\n"
        "labels: {unknown_values: [-1, 9.0, '?', true]}\n"
    )
    config = parse_config(raw)
    assert config.goals_positive_label == "1"
    assert config.labels.unknown_values == ["-1", "9", "?", "True"]


def test_a_label_that_is_no_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"`goals_positive_label`"):
        parse_config({**MINIMAL, "goals_positive_label": [1, 2]})


@pytest.mark.parametrize("key", ["numeric", "categorical"])
def test_a_feature_both_listed_and_excluded_is_an_error(key: str) -> None:
    raw = {**MINIMAL, "data": {**MINIMAL["data"], key: ["a", "b"], "exclude": ["b"]}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    message = str(err.value)
    assert f"`data.{key}`" in message and "`data.exclude`" in message and "['b']" in message


def test_a_feature_listed_as_numeric_and_categorical_is_an_error() -> None:
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "numeric": ["a"], "categorical": ["a"]}}
    with pytest.raises(ConfigError, match=r"both `data\.numeric` and `data\.categorical`"):
        parse_config(raw)


def test_a_human_threshold_needs_labellers() -> None:
    raw = {**MINIMAL, "goals": [{"metric": "accuracy", "threshold": "human"}]}
    with pytest.raises(ConfigError, match=r"labels\.annotators"):
        parse_config(raw)
    config = parse_config({**raw, "labels": {"annotators": ["a", "b", "c"]}})
    [goal] = config.goals
    assert goal.human is True and goal.threshold == 0.0


def test_time_format_is_one_of_the_named_forms() -> None:
    raw = {**MINIMAL, "data": {**MINIMAL["data"], "time_column": "t", "time_format": "epoch"}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "`data.time_format`" in str(err.value) and "'unix_s'" in str(err.value)

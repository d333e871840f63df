"""occam/: the bundle store's contract and the demo's reading of the monitor's metrics."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest

from occam.bundle import (
    BundleError,
    BundleIntegrityError,
    get_bundle,
    latest_production,
    resolve_serving_bundle,
)
from occam.config import ConfigError, load_config
from occam.demo import explain
from occam.loopback import parse_metrics
from occam.signing import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, SigningKeyError, signing_key
from tests.bundles import make_bundle, model_name, occam, rewrite_with_hash, set_label_by_hand
from tests.conftest import small_config, write_config

KEY = "0123456789abcdef" * 4


def test_unknown_model_name_has_no_production_bundle(bentoml_home: Any) -> None:
    assert latest_production("never-trained-model") is None
    with pytest.raises(BundleError, match="run `occam train`"):
        resolve_serving_bundle("never-trained-model", None)


def test_tampered_bundle_is_refused_naming_the_file(trained: Any) -> None:
    bundle = get_bundle(trained.bundle.tag)
    bundle.verify()
    reference = bundle.path / "reference.csv.gz"
    original = reference.read_bytes()
    try:
        reference.write_bytes(original + b"\n")
        with pytest.raises(BundleError, match=r"reference\.csv\.gz does not match its recorded"):
            resolve_serving_bundle(trained.bundle.name, trained.bundle.tag)
    finally:
        reference.write_bytes(original)
    bundle.verify()


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (
            lambda b: (b.path / "manifest.json").write_text("{not json"),
            "manifest.json is not valid JSON",
        ),
        (
            lambda b: (b.path / "manifest.json").write_text('["a list"]'),
            "manifest.json is not a manifest",
        ),
        (lambda b: (b.path / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda b: (b.path / "reference.csv.gz").unlink(), "reference.csv.gz is missing"),
        (
            lambda b: (b.path / "model.onnx").write_bytes(b"x"),
            "model.onnx does not match its recorded",
        ),
        (
            lambda b: (b.path / "evil.pkl").write_bytes(b"x"),
            "evil.pkl is not listed in manifest.json",
        ),
        (lambda b: (b.path / "metadata.json").write_text("{"), "metadata.json is not valid JSON"),
    ],
    ids=[
        "garbage",
        "not-a-manifest",
        "no-manifest",
        "missing-file",
        "wrong-hash",
        "unlisted",
        "metadata",
    ],
)
def test_a_bad_bundle_is_refused_naming_the_file(damage: Any, named: str) -> None:
    name = model_name()
    damage(make_bundle(name, promoted=True))
    with pytest.raises(BundleIntegrityError, match=named):
        resolve_serving_bundle(name, None)


def test_a_garbage_manifest_stops_serve_and_monitor_with_exit_5(tmp_path: Path) -> None:
    name = model_name()
    bundle = make_bundle(name, promoted=True)
    (bundle.path / "manifest.json").write_bytes(b"\x00garbage{")
    for command in (("serve", "--port", "1"), ("monitor", "--once")):
        done = occam(tmp_path, name, *command)
        assert done.returncode == 5, (command, done.stderr)
        assert "manifest.json is not valid JSON" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_monitor_without_a_promoted_bundle_starts_and_waits(tmp_path: Path) -> None:
    done = occam(tmp_path, model_name(), "monitor", "--once")
    assert done.returncode == 0, done.stderr


def test_signed_bundle_refuses_a_replaced_onnx_with_its_recomputed_hash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    name = model_name()
    bundle = make_bundle(name, promoted=True)
    assert bundle.signature and bundle.signature.startswith("hmac-sha256:")
    resolve_serving_bundle(name, None)  # signed and intact: served
    rewrite_with_hash(bundle, "model.onnx", b"an attacker's graph")
    monkeypatch.delenv(SIGNING_KEY_ENV)
    get_bundle(bundle.tag).verify()  # the hashes agree: without a key it passes
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    with pytest.raises(BundleIntegrityError, match=r"signature .* does not match manifest\.json"):
        resolve_serving_bundle(name, None)
    done = occam(tmp_path, name, "serve", "--port", "1")
    assert done.returncode == 5 and "does not match manifest.json" in done.stderr, done.stderr


def test_a_stage_label_flipped_by_hand_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    name = model_name()
    bundle = make_bundle(name, promoted=False)
    set_label_by_hand(bundle, "candidate", "production")
    assert latest_production(name) is not None  # the label alone says production ...
    with pytest.raises(BundleIntegrityError, match="stage=production"):
        resolve_serving_bundle(name, None)  # ... the signature says otherwise
    done = occam(tmp_path, name, "serve", "--port", "1")
    assert done.returncode == 5 and "stage label was changed" in done.stderr, done.stderr


def test_an_unsigned_bundle_is_refused_once_a_key_is_set_and_nothing_is_unpickled(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    name = model_name()
    bundle = make_bundle(name, promoted=True)
    assert bundle.signature is None
    marker = tmp_path / "code-ran"
    rewrite_with_hash(bundle, "pipeline.joblib", _crafted_pickle(marker))

    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    with pytest.raises(BundleIntegrityError, match="is not signed"):
        get_bundle(bundle.tag).load_pipeline()
    assert not marker.exists()
    done = occam(tmp_path, name, "serve", "--port", "1")
    assert done.returncode == 5 and "is not signed" in done.stderr, done.stderr
    assert not marker.exists()

    # The reason for all this: without a key the same load runs the attacker's code.
    monkeypatch.delenv(SIGNING_KEY_ENV)
    get_bundle(bundle.tag).load_pipeline()
    assert marker.read_text() == "ran"


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (Path.write_text, (self.marker, "ran"))


def _crafted_pickle(marker: Path) -> bytes:
    path = marker.with_suffix(".joblib")
    joblib.dump(_Payload(marker), path)
    data = path.read_bytes()
    assert pickle.HIGHEST_PROTOCOL >= 4
    return data


def test_signing_key_sources_and_bad_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(SIGNING_KEY_FILE_ENV, raising=False)
    assert signing_key() is None
    key_file = tmp_path / "signing.key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(key_file))
    assert signing_key() == KEY.encode()
    monkeypatch.setenv(SIGNING_KEY_ENV, "short")
    with pytest.raises(SigningKeyError, match="OCCAM_SIGNING_KEY: the signing key has 5 bytes"):
        signing_key()
    monkeypatch.delenv(SIGNING_KEY_ENV)
    monkeypatch.setenv(SIGNING_KEY_FILE_ENV, str(tmp_path / "absent.key"))
    with pytest.raises(SigningKeyError, match="cannot read the signing key file"):
        signing_key()


def test_config_signing_key_file_must_exist_and_signs_training_side(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(SIGNING_KEY_FILE_ENV, raising=False)
    name = model_name()
    raw = small_config(tmp_path, **{"output.model_name": name, "output.signing_key_file": "k.key"})
    config = write_config(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"`output\.signing_key_file`: .*k\.key is not a file"):
        load_config(config)
    (tmp_path / "k.key").write_text(KEY)
    assert load_config(config).output.signing_key_file == tmp_path / "k.key"
    # the CLI hands the configured key to what it runs: an unsigned bundle is refused
    make_bundle(name, promoted=True)
    done = occam(tmp_path, name, "serve", "--port", "1")
    assert done.returncode == 5 and "is not signed" in done.stderr, done.stderr
    (tmp_path / "k.key").write_text("short")
    done = occam(tmp_path, name, "serve", "--port", "1")
    assert done.returncode == 2 and "signing key has 5 bytes" in done.stderr, done.stderr


EXPOSITION = """\
# TYPE occam_model_at_risk gauge
occam_model_at_risk 1
# TYPE occam_model_at_risk_reason gauge
occam_model_at_risk_reason{reason="estimate"} 1
occam_model_at_risk_reason{reason="live_metric"} 0
occam_model_at_risk_reason{reason="drift"} 0
# TYPE occam_goal_estimate gauge
occam_goal_estimate{metric="roc_auc"} 0.64
# TYPE occam_goal_estimate_lower gauge
occam_goal_estimate_lower{metric="roc_auc"} 0.61
# TYPE occam_goal_estimate_upper gauge
occam_goal_estimate_upper{metric="roc_auc"} 0.67
# TYPE occam_live_metric gauge
occam_live_metric{metric="roc_auc"} 0.69
# TYPE occam_live_metric_lower gauge
occam_live_metric_lower{metric="roc_auc"} 0.65
# TYPE occam_live_metric_upper gauge
occam_live_metric_upper{metric="roc_auc"} 0.73
# TYPE occam_live_labels gauge
occam_live_labels 600
# TYPE occam_live_labels_served_oldest_timestamp_seconds gauge
occam_live_labels_served_oldest_timestamp_seconds 1780000000
# TYPE occam_live_labels_served_newest_timestamp_seconds gauge
occam_live_labels_served_newest_timestamp_seconds 1780003600
# TYPE occam_weighted_drift gauge
occam_weighted_drift 0.12
# TYPE occam_weighted_drift_threshold gauge
occam_weighted_drift_threshold 0.3
# TYPE occam_feature_importance gauge
occam_feature_importance{feature="temp"} 0.05
occam_feature_importance{feature="origin"} 0.01
# TYPE occam_feature_drift_threshold gauge
occam_feature_drift_threshold{feature="temp"} 0.1
occam_feature_drift_threshold{feature="origin"} 0.1
# TYPE occam_feature_drift_effect_size gauge
occam_feature_drift_effect_size{feature="temp"} 0.25
occam_feature_drift_effect_size{feature="origin"} 0.3
"""


def test_explain_names_the_goal_the_estimate_and_the_features() -> None:
    lines = explain(parse_metrics(EXPOSITION), {"roc_auc": 0.70})
    assert "estimated roc_auc (no labels) 0.640 [0.610, 0.670]: band under the goal 0.70" in lines
    assert (
        "live roc_auc on 600 labels (predictions served 20:26:40-21:26:40 UTC) "
        "0.690 [0.650, 0.730]: not under the goal 0.70"
    ) in lines
    # temp moved less than origin but matters five times more: it is named first
    drift = next(line for line in lines if line.startswith("importance-weighted drift"))
    assert drift.index("temp 2.5x") < drift.index("origin 3.0x"), drift
    assert lines[-1] == "monitor verdict: model at risk, reasons: estimate"


def test_explain_without_a_verdict_says_so() -> None:
    text = "# TYPE occam_window_rows gauge\noccam_window_rows 120\n"
    assert explain(parse_metrics(text), {"roc_auc": 0.7}) == ["monitor verdict: no verdict yet"]


@pytest.mark.parametrize(
    ("time_format", "values", "production_start", "test_period", "held_out", "production"),
    [
        ("year", [2001, 2002, 2003, 2004, 2005, 2006], 2005, ("2003", "2004"), 2, 2),
        ("period", [10, 11, 12, 13, 14, 15], "last 50%", ("12", "12"), 1, 3),
    ],
)
def test_the_demo_replays_periods_read_as_training_reads_them(
    tmp_path: Path,
    time_format: str,
    values: list[int],
    production_start: Any,
    test_period: tuple[str, str],
    held_out: int,
    production: int,
) -> None:
    """Years and period numbers (a split as a number or a share) are never read as nanoseconds
    by the demo: it replays the held-out end and the production period training meant."""
    from types import SimpleNamespace

    from occam.config import parse_config
    from occam.demo import _periods

    data = tmp_path / "rows.csv"
    # shuffled: the demo orders rows by their time
    pd.DataFrame({"t": values[::-1], "x": range(len(values)), "y": ["a", "b"] * 3}).to_csv(
        data, index=False
    )
    raw = small_config(tmp_path)
    raw["data"] = {
        "path": str(data),
        "target": "y",
        "time_column": "t",
        "time_format": time_format,
        "numeric": ["x"],
        "categorical": [],
        "split": {"production_start": production_start, "test_strategy": "time"},
    }
    raw["evaluation"]["slices"] = []
    config = parse_config(raw)
    bundle = SimpleNamespace(
        metadata=SimpleNamespace(data=SimpleNamespace(test_period=test_period))
    )
    periods = _periods(config, bundle)  # type: ignore[arg-type]
    assert [len(rows) for _, rows in periods] == [held_out, production]
    assert list(periods[1][1]["t"]) == sorted(values)[-production:]


def test_the_closing_story_calls_an_alert_false_only_when_every_goal_was_met() -> None:
    from occam.demo import verdict_lines

    firing = ["OccamModelAtRisk"]
    met = verdict_lines(3, [], [], [], firing)
    assert met[0] == "truth: over the last 3 windows the model met every goal"
    one = verdict_lines(1, [], [], [], [])
    assert one[0] == "truth: over the last window the model met every goal"
    assert met[-1].startswith("FALSE ALARM: OccamModelAtRisk fires")
    # missed by less than the margin: neither verdict is wrong, so neither line is said
    near = verdict_lines(3, [], ["balanced_accuracy 0.767 < 0.78"], [], firing)
    assert "missed a goal by less than 0.02" in near[0] and "either is defensible" in near[0]
    assert not any(line.startswith(("FALSE ALARM", "MISSED")) for line in near)
    missed = verdict_lines(3, ["roc_auc 0.61 < 0.70"], ["roc_auc 0.61 < 0.70"], [], [])
    assert missed[-1] == "MISSED: the goal was missed but OccamModelAtRisk is not firing"
    quiet = verdict_lines(3, [], [], ["OccamFeatureDrift[temp] (windows 2-3)"], [])
    assert quiet[1] == "alerts that fired during the replay: OccamFeatureDrift[temp] (windows 2-3)"
    assert not any(line.startswith(("FALSE ALARM", "MISSED")) for line in quiet)


def test_a_data_file_smaller_than_one_window_is_told_with_the_fix(tmp_path: Path) -> None:
    """569 rows (scikit-learn's breast-cancer data) make no window of 1,000: the main job said
    "0 windows" and ended with no verdict; it now says what to set."""
    from occam.config import parse_config
    from occam.demo import no_window
    from tests.conftest import small_config

    config = parse_config(small_config(tmp_path), base_dir=tmp_path)
    rows = config.monitoring.window_rows
    small = [("the whole data file", pd.DataFrame({"x": range(rows - 1)}))]
    told = no_window(small, config, "occam.yaml")
    assert told is not None and f"holds {rows - 1} rows, fewer than one monitor window" in told
    assert f"set monitoring.window_rows to at most {(rows - 1) // 2} in occam.yaml" in told
    assert no_window([("production period", pd.DataFrame({"x": range(rows)}))], config, "") is None

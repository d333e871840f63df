"""The retrain set and `training.retrain.retrain` on logs written by the service's real log
writer, against a real champion bundle (a copy of the session's trained one under its own model
name, so promotions here never change what other tests serve)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from occam.bundle import ONNX_FILE, PRODUCTION, Bundle, save_bundle
from occam.config import OccamConfig, parse_config
from occam.loopback import rows_as_instances
from occam.records import FeedbackRecord, PredictionRecord, Record
from service.log import SegmentWriter
from tests.conftest import ROOT, small_config
from training.data import load_frame, split_frame
from training.retrain import (
    RecencyWeights,
    RetrainError,
    build_retrain_set,
    challenger_config,
    challenger_frame,
    read_log,
    retrain,
    row_keys,
)

_names = itertools.count()


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return load_frame(ROOT / "data" / "flights.csv.gz")


def copy_champion(source: Bundle) -> Bundle:
    """A promoted copy of `source` under a model name of its own."""
    return save_bundle(
        f"occam-loop-{next(_names)}",
        pipeline=source.load_pipeline(),
        metadata=source.metadata,
        reference=source.load_reference(),
        promoted=True,
        extra_files={ONNX_FILE: (source.path / ONNX_FILE).read_bytes()},
    )


@pytest.fixture
def champion(trained: Any) -> Bundle:
    """A promoted copy of the session's trained bundle under a model name of its own."""
    return copy_champion(trained.bundle)


def make_config(tmp: Path, champion: Bundle, **overrides: Any) -> OccamConfig:
    raw = small_config(tmp, **{"output.model_name": champion.tag.split(":")[0], **overrides})
    raw["tracking"] = {"enabled": False}
    return parse_config(raw, base_dir=tmp)


def production(flights: pd.DataFrame, start: str, rows: int) -> pd.DataFrame:
    times = pd.to_datetime(flights["scheduled_departure"])
    return flights[times >= pd.Timestamp(start)].iloc[:rows].reset_index(drop=True)


def write_log(
    folder: Path,
    frame: pd.DataFrame,
    features: list[str],
    labels: Sequence[str | None],
    version: str = "test",
) -> list[str]:
    """Log `frame` as served (one prediction per row, served at its scheduled departure) and
    the feedback `labels` (None: no feedback), with the service's own writer; return the ids."""
    writer = SegmentWriter(folder, worker=1, segment_bytes=200_000).start()
    served = pd.to_datetime(frame["scheduled_departure"]).astype("int64") / 1e9
    records: list[Record] = []
    ids = [f"r{i}" for i in range(len(frame))]
    for i, (row, ts) in enumerate(zip(rows_as_instances(frame, features), served, strict=True)):
        records.append(
            PredictionRecord(
                id=ids[i],
                ts=float(ts),
                model_version=version,
                features=row,
                label="on_time",
                predicted="on_time",
                probabilities={"late": 0.3, "on_time": 0.7},
                abstained=False,
                marks={},
            )
        )
    for i, label in enumerate(labels):
        if label is not None:
            records.append(FeedbackRecord(id=ids[i], ts=float(served.iloc[i]) + 3600, label=label))
    writer.submit(records)
    writer.close()
    return ids


def test_retrain_set_joins_feedback_and_holds_out_the_newest_rows(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(
        tmp_path,
        champion,
        **{
            "retrain.original": "last_rows",
            "retrain.original_rows": 1000,
            "retrain.min_gate_rows": 50,
            "retrain.gate_share": 0.3,
        },
    )
    served = production(flights, "2013-07-01", 900)
    features = champion.schema.names
    rng = np.random.default_rng(0)
    truth = served["late"].astype(str).tolist()
    labels = [y if rng.random() < 0.5 else None for y in truth]
    labels[10] = "unknown"  # "I don't know" feedback: trained on (checks count it), never gated
    write_log(config.serving.log_dir, served, features, labels)
    partial = config.serving.log_dir / "occam-w2-p1-000000.jsonl"
    partial.write_bytes(b'{"kind": "feedback", "id": "r0", "ts": 1.0, "lab')  # mid-append

    found = build_retrain_set(config, champion)

    known = sum(1 for y in labels if y not in (None, "unknown"))
    assert len(found.gate) == math.ceil(0.3 * known)
    assert found.labelled == sum(1 for y in labels if y is not None)
    assert found.log_train_rows + len(found.gate) == found.labelled
    # the gate rows are the newest labelled rows, as served, with their true labels
    gate_ids = [i for i, y in enumerate(labels) if y not in (None, "unknown")][-len(found.gate) :]
    expected = served.iloc[gate_ids].reset_index(drop=True)
    assert found.gate["late"].tolist() == expected["late"].tolist()
    pd.testing.assert_frame_equal(
        found.gate[features].reset_index(drop=True),
        pd.DataFrame(rows_as_instances(expected, features)),
        check_dtype=False,
    )
    times = pd.to_datetime(found.train["scheduled_departure"])
    assert times.is_monotonic_increasing
    assert times.max() < pd.to_datetime(found.gate["scheduled_departure"]).min()
    # the original rows: the last 1,000 of the training period, none from production
    assert found.original_rows == 1000
    original = found.train.iloc[:1000]
    assert pd.to_datetime(original["scheduled_departure"]).max() < pd.Timestamp("2013-07-01")
    assert "unknown" in found.train["late"].tolist()
    assert found.summary()["gate_rows"] == len(found.gate)


def test_by_default_every_original_row_joins_the_production_feedback(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    """`retrain.original` defaults to `all`: the challenger keeps every row of the original
    training period (the upper-bound study, bench/results/retrain_bound.md, found no shorter
    window better on roc_auc in any later month), and adds the labelled production rows at
    weight 1."""
    config = make_config(tmp_path, champion, **{"retrain.min_gate_rows": 50})
    assert config.retrain.original == "all" and config.retrain.log_weight == 1.0
    served = production(flights, "2013-07-01", 300)
    write_log(config.serving.log_dir, served, champion.schema.names, served["late"].tolist())
    found = build_retrain_set(config, champion)
    times = pd.to_datetime(flights["scheduled_departure"])
    assert found.original_rows == int((times < pd.Timestamp("2013-07-01")).sum())
    original = pd.to_datetime(found.train["scheduled_departure"].iloc[: found.original_rows])
    assert original.min() == times.min() and original.max() < pd.Timestamp("2013-07-01")
    assert found.log_train_rows == 300 - len(found.gate)
    assert RecencyWeights.from_config(config, found).uniform


def test_original_rule_last_days_keeps_only_recent_rows(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(
        tmp_path,
        champion,
        **{
            "retrain.original": "last_days",
            "retrain.original_days": 14,
            "retrain.min_gate_rows": 50,
        },
    )
    served = production(flights, "2013-07-01", 300)
    write_log(config.serving.log_dir, served, champion.schema.names, served["late"].tolist())
    found = build_retrain_set(config, champion)
    original = pd.to_datetime(found.train["scheduled_departure"].iloc[: found.original_rows])
    assert original.min() >= pd.Timestamp("2013-06-16") and original.max() < pd.Timestamp(
        "2013-07-01"
    )
    none = build_retrain_set(
        make_config(
            tmp_path, champion, **{"retrain.original": "none", "retrain.min_gate_rows": 50}
        ),
        champion,
    )
    assert none.original_rows == 0 and len(none.train) == none.log_train_rows


def test_too_few_new_labelled_rows_is_an_error_naming_the_key(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(tmp_path, champion, **{"retrain.min_gate_rows": 200})
    served = production(flights, "2013-07-01", 300)
    labels = [y if i % 3 == 0 else None for i, y in enumerate(served["late"])]
    write_log(config.serving.log_dir, served, champion.schema.names, labels)
    with pytest.raises(RetrainError, match=r"retrain\.min_gate_rows=200"):
        build_retrain_set(config, champion)


def test_rows_the_champion_may_have_trained_on_are_never_gate_rows(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(tmp_path, champion, **{"retrain.min_gate_rows": 50})
    old = production(flights, "2013-03-01", 300)  # inside the champion's training period
    write_log(config.serving.log_dir, old, champion.schema.names, old["late"].tolist())
    with pytest.raises(RetrainError, match="0 of them newer than the champion"):
        build_retrain_set(config, champion)


def test_original_rows_served_again_are_neither_gate_nor_extra_training_rows(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    """`occam demo` replays the original data's held-out end through the service: those log
    rows are served after the champion's data, yet the challenger trains on them as original
    rows (`retrain.original: all`). They must not be gate rows (a gate on rows one model
    learnt is unfair) nor join the training rows twice."""
    config = make_config(tmp_path, champion, **{"retrain.min_gate_rows": 50})
    june = production(flights, "2013-06-20", 300)
    served_later = pd.to_datetime(june["scheduled_departure"]) + pd.Timedelta(days=30)
    replayed = june.assign(scheduled_departure=served_later.dt.strftime("%Y-%m-%dT%H:%M"))
    july = production(flights, "2013-07-01", 300)
    both = pd.concat([replayed, july], ignore_index=True)
    write_log(config.serving.log_dir, both, champion.schema.names, both["late"].tolist())
    found = build_retrain_set(config, champion)
    assert found.log_train_rows + len(found.gate) == 300  # the July rows only
    names = champion.schema.names
    june_rows = set(row_keys(june, names))
    assert june_rows.isdisjoint(row_keys(found.gate, names))
    from_log = found.train.iloc[found.original_rows :]
    assert june_rows.isdisjoint(row_keys(from_log, names))
    assert june_rows <= set(row_keys(found.train.iloc[: found.original_rows], names))


def test_read_log_keeps_the_newest_records_within_its_bound(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    served = production(flights, "2013-07-01", 100)
    write_log(tmp_path, served, champion.schema.names, [None] * 100)
    contents = read_log(tmp_path, max_records=30)
    assert [p.id for p in contents.predictions] == [f"r{i}" for i in range(70, 100)]
    assert read_log(tmp_path / "absent", 10).predictions == []


def new_concept(frame: pd.DataFrame) -> list[str]:
    """A concept the champion never saw: late iff an afternoon flight XOR out of Newark (no
    single feature predicts it, so the leakage check stays quiet)."""
    late = (frame["sched_hour"] >= 15) ^ (frame["origin"] == "EWR")
    return np.where(late, "late", "on_time").tolist()


def test_retrain_promotes_a_challenger_that_learned_the_new_concept(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(
        tmp_path, champion, **{"retrain.original": "none", "retrain.min_gate_rows": 300}
    )
    served = production(flights, "2013-07-01", 3000)
    write_log(config.serving.log_dir, served, champion.schema.names, new_concept(served))
    result = retrain(config)
    gate = result.gate
    assert gate.passed, gate.reasons()
    assert result.promoted and result.train.bundle.stage == PRODUCTION
    assert gate.champion == champion.tag and gate.challenger == result.train.bundle.tag
    for c in gate.comparisons:
        assert c.challenger > c.champion and c.difference_low > 0
    card = result.train.card_path.read_text()
    assert "## Champion vs challenger" in card and "**Promoted**" in card
    assert result.train.card_path.parent == config.output.reports_dir / "retrain"
    challenge = result.train.metadata.challenge
    assert challenge is not None and challenge.passed is True


def test_retrain_refuses_a_challenger_trained_on_noise(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(
        tmp_path, champion, **{"retrain.original": "none", "retrain.min_gate_rows": 300}
    )
    served = production(flights, "2013-07-01", 3000)
    truth = served["late"].astype(str).to_numpy()
    noise = np.random.default_rng(0).permutation(truth)
    labels = [*noise[:2000].tolist(), *truth[2000:].tolist()]  # the gate rows are the truth
    write_log(config.serving.log_dir, served, champion.schema.names, labels)
    result = retrain(config)
    assert not result.gate.passed and not result.promoted
    assert result.train.bundle.stage != PRODUCTION
    assert any("under the champion" in r for r in result.gate.reasons())
    assert "**Not promoted**" in result.train.card_path.read_text()


def test_bad_retrain_and_floor_keys_name_the_key(tmp_path: Path) -> None:
    from occam.config import ConfigError

    raw = small_config(tmp_path)
    raw["retrain"] = {"original": "last_weeks", "gate_shar": 0.2}
    raw["evaluation"]["slice_floors"] = {"roc_auc": 1.5}
    with pytest.raises(ConfigError) as error:
        parse_config(raw)
    message = str(error.value)
    assert "`retrain.original`" in message and "last_days" in message
    assert "`retrain.gate_shar`: unknown key; did you mean `gate_share`?" in message
    assert "`evaluation.slice_floors`" in message and "[0, 1]" in message


def test_recent_rows_weigh_more_and_the_gate_rows_are_the_challengers_test_set(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(tmp_path, champion, **{
        "retrain.original": "last_days", "retrain.original_days": 60, "retrain.min_gate_rows": 200,
        "retrain.log_weight": 3.0, "retrain.original_half_life_days": 20.0})  # fmt: skip
    served = production(flights, "2013-07-01", 1000)
    write_log(config.serving.log_dir, served, champion.schema.names, served["late"].tolist())
    found = build_retrain_set(config, champion)
    frame = challenger_frame(found)
    split = split_frame(frame, challenger_config(config, found))
    # the challenger learns from every labelled production row but the gate's, tested on those
    assert split.test.index.tolist() == list(range(len(found.train), len(frame)))
    assert split.train.index.tolist() == list(range(len(found.train)))

    weights = RecencyWeights.from_config(config, found)(split.train)
    assert weights.mean() == pytest.approx(1.0)
    n = found.original_rows
    times = pd.to_datetime(found.train[config.data.time_column].iloc[:n])
    newest = weights[:n][times == times.max()]
    # production rows: 3x the newest original row; 20 days older: half; 40 days: a quarter
    assert weights[n:] == pytest.approx(np.full(len(weights) - n, 3 * newest[0]))
    for days, share in ((20, 0.5), (40, 0.25)):
        age = (times.max() - times).dt.total_seconds() / 86_400
        assert weights[:n][(age - days).abs() < 0.01] == pytest.approx(share * newest[0])
    uniform = RecencyWeights.from_config(make_config(tmp_path, champion), found)
    assert uniform.uniform and (uniform(split.train) == 1).all()


def test_a_weighted_challenger_held_for_shadow_stays_a_candidate(
    tmp_path: Path, champion: Bundle, flights: pd.DataFrame
) -> None:
    config = make_config(tmp_path, champion, **{
        "retrain.original": "last_rows", "retrain.original_rows": 1500,
        "retrain.min_gate_rows": 300, "retrain.log_weight": 4.0,
        "retrain.original_half_life_days": 10.0, "retrain.promote": False})  # fmt: skip
    served = production(flights, "2013-07-01", 3000)
    write_log(config.serving.log_dir, served, champion.schema.names, new_concept(served))
    result = retrain(config)
    assert result.gate.passed, result.gate.reasons()  # the weighted fit learned the new concept
    assert result.held and not result.promoted
    assert result.train.bundle.stage != PRODUCTION
    assert result.train.metadata.data.test_rows == result.gate.rows
    assert result.train.metadata.challenge is not None
    assert result.train.metadata.challenge.held_for_shadow is True
    assert "**Passed, held for shadow**" in result.train.card_path.read_text()

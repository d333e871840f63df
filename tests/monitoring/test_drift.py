"""The drift module: alibi-detect's tests keyed by name, effect sizes, calibrated levels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring.calibration import (
    alarm_levels,
    calendar_features,
    default_chunk_rows,
    ks_distance,
    tv_distance,
)
from monitoring.drift import DriftDetector


def seasonal(n: int, seed: int, shift: float = 0.0, start: int = 0) -> pd.DataFrame:
    """Time-ordered rows: `temp` follows a slow season plus daily noise, `noise` is stable,
    `city` a stable category. Row i of one sample is day (start + i) / 10."""
    rng = np.random.default_rng(seed)
    day = (start + np.arange(n)) / 10
    return pd.DataFrame(
        {
            "temp": 10 * np.sin(day / 30) + rng.normal(0, 2, n) + shift,
            "noise": rng.normal(0, 1, n),
            "city": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
        }
    )


def test_effect_sizes() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert ks_distance(a, a) == 0.0 and ks_distance(a, a + 10) == 1.0
    assert ks_distance(a, np.array([])) != ks_distance(a, np.array([]))  # NaN
    ref = np.random.default_rng(0).normal(size=500)
    live = np.random.default_rng(1).normal(0.5, 1, 300)
    assert ks_distance(live, ref) == pytest.approx(stats.ks_2samp(live, ref).statistic)
    assert tv_distance(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2) == pytest.approx(0.25)
    assert tv_distance(np.array([0]), np.array([1]), 3) == 1.0


def test_chunk_rows_span_the_window_time() -> None:
    # a 5,000-row reference sampled from 25,000 training rows holds 1/5 of the rows per day
    assert default_chunk_rows(1000, 5000, 25_000) == 200
    assert default_chunk_rows(1000, 5000, None) == 1000


def test_results_are_keyed_by_name_with_p_value_statistic_effect() -> None:
    ref = seasonal(4000, seed=0)
    detector = DriftDetector(["temp", "noise"], ["city"]).fit(ref, window_rows=500)
    result = detector.check(ref.sample(500, random_state=1))
    assert set(result.features) == {"temp", "noise", "city"}
    city = result.features["city"]
    assert city.kind == "categorical" and 0 <= city.p_value <= 1 and city.statistic >= 0
    assert result.features["temp"].statistic == pytest.approx(
        result.features["temp"].effect_size, abs=1e-6
    )
    assert result.p_value_threshold == pytest.approx(0.05 / 3)  # Bonferroni over 3 features
    assert result.drifted == [] and result.drifted_share == 0.0


def test_time_ordered_windows_of_the_reference_period_do_not_alarm() -> None:
    """The DESIGN's finding: consecutive rows of the training period are "significantly"
    different from the whole period, yet the calibrated level keeps them quiet."""
    ref = seasonal(6000, seed=0)
    detector = DriftDetector(["temp", "noise"], ["city"]).fit(ref, window_rows=600)
    same_period = seasonal(6000, seed=7)  # new rows, same season
    windows = [same_period.iloc[s : s + 600] for s in range(0, 6000, 600)]
    results = [detector.check(w) for w in windows]
    significant = [r.features["temp"].significant for r in results]
    assert sum(significant) >= 8  # p-values alone alarm on nearly every window
    assert not any(r.features["temp"].drifted for r in results)
    assert all(r.drifted_share == 0 for r in results)


def test_a_real_shift_drifts_and_unseen_categories_count() -> None:
    ref = seasonal(6000, seed=0)
    detector = DriftDetector(["temp", "noise"], ["city"]).fit(ref, window_rows=600)
    shifted = seasonal(600, seed=3, shift=25.0)
    shifted["city"] = np.where(np.arange(600) % 2 == 0, "new-city", shifted["city"])
    result = detector.check(shifted)
    assert result.drifted == ["temp", "city"]
    assert result.features["city"].effect_size == pytest.approx(0.5, abs=0.05)
    assert result.drifted_share == pytest.approx(2 / 3)


def test_missing_values_are_a_distribution_change() -> None:
    ref = seasonal(4000, seed=0)
    detector = DriftDetector(["noise"], []).fit(ref, window_rows=400)
    live = seasonal(400, seed=5)
    assert not detector.check(live).features["noise"].drifted
    live.loc[: len(live) // 2, "noise"] = np.nan
    assert detector.check(live).features["noise"].drifted


def test_margin_floor_and_fdr() -> None:
    ref = seasonal(4000, seed=0)
    base = DriftDetector(["temp", "noise"], ["city"]).fit(ref, window_rows=400)
    wide = DriftDetector(
        ["temp", "noise"], ["city"], margin=1.2, min_effect_size=0.3, correction="fdr"
    ).fit(ref, window_rows=400)
    assert np.allclose(wide.levels_, base.levels_)
    assert np.allclose(wide.thresholds_, np.maximum(1.2 * base.levels_, 0.3))
    result = wide.check(seasonal(400, seed=3, shift=25.0))
    assert result.features["temp"].drifted and not result.features["noise"].drifted
    quiet = wide.check(ref.iloc[:400])
    assert quiet.p_value_threshold > 0 and not quiet.drifted


def test_levels_shrink_with_larger_windows_but_keep_the_season() -> None:
    ref = seasonal(6000, seed=0).to_numpy(dtype=object)
    numeric = ref[:, :2].astype(float)
    small = alarm_levels(numeric, [None, None], window_rows=200, chunk_rows=200)
    large = alarm_levels(numeric, [None, None], window_rows=2000, chunk_rows=200)
    assert large[1] < small[1]  # stable feature: only sampling noise, smaller for big windows
    assert large[0] > 0.3  # seasonal feature: its in-period swing stays


def test_calendar_features_are_found() -> None:
    times = pd.date_range("2013-01-01", periods=3000, freq="3h")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "when": times.astype(str),
            "weekday": times.day_name(),
            "month": times.month,
            "hour": times.hour,  # a daily cycle: any window of a day or more holds it
            "temp": rng.normal(size=3000),
            "almost_constant": np.where(rng.random(3000) < 0.995, "x", "y"),
        }
    )
    names = ["weekday", "month", "hour", "temp", "almost_constant"]
    assert calendar_features(frame, "when", names) == ["weekday", "month"]
    assert calendar_features(frame, None, names) == []


def test_records_encode_as_the_coerced_frame() -> None:
    """The check reads logged feature mappings directly; they must encode as the frame path
    (schema coercion, then `encode`) does: missing numbers, numbers as text, categories sent as
    numbers, unseen and missing categories, a feature a row lacks."""
    ref = seasonal(2000, seed=0)
    ref["code"] = np.random.default_rng(0).choice([1, 2, 3], len(ref)).astype(str)
    detector = DriftDetector(["temp", "noise"], ["city", "code"]).fit(ref, window_rows=500)
    rows: list[dict[str, Any]] = [
        {"temp": 1.5, "noise": None, "city": "a", "code": 2},
        {"temp": "2.5", "noise": 0.1, "city": "zzz", "code": "3"},
        {"temp": float("nan"), "noise": 0.2, "city": None, "code": 2.5},
        {"noise": 0.3, "city": "b"},
    ]
    frame = pd.DataFrame.from_records(rows, columns=["temp", "noise", "city", "code"])
    coerced = pd.DataFrame(
        {
            "temp": pd.to_numeric(frame["temp"], errors="coerce"),
            "noise": pd.to_numeric(frame["noise"], errors="coerce"),
            "city": frame["city"].map(lambda v: "__missing__" if v is None else str(v)),
            "code": frame["code"].map(lambda v: "__missing__" if pd.isna(v) else str(v)),
        }
    )
    assert np.array_equal(detector.encode_records(rows), detector.encode(coerced))


def test_screened_columns_keep_the_verdicts_of_testing_every_column() -> None:
    """Only columns that may drift get the backend's exact test; the verdicts must be those of
    exact tests on every column (the FDR path tests every column)."""
    ref = seasonal(4000, seed=0)
    for shift in (0.0, 1.0, 25.0):
        live = seasonal(400, seed=5, shift=shift)
        screened = DriftDetector(["temp", "noise"], ["city"], backend="scipy").fit(ref, 400)
        result = screened.check(live)
        p_values = [stats.ks_2samp(ref[c], live[c]).pvalue for c in ("temp", "noise")]
        cut = 0.05 / 3
        for name, p in zip(("temp", "noise"), p_values, strict=True):
            f = result.features[name]
            assert f.significant == (p < cut) or not f.drifted
            assert f.drifted == (p < cut and f.effect_size > f.threshold)

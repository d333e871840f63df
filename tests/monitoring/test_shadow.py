"""Shadow against champion in the monitor: shadow rows stay out of the served model's windows,
both sides are scored on the same rows with the same feedback, and both are exported."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from monitoring.exporter import MonitorCollector
from monitoring.reader import read_new
from monitoring.reference import Reference
from monitoring.shadow import ShadowTracker
from occam.records import Record
from tests.monitoring import synthetic
from tests.monitoring.logs import append, feedback, prediction
from tests.monitoring.test_exporter import CONFIG, new_state, status


def _log(folder: Path, rows: int, seed: int = 0) -> None:
    """`rows` served rows by v1, each with a shadow twin by v2: the shadow is always right
    (its probability of the true class is 0.9), the champion right only by chance."""
    rng = np.random.default_rng(seed)
    records: list[Record] = []
    for i in range(rows):
        truth = "yes" if rng.random() < 0.5 else "no"
        p_champion = float(rng.uniform(0.1, 0.9))
        p_shadow = 0.9 if truth == "yes" else 0.1
        served = prediction(f"r{i}", version="v1", proba={"no": 1 - p_champion, "yes": p_champion})
        shadow = replace(
            prediction(f"r{i}", version="v2", proba={"no": 1 - p_shadow, "yes": p_shadow}),
            shadow=True,
        )
        records += [served, shadow, feedback(f"r{i}", truth)]
    append(folder, records)


def test_shadow_rows_stay_out_of_the_served_window_and_both_sides_are_exported(
    tmp_path: Path,
) -> None:
    ref: Reference = synthetic.reference(CONFIG)
    _log(tmp_path, 300)
    batch = read_new(tmp_path, {})
    assert len(batch.predictions) == 300 and len(batch.shadow) == 300
    assert {r["model_version"] for r in batch.predictions} == {"v1"}
    assert batch.malformed == 0
    tracker = ShadowTracker(CONFIG.window_rows, CONFIG.live_window_labels)
    tracker.add(batch.predictions, batch.shadow, batch.feedback)
    state = new_state()
    state.apply(batch)
    assert len(state.window) == CONFIG.window_rows  # v1 rows only (300 > window of 200)
    assert all(r["model_version"] == "v1" for r in state.window.rows)
    result = tracker.compare(
        ref.classes, ref.positive, ref.goals, CONFIG.live_min_labels, CONFIG.band_level,
        ref.estimator,
    )  # fmt: skip
    assert result is not None and result.version == "v2" and result.rows_total == 300
    shadow, champion = result.live["shadow"], result.live["champion"]
    assert shadow.labels == champion.labels == CONFIG.window_rows
    assert shadow.metrics["roc_auc"] == 1.0
    assert champion.metrics["roc_auc"] < 0.7
    assert result.estimate["shadow"].keys() == result.estimate["champion"].keys() != set()
    registry = CollectorRegistry()
    MonitorCollector(lambda: replace(status(ref, None, state), shadow=result), registry=registry)
    text = generate_latest(registry).decode()
    assert "occam_shadow_rows_total 300.0" in text
    live = dict(
        re.findall(r'occam_shadow_live_metric\{metric="roc_auc",role="(\w+)"\} (\S+)', text)
    )
    assert float(live["shadow"]) == 1.0 and float(live["champion"]) < 0.7
    assert 'occam_shadow_live_labels{role="champion"} 200.0' in text


def test_a_new_challenger_starts_the_comparison_afresh(tmp_path: Path) -> None:
    tracker = ShadowTracker(100, 100)
    first = prediction("a", version="v2")
    tracker.add([prediction("a").__dict__], [replace(first, shadow=True).__dict__], [])
    assert tracker.rows_total == 1
    later = replace(prediction("b", version="v3"), shadow=True).__dict__
    tracker.add([prediction("b").__dict__], [later], [])
    assert (tracker.version, tracker.rows_total) == ("v3", 1)
    assert len(tracker.joins["champion"]) == 1

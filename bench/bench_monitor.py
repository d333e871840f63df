"""Monitoring sidecar benchmark: ingest rate, check cost next to a plain scipy loop, detection on
the bundled flights data (false alarms on in-distribution windows, rows until the verdicts), and
the sidecar's CPU and memory while it follows a log written at a steady rate.

Run: `.venv/bin/python bench/bench_monitor.py` (about 3 minutes on 2 cores; `--full-search`
trains with the exact default search, about 2 more minutes). It trains a model like the
default config (100 trees, 5,000 reference rows; a shorter search unless --full-search) into a
temporary model store. Figures go to bench/results/monitor.{json,md}. Helpers:
bench/monitor_replay.py (records, detection replay), bench/monitor_cost.py (ingest, live-log
cost), bench/monitor_report.py (the Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from scipy import stats  # noqa: E402

from bench.monitor_cost import follow_live_log, ingest_rate  # noqa: E402
from bench.monitor_replay import (  # noqa: E402
    Detection,
    prediction_dicts,
    sensitivity,
)
from bench.monitor_report import render  # noqa: E402
from monitoring.check import run_check  # noqa: E402
from monitoring.reference import build_reference, output_frame  # noqa: E402
from monitoring.state import MonitorState  # noqa: E402
from occam.config import OccamConfig, parse_config  # noqa: E402
from training.data import load_frame, split_frame  # noqa: E402
from training.pipeline import train  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def default_config(full_search: bool, reports: Path) -> OccamConfig:
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["reports_dir"] = str(reports)
    if not full_search:
        raw["search"] |= {"n_candidates": 3, "max_rounds": 2, "min_rounds": 1}
    return parse_config(raw)


def _median_seconds(call: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _scipy_loop(
    x: pd.DataFrame, reference: pd.DataFrame, names: list[str], numeric: list[str], method: str
) -> None:
    """The plain baseline: one scipy test per feature, no effect sizes, no calibration."""
    for name in names:
        if name in numeric:
            stats.ks_2samp(x[name].dropna(), reference[name].dropna(), method=method)
        else:
            counts = pd.concat([x[name].value_counts(), reference[name].value_counts()], axis=1)
            stats.chi2_contingency(counts.fillna(0).to_numpy().T)


def check_cost(bundle: Any, config: OccamConfig, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Seconds per check of one window: the drift module (inputs and outputs), the whole
    sidecar check, and a plain scipy loop (KS per numeric feature, Chi2 per categorical)."""
    rows = []
    schema = bundle.schema
    pipeline = bundle.load_pipeline()
    reference = schema.coerce(bundle.load_reference())
    for size in (500, 5_000, 50_000):
        mon = config.monitoring.model_copy(update={"window_rows": size, "min_window_rows": 10})
        ref = build_reference(bundle, mon, seed=config.seed)
        window = frame.iloc[-size:]
        x = schema.coerce(window)
        proba = pipeline.predict_proba(x)
        outputs = output_frame(np.asarray(bundle.classes)[proba.argmax(axis=1)], proba.max(axis=1))
        state = MonitorState.new(size, 10, 100_000, 1000)
        state.window.bind(ref.encoding)  # as the sidecar: columns built as records arrive
        state.window.extend(prediction_dicts(bundle, window, proba, "c"))
        names = ref.inputs.names_
        row: dict[str, Any] = {"window_rows": size, "features": len(names)}
        row["drift_module_s"] = _median_seconds(partial(_drift_module, ref, x[names], outputs))
        for method in ("auto", "asymp"):
            row[f"scipy_{method}_s"] = _median_seconds(
                partial(_scipy_loop, x, reference, names, schema.numeric, method)
            )
        row["sidecar_check_s"] = _median_seconds(partial(run_check, state, ref, mon, time.time()))
        rows.append(row)
        print(f"check cost, window {size}: {row}", flush=True)
    return rows


def _drift_module(ref: Any, inputs: pd.DataFrame, outputs: pd.DataFrame) -> None:
    ref.inputs.check(inputs)
    ref.outputs.check(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark of the monitoring sidecar.")
    parser.add_argument("--full-search", action="store_true")
    parser.add_argument("--skip-live", action="store_true", help="skip the live-log CPU run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="occam-bench-monitor-"))
    # A private model store (read by bentoml when first imported, inside `train`), removed after.
    os.environ.setdefault("BENTOML_HOME", str(work / "bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    try:
        out = run(args.full_search, args.skip_live, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "monitor.json").write_text(json.dumps(out, indent=2, default=str))
    (RESULTS / "monitor.md").write_text(render(out))
    print((RESULTS / "monitor.md").read_text())


def run(full_search: bool, skip_live: bool, work: Path) -> dict[str, Any]:
    """Train, then measure; returns the figures."""
    config = default_config(full_search, work / "reports")
    started = time.time()
    result = train(config)
    bundle = result.bundle
    print(f"trained {bundle.tag} in {time.time() - started:.0f}s (promoted: {result.promoted})")
    frame = load_frame(config.data.path)
    frame = frame[~frame[config.data.target].isin(config.labels.unknown_values)]
    split = split_frame(frame, config)
    everything = pd.concat([split.train, split.test, split.production])

    out: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
        "model": bundle.tag,
        "search": "default" if full_search else "shortened (3 candidates x 2 rounds)",
        "monitoring": config.monitoring.model_dump(mode="json"),
        "goal": f"{config.goals[0].metric} >= {config.goals[0].threshold}",
    }
    out["ingest"] = ingest_rate(bundle, config, split.test, work)
    print(f"ingest: {out['ingest']}", flush=True)
    out["check_cost"] = check_cost(bundle, config, everything)
    detections: dict[str, Any] = {}
    for size in (500, config.monitoring.window_rows, 2000):
        mon = config.monitoring.model_copy(
            update={"window_rows": size, "min_window_rows": min(size, 200)}
        )
        det = Detection.run(bundle, mon, split, config.seed)
        detections[str(size)] = det.summary()
        print(f"detection, window {size}: {det.summary()['headline']}", flush=True)
        if size == config.monitoring.window_rows:
            out["sensitivity"] = sensitivity(det)
            out["months"] = det.months()
    out["detection"] = detections
    if not skip_live:
        out["live"] = [
            follow_live_log(bundle, config, split.test, rate, work) for rate in (2000, 20000)
        ]
    return out


if __name__ == "__main__":
    main()

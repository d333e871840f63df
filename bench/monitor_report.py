"""The Markdown report of bench/bench_monitor.py (bench/results/monitor.md) from its JSON."""

from __future__ import annotations

from typing import Any

from bench.monitor_replay import MONTHLY


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _summary(out: dict[str, Any]) -> str:
    """The headline figures against the targets, in words."""
    size = str(out["monitoring"]["window_rows"])
    det = out["detection"][size]
    fa, until = det["false_alarm"], det["rows_until"]
    cost = {r["window_rows"]: r for r in out["check_cost"]}
    return "\n".join(
        [
            f"- Ingest: {out['ingest']['records_per_second']:,} records/s (target >= 500,000).",
            f"- False alarms (target <= 5%) on in-distribution (held-out Jan-Jun) windows of "
            f"{size} rows: "
            f"data drift {fa['data_drift']['held_out']:.0%} of disjoint windows "
            f"({fa['data_drift']['held_out_sliding']:.0%} of sliding ones), model at risk "
            f"{fa['at_risk']['held_out']:.0%} ({fa['at_risk']['held_out_sliding']:.0%}), "
            f"prediction drift {fa['prediction_drift']['held_out']:.0%}; on training-period "
            f"windows {fa['data_drift']['train']:.0%}. The p-value-only verdict of "
            f"TabularDrift alarms on {fa['pvalue_verdict']['held_out']:.0%} of them.",
            f"- Production (Jul-Dec) rows until the data-drift verdict: {until['data_drift']}; "
            f"until 'model at risk': {until['at_risk']}; until a live goal metric under its "
            f"goal (30% labelled): {until['live_below']}.",
            f"- Drift check of a 5,000-row window: {cost[5000]['drift_module_s'] * 1000:.0f} ms "
            f"(scipy KS/Chi2 loop: {cost[5000]['scipy_asymp_s'] * 1000:.0f} ms asymptotic, "
            f"{cost[5000]['scipy_auto_s'] * 1000:.0f} ms with scipy's default exact KS).",
        ]
    )


def render(out: dict[str, Any]) -> str:
    """The results as Markdown."""
    mon = out["monitoring"]
    ingest = out["ingest"]
    parts = [
        "# Monitoring sidecar benchmark",
        f"Command: `.venv/bin/python bench/bench_monitor.py`; run {out['when']} on "
        f"{out['machine']}; model {out['model']} (default config, {out['search']} search). "
        f"Monitoring defaults: window {mon['window_rows']} rows "
        f"(minimum {mon['min_window_rows']}), "
        f"margin {mon['drift_margin']}, drift share threshold {mon['drift_share_threshold']}, "
        f"{mon['consecutive_windows']} windows in a row, "
        f"{mon['correction']} at p={mon['p_value']}.",
        "## Summary",
        _summary(out),
        "## Ingest",
        f"{ingest['records']:,} records ({ingest['megabytes']} MB, 2 worker files, 1 feedback per "
        f"5 predictions) read from a backlog to updated metrics in {ingest['seconds']} s: "
        f"**{ingest['records_per_second']:,} records/s** with {ingest['checks']} checks on the way "
        f"(reader and state alone: {ingest['reader_only_records_per_second']:,} records/s). "
        "Target (issue 11): >= 500,000 records/s.",
        "## Check cost per window (median of 5, seconds)",
        "`drift_module`: alibi-detect tests + effect sizes for inputs and outputs; "
        "`sidecar_check`: "
        "the whole check (the window's columns, encoded when its records were added, sliced; "
        "drift, quality, estimate, live metrics, policy); `scipy_auto` / `scipy_asymp`: "
        "`ks_2samp` per numeric feature (scipy's "
        "default method, exact up to 10,000 rows / asymptotic, as alibi-detect uses) and "
        "`chi2_contingency` per categorical one, nothing else.",
        _table(
            out["check_cost"],
            [
                "window_rows",
                "features",
                "drift_module_s",
                "scipy_auto_s",
                "scipy_asymp_s",
                "sidecar_check_s",
            ],
        ),
        "## Detection on the bundled data",
        "Each period is replayed in time order through the sidecar's own check (a fresh state per "
        "period, 30% of rows with feedback). `train`: the training period itself (its reference "
        "sample is drawn from it); `held_out`: the held-out last 20% of Jan-Jun (the gate's test "
        "set: in distribution for the model); `held_out_sliding`: the same with a check every "
        "quarter window, each check counting for hysteresis (so 2 windows in a row span only "
        "1.25 windows: harder than the default); `production`: Jul-Dec from a fresh state; "
        "`after held-out`: one state through the held-out rows then production (as the demo "
        "replays them), rows counted from the first production row. `pvalue_verdict` is "
        "alibi-detect's TabularDrift batch verdict (any feature significant after the "
        "correction), for comparison; `live_below`: a live goal metric under its goal "
        "(30% of rows labelled).",
    ]
    columns = ["verdict", "train", "held_out", "held_out_sliding", "production share",
               "production rows until", "after held-out rows until"]  # fmt: skip
    for size, det in out["detection"].items():
        rows = [
            {
                "verdict": k,
                **det["false_alarm"].get(k, {}),
                "production share": det["production_share"].get(k),
                "production rows until": det["rows_until"].get(k),
                "after held-out rows until": det["rows_until_continuous"].get(k),
            }
            for k in [*det["false_alarm"], "live_below"]
        ]
        parts += [
            f"### Window {size} rows",
            "Windows checked: " + ", ".join(f"{k} {v}" for k, v in det["windows"].items()) + ".",
            _table(rows, columns),
            f"Features flagged on held-out windows: {det['held_out_flagged_features'] or 'none'}; "
            f"on production windows: {det['production_flagged_features'] or 'none'}.",
        ]
    parts += [
        "### By month (configured window)",
        "Share of windows with each verdict; `true_metric`: the first goal metric on the "
        f"window's rows with their true labels (goal: {out['goal']}).",
        _table(out["months"], ["period", "month", "windows", *MONTHLY, "true_metric"]),
        "### Sensitivity (configured window): share of windows with a verdict",
        _table(
            out["sensitivity"],
            [
                "margin",
                "share_threshold",
                "train_drift",
                "held_out_drift",
                "held_out_sliding_drift",
                "held_out_at_risk",
                "production_drift",
                "production_at_risk",
                "rows_until_drift",
                "rows_until_at_risk",
            ],
        ),
    ]
    if "live" in out:
        parts += [
            "## Following a live log",
            "A real `occam monitor` process while a writer appends predictions every 50 ms "
            "for 20 s "
            "(after an 8 s start-up); CPU in % of one core.",
            _table(
                out["live"],
                [
                    "rate_records_per_second",
                    "cpu_percent_of_one_core",
                    "rss_mb_max",
                    "written",
                    "read",
                ],
            ),
        ]
    return "\n\n".join(parts) + "\n"

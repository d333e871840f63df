"""The tables and target verdicts of bench/bench_serving.py, from its figures."""

from __future__ import annotations

import json
from typing import Any


def _find(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    return next(r for r in rows if all(r.get(k) == v for k, v in keys.items()))


#: Issue 11's serving targets, against references measured in the same run.
TARGET_VS_NOOP_C8 = 2.0
TARGET_P99_C8_MS = 5.0
TARGET_BATCH_VS_LIMIT = 0.8


def references(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per single-row cell (workers, concurrency): Occam's req/s and p99 beside the do-nothing
    BentoML endpoint's and the limit's, and the ratios Occam / do-nothing, Occam / limit."""
    single = results["single_row"]
    rows = []
    for occam in (r for r in single if r["target"] == "occam"):
        cell = {"workers": occam["workers"], "concurrency": occam["concurrency"]}
        noop, limit = _find(single, target="noop", **cell), _find(single, target="limit", **cell)
        rows.append(
            {
                **cell,
                "occam_rps": occam["rps"],
                "noop_rps": noop["rps"],
                "limit_rps": limit["rps"],
                "occam_vs_noop": round(occam["rps"] / noop["rps"], 2),
                "occam_vs_limit": round(occam["rps"] / limit["rps"], 2),
                "occam_p99_ms": occam["p99_ms"],
                "noop_p99_ms": noop["p99_ms"],
                "limit_p99_ms": limit["p99_ms"],
            }
        )
    return rows


def batch_references(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per workers count: 1,000-row requests' rows/s of Occam, the bare service and the limit,
    and the ratio Occam / limit."""
    batch = results["batch"]
    rows = []
    for occam in (r for r in batch if r["target"] == "occam"):
        cell = {"workers": occam["workers"], "concurrency": occam["concurrency"]}
        bare = _find(batch, target="bare_sklearn", **cell)
        limit = _find(batch, target="limit", **cell)
        rows.append(
            {
                **cell,
                "occam_rows_per_s": occam["rows_per_s"],
                "bare_rows_per_s": bare["rows_per_s"],
                "limit_rows_per_s": limit["rows_per_s"],
                "occam_vs_limit": round(occam["rows_per_s"] / limit["rows_per_s"], 2),
                "occam_p99_ms": occam["p99_ms"],
                "limit_p99_ms": limit["p99_ms"],
            }
        )
    return rows


def limit_verdicts(results: dict[str, Any], workers: list[int]) -> dict[str, Any]:
    """Issue 11's targets at the most workers: single-row at concurrency 8 against BentoML's
    do-nothing endpoint with Occam's p99, and 1,000-row requests against the limit."""
    most = max(workers)
    c8 = next(r for r in references(results) if r["workers"] == most and r["concurrency"] == 8)
    batch = next(r for r in batch_references(results) if r["workers"] == most)
    return {
        f"occam_vs_noop_rps_c8_w{most}": c8["occam_vs_noop"],
        "occam_vs_noop_target": f">= {TARGET_VS_NOOP_C8}",
        "occam_vs_noop_met": c8["occam_vs_noop"] >= TARGET_VS_NOOP_C8,
        f"occam_p99_ms_c8_w{most}": c8["occam_p99_ms"],
        "occam_p99_target_ms": f"<= {TARGET_P99_C8_MS}",
        "occam_p99_met": c8["occam_p99_ms"] <= TARGET_P99_C8_MS,
        f"occam_vs_limit_rps_c8_w{most}": c8["occam_vs_limit"],
        f"occam_vs_limit_rows_per_s_1000_rows_c{batch['concurrency']}_w{most}": batch[
            "occam_vs_limit"
        ],
        "occam_vs_limit_1000_rows_target": f">= {TARGET_BATCH_VS_LIMIT}",
        "occam_vs_limit_1000_rows_met": batch["occam_vs_limit"] >= TARGET_BATCH_VS_LIMIT,
    }


def verdicts(results: dict[str, Any], workers: list[int]) -> dict[str, Any]:
    """The issue's targets, computed from this run's figures."""
    single = results["single_row"]
    most = max(workers)
    speedup = (
        _find(single, target="occam", workers=most, concurrency=8)["rps"]
        / _find(single, target="bare_sklearn", workers=most, concurrency=8)["rps"]
    )

    def pooled(target: str, rows: list[dict[str, Any]]) -> float:
        return sum(r["rps"] for r in rows if r["target"] == target)

    costs = [
        1
        - _find(single, target="occam", workers=r["workers"], concurrency=r["concurrency"])["rps"]
        / r["rps"]
        for r in single
        if r["target"] == "occam_nolog"
    ]
    cpu = results["inprocess_cpu"]
    # One saturated worker (c=8, w=1): its request rate is the server's CPU time per request.
    server_us = 1e6 / _find(single, target="occam_nolog", workers=1, concurrency=8)["rps"]
    batch = results["batch"]
    p50 = {
        w: _find(single, target="occam", workers=w, concurrency=1)["p50_ms"]
        / _find(single, target="noop", workers=w, concurrency=1)["p50_ms"]
        for w in workers
    }
    batching = results["batching"]
    batch_gain = {
        c: _find(batching, endpoint="predict_batched", concurrency=c)["rps"]
        / _find(batching, endpoint="predict", concurrency=c)["rps"]
        for c in (8, 32)
    }
    return {
        f"occam_vs_bare_rps_c8_w{most}": round(speedup, 2),
        "occam_vs_bare_target": ">= 4",
        "logging_cost_single_row_pooled": round(
            1 - pooled("occam", single) / pooled("occam_nolog", single), 3
        ),
        "logging_cost_single_row_cells": [round(min(costs), 3), round(max(costs), 3)],
        "logging_cpu_share_single_row": round(cpu["logging_us_per_1_row_request"] / server_us, 3),
        "logging_cost_target": "<= 0.10",
        "logging_cost_1000_row_requests": round(
            1 - pooled("occam", batch) / pooled("occam_nolog", batch), 3
        ),
        "access_log_cost_pooled": round(
            1 - pooled("occam_accesslog", single) / pooled("occam", single), 3
        ),
        "p50_c1_vs_noop": {f"w{w}": round(v, 2) for w, v in p50.items()},
        "p50_target": "<= 1.5",
        "adaptive_batching_rps_gain": {f"c{c}": round(v, 2) for c, v in batch_gain.items()},
    }


def _reference_tables(report: dict[str, Any]) -> list[str]:
    """Occam against BentoML's do-nothing endpoint and the limit, with issue 11's targets."""
    lines = [
        "## Against the references (issue 11)",
        "",
        "`noop` is BentoML's do-nothing endpoint (its per-request floor); `limit` is uvicorn + "
        "Starlette + the bundle's ONNX forest and nothing else (bench/limit_service.py). "
        f"Targets: single-row at concurrency 8 >= {TARGET_VS_NOOP_C8}x `noop` with Occam's p99 "
        f"<= {TARGET_P99_C8_MS} ms; 1,000-row requests >= {TARGET_BATCH_VS_LIMIT}x the limit's "
        "rows/s.",
        "",
        "| workers | concurrency | Occam req/s | noop req/s | limit req/s | Occam / noop | "
        "Occam / limit | Occam p99 ms | noop p99 ms | limit p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in references(report):
        lines.append(
            f"| {r['workers']} | {r['concurrency']} | {r['occam_rps']:.0f} | "
            f"{r['noop_rps']:.0f} | {r['limit_rps']:.0f} | {r['occam_vs_noop']:.2f} | "
            f"{r['occam_vs_limit']:.2f} | {r['occam_p99_ms']:.2f} | {r['noop_p99_ms']:.2f} | "
            f"{r['limit_p99_ms']:.2f} |"
        )
    lines += [
        "",
        "| workers | concurrency | Occam rows/s | bare rows/s | limit rows/s | Occam / limit | "
        "Occam p99 ms | limit p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in batch_references(report):
        lines.append(
            f"| {r['workers']} | {r['concurrency']} | {r['occam_rows_per_s']:.0f} | "
            f"{r['bare_rows_per_s']:.0f} | {r['limit_rows_per_s']:.0f} | "
            f"{r['occam_vs_limit']:.2f} | {r['occam_p99_ms']:.1f} | {r['limit_p99_ms']:.1f} |"
        )
    return [*lines, ""]


def _bounds(report: dict[str, Any]) -> list[str]:
    """What bounds issue 11's targets, read from this run's figures (empty without them)."""
    single, batch = references(report), batch_references(report)
    c8 = [r for r in single if r["concurrency"] == 8]
    nolog = [r for r in report["batch"] if r["target"] == "occam_nolog"]
    if not c8 or not batch or not nolog:
        return []
    cell, rows = c8[-1], batch[-1]
    cpu = report["inprocess_cpu"]
    floor = cell["occam_vs_noop"] >= 2.0
    lines = [
        f"- Single-row, concurrency 8, {cell['workers']} workers: the do-nothing BentoML "
        f"endpoint answers {cell['noop_rps']:.0f} req/s, the limit {cell['limit_rps']:.0f} "
        f"({cell['limit_rps'] / cell['noop_rps']:.2f}x the do-nothing endpoint), Occam "
        f"{cell['occam_vs_noop']:.2f}x the do-nothing endpoint and {cell['occam_vs_limit']:.2f}x "
        "the limit. "
        + (
            "Occam answers below BentoML's per-request floor: its fast path (the guard answers "
            "/predict itself, serving.fast_path) skips BentoML's IO descriptors and endpoint "
            "wrapping, and tracing is off unless it samples."
            if floor
            else "BentoML's own per-request work bounds it: the 2x target needs a path below "
            "BentoML's floor, which the limit shows the machine has room for."
        ),
    ]
    bentoml_path = [
        r
        for r in report["single_row"]
        if r["target"] == "occam_bentoml_path"
        and r["workers"] == cell["workers"]
        and r["concurrency"] == 8
    ]
    if bentoml_path:
        lines.append(
            f"- The same Occam through BentoML's `@bentoml.api` endpoints (serving.fast_path "
            f"false) answers {bentoml_path[-1]['rps']:.0f} req/s there (p99 "
            f"{bentoml_path[-1]['p99_ms']:.1f} ms): the fast path is "
            f"{cell['occam_rps'] / bentoml_path[-1]['rps']:.2f}x it."
        )
    lines += [
        f"- Occam's p99 at concurrency 8 is {cell['occam_p99_ms']:.1f} ms against the "
        f"do-nothing endpoint's {cell['noop_p99_ms']:.1f} ms and the limit's "
        f"{cell['limit_p99_ms']:.1f} ms. "
        + (
            "A tail at or under the limit's (uvicorn, Starlette and the forest alone) is the "
            "machine's, not Occam's own work: read it with the load average above (the load "
            "generator and other work share the cores)."
            if cell["occam_p99_ms"] <= cell["limit_p99_ms"] * 1.1
            else "Above the limit's: Occam's own work adds to the tail."
        ),
        f"- 1,000-row requests: Occam with its log off serves "
        f"{nolog[-1]['rows_per_s'] / rows['limit_rows_per_s']:.2f}x the limit's rows/s, with "
        f"it on {rows['occam_vs_limit']:.2f}x; in process the log adds "
        f"{cpu['logging_us_per_1000_row_request'] / 1000:.1f} ms of CPU to a request that "
        f"costs {cpu['log_1000_row_us'] / 1000:.1f} ms with it.",
    ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    load = report["machine"]["load_average"]
    during = load.get("during", {})
    lines = [
        "# Serving benchmark",
        "",
        f"Run {report['created_at']} on {report['machine']['cpus']} CPUs "
        f"({report['machine']['platform']}); model {report['model']['tag']} "
        f"({report['model']['trees']} trees, {report['model']['inference']}). Closed-loop "
        + (
            "client `wrk` (one thread) in the same machine; each cell "
            f"{report['settings']['rounds']} interleaved runs of "
            f"{report['settings']['duration_s']} s (after 1 s of warm-up each), pooled (rates: "
            "requests over seconds; percentiles: wrk's, request-weighted mean over the runs)."
            if report["settings"].get("client") == "wrk"
            else "aiohttp client in the benchmark's process on the same machine (a few hundred "
            "microseconds of Python per request on the servers' cores); each cell "
            f"{report['settings']['rounds']} interleaved runs of "
            f"{report['settings']['duration_s']} s (after 0.3 s warm-up each), pooled."
        ),
        "",
        f"Load average (1 min) during the measurements: mean {during.get('mean', '?')}, "
        f"{during.get('min', '?')} to {during.get('max', '?')} ({during.get('samples', 0)} "
        f"samples; {load['before']} before, {load['after']} after) on "
        f"{report['machine']['cpus']} CPUs. Other work shared the machine: compare ratios "
        "within this run, not absolute figures across runs.",
        "",
        *_reference_tables(report),
        "## Single-row /predict",
        "",
        "| service | workers | concurrency | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["single_row"]:
        lines.append(
            f"| {r['target']} | {r['workers']} | {r['concurrency']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    lines += ["", "## 1,000-row requests", ""]
    lines += ["| service | workers | concurrency | rows/s | p50 ms per request | p99 ms |"]
    lines += ["|---|---:|---:|---:|---:|---:|"]
    for r in report["batch"]:
        lines.append(
            f"| {r['target']} | {r['workers']} | {r['concurrency']} | {r['rows_per_s']:.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    lines += ["", "## Adaptive batching (ONNX, single-row requests)", ""]
    lines += ["| endpoint | workers | concurrency | req/s | p50 ms | p99 ms | errors |"]
    lines += ["|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["batching"]:
        lines.append(
            f"| {r['endpoint']} | {r['workers']} | {r['concurrency']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} |"
        )
    cpu = report["inprocess_cpu"]
    lines += ["", "## CPU per request in process (no HTTP)", ""]
    lines += ["| rows per request | log on, us | log off, us | logging, us |"]
    lines += ["|---:|---:|---:|---:|"]
    for size in (1, 1000):
        lines.append(
            f"| {size} | {cpu[f'log_{size}_row_us']} | {cpu[f'nolog_{size}_row_us']} | "
            f"{cpu[f'logging_us_per_{size}_row_request']} |"
        )
    lines += ["", "## Targets", "", "```", json.dumps(report["verdicts"], indent=2), "```", ""]
    gain = {
        f"c{c}": round(
            _find(report["batching"], endpoint="predict_batched", concurrency=c)["rps"]
            / _find(report["batching"], endpoint="predict", concurrency=c)["rps"],
            2,
        )
        for c in (8, 32)
    }
    errors = sum(r["errors"] for r in report["batching"] if r["endpoint"] == "predict_batched")
    # What one request costs in the server this run: 1 / req/s of one saturated worker (the
    # busiest single-row cell of Occam, per worker).
    busiest = max(
        (r for r in report["single_row"] if r["target"] == "occam"),
        key=lambda r: r["rps"] / r["workers"],
    )
    request_ms = 1000 * busiest["workers"] / busiest["rps"]
    share_of_rest = cpu["logging_us_per_1000_row_request"] / cpu["nolog_1000_row_us"]
    lines += [
        "## Reading the figures",
        "",
        *_bounds(report),
        f"- Load average (1 min) before and after the run: {load['before']} and {load['after']}. "
        "The machine is shared: cells of the same row differ by up to ~15% between runs, so "
        "smaller differences (e.g. Occam against the do-nothing endpoint) are noise.",
        "- Logging cost over HTTP is 1 - rps(occam) / rps(occam_nolog), pooled over the "
        "single-row cells (per-cell values scatter with the noise). The in-process table "
        "measures the same thing with less noise: the log adds "
        f"{cpu['logging_us_per_1_row_request']} us of CPU to a single-row request, against the "
        f"{request_ms:.2f} ms a request costs in the server this run (1 / req/s of one saturated "
        "worker): "
        "`logging_cpu_share_single_row`. For 1,000-row requests the share is large: building "
        f"and encoding one record per row costs {cpu['logging_us_per_1000_row_request'] / 1000:.1f}"
        f" us per row, {share_of_rest:.2f}x what validation, inference and the answer cost "
        "together without the log.",
        "- Adaptive batching: a batched endpoint merges concurrent single-row requests, but a "
        f"row costs {cpu['nolog_1000_row_us'] / 1000:.1f} us in process in a 1,000-row request "
        f"(validation, inference, answer) while a request costs {request_ms:.2f} ms in the "
        f"server, so there is little to save: this run, {gain['c8']}x the plain endpoint's "
        f"requests/s at concurrency 8 and {gain['c32']}x at 32, and under load BentoML's "
        f'dispatcher sheds requests with 503 "process is overloaded" ({errors} in this run, '
        "the errors column). Occam keeps the plain "
        "endpoint: a 503 to a client costs more than the throughput it might win.",
        "",
    ]
    return "\n".join(lines)

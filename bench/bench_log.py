"""The prediction log's cost and stamina: what each `serving.log_durability` costs per request,
and a soak at about 80% of the measured maximum throughput with RSS sampled.

Run: `.venv/bin/python bench/bench_log.py [--soak-seconds 600]` (about 3 minutes plus the
soak). It trains a small model into a private model store (or uses `--bentoml-home` and
`--model-tag`), then:

1. In-process: CPU time of `SegmentWriter.submit` per request (1 and 100 prediction records)
   for `queue`, `write` and `fsync`, on the same disk as the work folder.
2. Served: `occam serve` (2 workers) once per durability, measured interleaved in rounds
   (closed loop, 8 clients, 1-row and 100-row requests); ratios against `queue` in the same run.
3. Soak: `occam serve` (durability `write`, 2 workers) and `occam monitor` together; the load
   generator offers 80% of the closed-loop maximum just measured, at a fixed rate, for
   `--soak-seconds`; RSS of the server processes and of the monitor sampled every 10 s; at the
   end every answered prediction must be read by the monitor (records read = answered).

4. Formats (`--update-formats`, no model or server needed): the flights rows as a client sends
   them, logged as prediction records (uuid4 ids, one day of timestamps, probabilities with
   full float precision) by `SegmentWriter` in each `serving.log_format`; bytes per prediction
   (headers included), the writer's CPU per record, and records/s of `occam.logread.read_new`
   reading the whole log in its default 16 MB steps (best of `--repeats`), against the reader
   as it was before the compact format (one `from_json` call per line) on the same files; and
   the monitor's performance estimate on the probabilities as logged against the exact ones.

The load generator shares the machine's cores with the servers: compare ratios within one run,
not absolute figures across machines. Figures go to bench/results/log.json and log.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_serving import train_model  # noqa: E402
from bench.loadgen import LoadResult, run_load  # noqa: E402
from occam.loopback import Processes, free_port, wait_http  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODES = ("queue", "write", "fsync")


def config_file(work: Path, name: str, tag: str, **serving: Any) -> Path:
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["model_name"] = tag.split(":")[0]
    raw["serving"] = {"log_dir": str(work / f"logs-{name}"), "model_tag": tag, **serving}
    raw["monitoring"] = {"state_dir": str(work / f"state-{name}"), "host": "127.0.0.1"}
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def example_rows(tag: str, n: int) -> list[dict[str, Any]]:
    from occam.bundle import get_bundle
    from service.predictor import reference_instances

    bundle = get_bundle(tag)
    return reference_instances(bundle.load_reference().head(n), bundle.schema)


def inprocess(work: Path, tag: str) -> dict[str, Any]:
    """Per durability and request size (1, 100 prediction records): CPU microseconds per
    request (all threads, the writer thread's final drain included) and the wall time the
    request's thread spends in `submit` (what the answer waits for)."""
    from occam.records import PredictionRecord
    from service.log import Durability, SegmentWriter

    rows = example_rows(tag, 100)
    records = [
        PredictionRecord(id=f"{i:032x}", ts=time.time(), model_version="v", features=row,
                         label="a", predicted="a", probabilities={"a": 0.6, "b": 0.4},
                         abstained=False, marks={"unseen_category": [], "out_of_range": [],
                                                 "missing": []})
        for i, row in enumerate(rows)
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for mode in MODES:
        for size in (1, 100):
            writer = SegmentWriter(
                work / f"inproc-{mode}-{size}", worker=0, durability=cast(Durability, mode)
            )
            writer.start()
            n = 2000 if size == 1 else 200
            start_cpu, start = time.process_time(), time.perf_counter()
            for _ in range(n):
                writer.submit(records[:size])
            submitted = time.perf_counter() - start
            writer.close()  # 'queue' writes most of it here: counted in its CPU time
            cpu = time.process_time() - start_cpu
            out[f"{mode}_{size}"] = {
                "cpu_us_per_request": round(cpu / n * 1e6, 1),
                "wall_us_per_request": round(submitted / n * 1e6, 1),
            }
    return out


def flights_records(count: int) -> list[Any]:
    """`count` prediction records of the bundled flights rows as a client sends them (numbers,
    category text, null for missing), uuid4 hex ids, times over one day, probabilities with
    full float precision; 1% carry an out-of-range mark."""
    import pandas as pd

    from occam.config import load_config
    from occam.records import MARK_KINDS, PredictionRecord

    config = load_config(ROOT / "occam.yaml")
    names = [*(config.data.numeric or []), *(config.data.categorical or [])]
    frame = pd.read_csv(ROOT / "data" / "flights.csv.gz", usecols=names)[names]
    frame = frame.astype(object).where(frame.notna(), None)
    rows = frame.to_dict(orient="records")
    rng = np.random.default_rng(0)
    late = 1 / (1 + np.exp(-rng.normal(-0.5, 1.2, count)))
    start = time.time()
    records = []
    for i in range(count):
        p = float(late[i])
        top = "late" if p >= 0.5 else "on_time"
        marks: dict[str, list[str]] = {kind: [] for kind in MARK_KINDS}
        if i % 100 == 7:
            marks["out_of_range"].append(names[0])
        records.append(
            PredictionRecord(
                id=os.urandom(16).hex(),
                ts=start + i * 86_400 / count,
                model_version="occam-flights:gb3jmqxolcirkax4",
                features=rows[i % len(rows)],
                label=top,
                predicted=top,
                probabilities={"late": p, "on_time": 1 - p},
                abstained=False,
                marks=marks,
            )
        )
    return records


def _parse_lines_per_line(data: bytes, batch: Any, decoder: Any = None) -> Any:
    """The reader's line parser as it was before the compact format (one `from_json` call per
    line), for the reference figure."""
    from pydantic_core import from_json

    from occam.logread import _valid

    lines = data.split(b"\n")
    lines.pop()
    sinks = {"prediction": batch.predictions, "feedback": batch.feedback}
    for line in lines:
        try:
            raw = from_json(line)
        except ValueError:
            batch.malformed += 1
            continue
        kind = _valid(raw)
        if kind is None:
            batch.malformed += 1
        elif kind == "prediction" and raw.get("shadow") is True:
            batch.shadow.append(raw)
        else:
            sinks.get(kind, batch.rejected).append(raw)
    return decoder


def read_rate(folder: Path, repeats: int, per_line: bool = False) -> float:
    """Records/s of `read_new` over the whole log in its default byte steps, best of
    `repeats` (`per_line`: with the parser as it was before the compact format)."""
    from occam import logread

    real = logread._parse_lines
    if per_line:
        logread._parse_lines = _parse_lines_per_line  # type: ignore[assignment]
    best = 0.0
    try:
        for _ in range(repeats):
            marks: dict[str, Any] = {}
            count, started = 0, time.perf_counter()
            while True:
                batch = logread.read_new(folder, marks)
                count += len(batch.predictions)
                marks, more = batch.segments, batch.more
                del batch
                if not more:
                    break
            best = max(best, count / (time.perf_counter() - started))
    finally:
        logread._parse_lines = real
    return best


def parse_rate(folder: Path, repeats: int) -> float:
    """Records/s of the JSON parse alone (`from_json` on the lines joined, as the reader does,
    without building the record dicts), best of `repeats`: what bounds the reader from above."""
    import gc

    from pydantic_core import from_json

    datas = [p.read_bytes().partition(b"\n")[2] for p in sorted(folder.iterdir())]
    best = 0.0
    for _ in range(repeats):
        count, started = 0, time.perf_counter()
        gc.disable()
        try:
            for data in datas:
                for start in range(0, len(data), 1_000_000):
                    end = data.rfind(b"\n", 0, start + 1_000_000) + 1
                    begin = data.rfind(b"\n", 0, start) + 1 if start else 0
                    chunk = data[begin:end]
                    values = from_json(
                        b"[" + chunk[:-1].replace(b"\n", b",") + b"]", cache_strings="keys"
                    )
                    count += len(values)
                    del values
        finally:
            gc.enable()
        best = max(best, count / (time.perf_counter() - started))
    return best


def log_formats(work: Path, count: int, repeats: int) -> dict[str, Any]:
    """Bytes per prediction, writer CPU per record and reader records/s per log format (see
    the module docstring, part 4)."""
    from monitoring.estimate import PerformanceEstimator
    from occam.logread import read_all
    from service.log import SegmentWriter

    records = flights_records(count)
    out: dict[str, Any] = {"records": count}
    read_back: dict[str, Any] = {}
    for fmt in ("json", "compact"):
        folder = work / f"format-{fmt}"
        writer = SegmentWriter(folder, worker=1, log_format=fmt).start()  # type: ignore[arg-type]
        started = time.process_time()
        for i in range(0, count, 100):  # 100-row requests
            writer.submit(records[i : i + 100])
        writer.close()
        cpu = time.process_time() - started
        size = sum(p.stat().st_size for p in folder.iterdir())
        first = sorted(folder.iterdir())[0].read_bytes().split(b"\n")
        cell = {
            "bytes_per_prediction": round(size / count, 1),
            "writer_cpu_us_per_record": round(cpu / count * 1e6, 2),
            "reader_records_per_s": round(read_rate(folder, repeats)),
            "example_line": first[1 if fmt == "compact" else 0].decode(),
        }
        if fmt == "compact":
            cell["header_line"] = first[0].decode()
            cell["parse_only_records_per_s"] = round(parse_rate(folder, repeats))
        else:
            cell["reader_records_per_s_per_line_parse"] = round(
                read_rate(folder, repeats, per_line=True)
            )
        out[fmt] = cell
        read_back[fmt] = [r for b in read_all(folder) for r in b.predictions]
    exact = np.array([[r.probabilities["late"], r.probabilities["on_time"]] for r in records])
    logged = np.array([[r["probabilities"]["late"], r["probabilities"]["on_time"]]
                       for r in read_back["compact"]])  # fmt: skip
    estimator = PerformanceEstimator(
        ["late", "on_time"], "late", ["roc_auc", "balanced_accuracy"]
    ).fit(None, None, 0)
    estimates = {}
    for window in (2_000, 50_000):
        a, b = estimator.estimate(exact[:window]), estimator.estimate(logged[:window])
        estimates[str(window)] = {
            m: {"exact": a.metrics[m].value, "logged": b.metrics[m].value,
                "difference": abs(a.metrics[m].value - b.metrics[m].value)}
            for m in a.metrics
        }  # fmt: skip
    out["probability_max_error"] = float(np.abs(exact - logged).max())
    out["estimate"] = estimates
    return out


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read().decode()
    except Exception:
        return 0, ""


@contextmanager
def process(command: list[str], log: Path, ready: str, env: dict[str, str]) -> Iterator[Any]:
    """Run `command` (output to `log`) until `ready` answered 200 ten times in a row (every
    worker loaded), yield the process, stop it with SIGTERM."""
    children = Processes(log.parent)
    proc = children.start(log.stem, command, env)
    try:
        wait_http(ready, 180, proc)
        streak = 0
        while streak < 10:
            streak = streak + 1 if _get(ready)[0] == 200 else 0
            time.sleep(0.1)
        yield proc
    finally:
        children.stop_all()


def serve(config: Path, port: int, work: Path, workers: int = 2) -> Any:
    command = [sys.executable, "-m", "occam.cli", "serve", "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    return process(command, work / f"serve-{port}.log", f"http://127.0.0.1:{port}/readyz", env)


def served(work: Path, tag: str, rounds: int, duration: float) -> dict[str, Any]:
    """Requests/s and latency per durability, interleaved rounds, 1- and 100-row requests."""
    rows = example_rows(tag, 100)
    bodies = {"1row": [{"instances": [r]} for r in rows], "100rows": [{"instances": rows}]}
    out: dict[str, Any] = {}
    ports = {mode: free_port() for mode in MODES}
    configs = {m: config_file(work, f"served-{m}", tag, log_durability=m) for m in MODES}
    from contextlib import ExitStack

    with ExitStack() as stack:
        for mode in MODES:
            stack.enter_context(serve(configs[mode], ports[mode], work))
        for shape, payloads in bodies.items():
            runs: dict[str, list[LoadResult]] = {m: [] for m in MODES}
            for _ in range(rounds):
                for mode in MODES:
                    url = f"http://127.0.0.1:{ports[mode]}/predict"
                    runs[mode].append(run_load(url, payloads, concurrency=8, duration=duration))
            pooled = {m: LoadResult.pool(r) for m, r in runs.items()}
            base = pooled["queue"].rps
            out[shape] = {
                m: {**r.to_dict(), "rps_vs_queue": round(r.rps / base, 3) if base else None}
                for m, r in pooled.items()
            }
    return out


def rss_kib(pid: int) -> int:
    """Resident set of `pid` and its descendants (KiB)."""
    total = 0
    pids = [pid]
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    for child in children.split():
        pids.append(int(child))
        grand = subprocess.run(["pgrep", "-P", child], capture_output=True, text=True).stdout
        pids += [int(g) for g in grand.split()]
    for p in pids:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        found = re.search(r"^VmRSS:\s+(\d+) kB", text, flags=re.M)
        total += int(found.group(1)) if found else 0
    return total


async def paced(
    url: str, bodies: list[bytes], rate: float, seconds: float, sample: Any
) -> dict[str, Any]:
    """Offer `rate` requests/s (open loop: a request starts on schedule whether or not earlier
    ones finished, up to 64 in flight) for `seconds`; `sample()` every 10 s."""
    answered: list[str] = []
    latencies: list[float] = []
    errors = late = 0
    limit = asyncio.Semaphore(64)
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one(body: bytes) -> None:
            nonlocal errors
            async with limit:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        payload = await response.json()
                        if response.status != 200:
                            errors += 1
                            return
                except (aiohttp.ClientError, ValueError):
                    errors += 1
                    return
                latencies.append(time.perf_counter() - t0)
                answered.extend(p["id"] for p in payload["predictions"])

        start = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        next_sample = start
        for k in range(int(rate * seconds)):
            due = start + k / rate
            now = time.perf_counter()
            if now >= next_sample:
                sample(now - start)
                next_sample += 10
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 0.5:
                late += 1
            task = asyncio.create_task(one(bodies[k % len(bodies)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        sample(time.perf_counter() - start)
        elapsed = time.perf_counter() - start
    values = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "offered_rps": rate,
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": errors,
        "late_starts": late,
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "answered_rows": len(answered),
        "answered_ids": answered,
    }


def soak(work: Path, tag: str, seconds: float) -> dict[str, Any]:
    rows = example_rows(tag, 100)
    payloads = [{"instances": [r]} for r in rows]
    bodies = [json.dumps(p).encode() for p in payloads]
    config = config_file(work, "soak", tag)
    port, monitor_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/predict"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    monitor_cmd = [sys.executable, "-m", "occam.cli", "monitor", "--config", str(config),
                   "--host", "127.0.0.1", "--port", str(monitor_port)]  # fmt: skip
    metrics_url = f"http://127.0.0.1:{monitor_port}/metrics"
    samples: list[dict[str, Any]] = []
    with serve(config, port, work) as server:
        maximum = run_load(url, payloads, concurrency=8, duration=10, warmup=1)
        rate = round(0.8 * maximum.rps, 1)
        print(f"soak: closed-loop maximum {maximum.rps:.0f} req/s; offering {rate}", flush=True)
        with process(monitor_cmd, work / "monitor.log", metrics_url, env) as monitor:

            def sample(t: float) -> None:
                samples.append({"t_s": round(t, 1), "service_rss_kib": rss_kib(server.pid),
                                "monitor_rss_kib": rss_kib(monitor.pid)})  # fmt: skip

            result = asyncio.run(paced(url, bodies, rate, seconds, sample))
            answered = result.pop("answered_ids")
            served_text = _get(f"http://127.0.0.1:{port}/metrics")[1]
            logged = sum(  # every row the service answered since it started (warm-up included)
                float(v)
                for v in re.findall(r"^occam_service_predictions_total\{[^}]*\} (\S+)$",
                                    served_text, flags=re.M)
            )  # fmt: skip
            deadline = time.monotonic() + 300
            read = -1.0
            while time.monotonic() < deadline:
                found = re.search(
                    r'^occam_records_read_total\{kind="prediction"\} (\S+)$',
                    _get(metrics_url)[1],
                    flags=re.M,
                )
                read = float(found.group(1)) if found else -1.0
                if read >= logged:
                    break
                time.sleep(1)
    third = max(len(samples) // 3, 1)

    def drift(key: str) -> dict[str, float]:
        first = float(np.median([s[key] for s in samples[:third]]))
        last = float(np.median([s[key] for s in samples[-third:]]))
        return {"first_third_median_mib": round(first / 1024, 1),
                "last_third_median_mib": round(last / 1024, 1),
                "growth_ratio": round(last / first, 3) if first else float("nan")}  # fmt: skip

    return {
        "closed_loop_max": maximum.to_dict(),
        "seconds": seconds,
        **result,
        "service_answered_rows_total": logged,
        "monitor_read_predictions": read,
        "every_answer_read": read == logged and len(answered) <= logged,
        "service_rss": drift("service_rss_kib"),
        "monitor_rss": drift("monitor_rss_kib"),
        "samples": samples,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Prediction log: durability cost and soak",
        "",
        f"Created {report['created_at']} by `{report['command']}`; {report['machine']['cpus']} "
        f"CPUs shared with other work (load average {report['machine']['load_average']}). "
        "Ratios within this run are the figures to read.",
        "",
        "## Cost per request in-process (µs): CPU (all threads) / wall time in `submit`",
        "",
        f"Measured by `{report.get('inprocess_command', report['command'])}`.",
        "",
        "| durability | 1 record | 100 records |",
        "|---|---|---|",
    ]
    inproc = report["inprocess"]
    for mode in MODES:
        one, hundred = inproc[f"{mode}_1"], inproc[f"{mode}_100"]
        lines.append(
            f"| `{mode}` | {one['cpu_us_per_request']} CPU / {one['wall_us_per_request']} wall "
            f"| {hundred['cpu_us_per_request']} CPU / {hundred['wall_us_per_request']} wall |"
        )
    if report.get("served"):
        lines += ["", "## Served (`occam serve`, 2 workers, 8 clients, interleaved rounds)", "",
                  "| request | durability | req/s | vs queue | p50 ms | p99 ms |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for shape, cells in report["served"].items():
            for mode, r in cells.items():
                lines.append(
                    f"| {shape} | `{mode}` | {r['rps']} | {r['rps_vs_queue']} | {r['p50_ms']} "
                    f"| {r['p99_ms']} |"
                )
    f = report.get("formats")
    if f:
        lines += [
            "",
            f"## Log formats ({f['records']:,} flights prediction records, 100 per request)",
            "",
            f"Measured by `{f['command']}`; {f['cpus']} CPUs, load average {f['load_average']}.",
            "",
            "| `serving.log_format` | bytes per prediction | writer CPU µs per record "
            "| reader records/s (`read_new`) |",
            "|---|---:|---:|---:|",
        ]
        for fmt in ("json", "compact"):
            c = f[fmt]
            lines.append(
                f"| `{fmt}` | {c['bytes_per_prediction']} | {c['writer_cpu_us_per_record']} "
                f"| {c['reader_records_per_s']:,} |"
            )
        lines += [
            f"| `json`, the reader before the compact format (one `from_json` per line) | | "
            f"| {f['json']['reader_records_per_s_per_line_parse']:,} |",
            f"| `compact`, the JSON parse alone (no record dicts built) | | "
            f"| {f['compact'].get('parse_only_records_per_s', 0):,} |",
            "",
            "The reader gives each record as a dict (the shape the monitor's window is built "
            "from): for `json` lines pydantic-core builds those dicts in Rust as it parses; for "
            "compact lines Python builds them (`CompactDecoder.decode_all`: a dict each for the "
            "record, its features and its probabilities), which is most of its time; the parse "
            "alone is the rate the format itself allows.",
            "",
            f"Compact header: `{f['compact']['header_line']}`",
            "",
            f"Compact prediction line: `{f['compact']['example_line']}`",
            "",
            f"JSON prediction line: `{f['json']['example_line']}`",
            "",
            f"Probabilities are logged to 4 decimals in compact lines (largest error "
            f"{f['probability_max_error']:.2g}). The monitor's estimate (CBPE, "
            "`monitoring.estimate.PerformanceEstimator`) on the logged against the exact "
            "probabilities:",
            "",
            "| window rows | metric | exact | as logged | difference |",
            "|---:|---|---:|---:|---:|",
        ]
        for window, metrics in f["estimate"].items():
            for m, e in metrics.items():
                lines.append(
                    f"| {window} | {m} | {e['exact']:.6f} | {e['logged']:.6f} "
                    f"| {e['difference']:.1e} |"
                )
    s = report.get("soak")
    if s:
        lines += [
            "",
            f"## Soak ({s['seconds']:.0f} s, durability `write`, service + monitor)",
            "",
            f"- closed-loop maximum {s['closed_loop_max']['rps']} req/s (1-row requests); "
            f"offered {s['offered_rps']} req/s, achieved {s['achieved_rps']}, "
            f"{s['errors']} errors, {s['late_starts']} late starts, p50 {s['p50_ms']} ms, "
            f"p99 {s['p99_ms']} ms",
            f"- rows answered during the soak {s['answered_rows']}; answered since start "
            f"(occam_service_predictions_total, warm-up included) "
            f"{s['service_answered_rows_total']:.0f}, read by the monitor "
            f"{s['monitor_read_predictions']:.0f}: every answer read = {s['every_answer_read']}",
            f"- service RSS (all workers) median first third "
            f"{s['service_rss']['first_third_median_mib']} MiB, last third "
            f"{s['service_rss']['last_third_median_mib']} MiB "
            f"(x{s['service_rss']['growth_ratio']})",
            f"- monitor RSS median first third {s['monitor_rss']['first_third_median_mib']} MiB, "
            f"last third {s['monitor_rss']['last_third_median_mib']} MiB "
            f"(x{s['monitor_rss']['growth_ratio']})",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bentoml-home", type=Path, help="use this model store (with --model-tag)")
    parser.add_argument("--model-tag", help="a promoted bundle in --bentoml-home")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds per cell")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per cell and round")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="0: no soak")
    parser.add_argument("--skip-served", action="store_true", help="only in-process and soak")
    parser.add_argument(
        "--update-inprocess",
        action="store_true",
        help="measure the in-process costs only, into the existing bench/results/log.json",
    )
    parser.add_argument(
        "--update-formats",
        action="store_true",
        help="measure the log formats only (no model, no server), into bench/results/log.json",
    )
    parser.add_argument("--records", type=int, default=200_000, help="records for --update-formats")
    parser.add_argument("--repeats", type=int, default=3, help="reads per figure, best kept")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="occam-bench-log-"))
    if args.update_formats:
        load = round(os.getloadavg()[0], 2)
        formats = log_formats(work, args.records, args.repeats)
        formats["command"] = "python bench/bench_log.py " + " ".join(sys.argv[1:])
        formats["cpus"] = os.cpu_count()
        formats["load_average"] = {"before": load, "after": round(os.getloadavg()[0], 2)}
        kept = json.loads((RESULTS / "log.json").read_text())
        kept["formats"] = formats
        (RESULTS / "log.json").write_text(json.dumps(kept, indent=2))
        (RESULTS / "log.md").write_text(markdown(kept))
        print(markdown(kept))
        shutil.rmtree(work, ignore_errors=True)
        return
    home = args.bentoml_home or work / "bentoml"
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    load_before = round(os.getloadavg()[0], 2)
    started = time.monotonic()
    tag = args.model_tag or train_model(home, work)
    print(f"model {tag}; work folder {work}", flush=True)
    if args.update_inprocess:
        kept = json.loads((RESULTS / "log.json").read_text())
        kept["inprocess"] = inprocess(work, tag)
        kept["inprocess_command"] = "python bench/bench_log.py " + " ".join(sys.argv[1:])
        (RESULTS / "log.json").write_text(json.dumps(kept, indent=2))
        (RESULTS / "log.md").write_text(markdown(kept))
        shutil.rmtree(work, ignore_errors=True)
        return
    report: dict[str, Any] = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_log.py " + " ".join(sys.argv[1:]),
        "inprocess": inprocess(work, tag),
    }
    print(json.dumps(report["inprocess"]), flush=True)
    if not args.skip_served:
        report["served"] = served(work, tag, args.rounds, args.duration)
        print(json.dumps(report["served"]), flush=True)
    if args.soak_seconds > 0:
        report["soak"] = soak(work, tag, args.soak_seconds)
    report["machine"] = {
        "load_average": {"before": load_before, "after": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    report["wall_time_s"] = round(time.monotonic() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = RESULTS / "log.json"
    if previous.is_file() and "formats" in json.loads(previous.read_text()):
        report["formats"] = json.loads(previous.read_text())["formats"]  # measured apart
    (RESULTS / "log.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "log.md").write_text(markdown(report))
    print(markdown(report))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

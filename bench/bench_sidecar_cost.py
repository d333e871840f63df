"""What the sidecar costs the service: single-row /predict throughput of Occam as shipped (2
workers, logging on, concurrency 8) with the sidecar running and with it paused, interleaved in
one run; plus the sidecar's CPU and memory while the service is under that load.

A warm-up load first lets the sidecar load the bundle's reference and its drift backend and
run its first check (one-time work, about 3 s of CPU). "Paused" is SIGSTOP on the real `occam
monitor` process (SIGCONT resumes it), so both cells hit the same service and log. On
resuming, the sidecar first catches up on what was written while it was paused, with no load
running (`caught_up`); the "with" cell then measures its steady work on the records served
during that cell.

Run: `.venv/bin/python bench/bench_sidecar_cost.py` (about 2 minutes). Figures go to
bench/results/sidecar_cost.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_serving import free_port, serve, train_model  # noqa: E402
from bench.loadgen import CLIENTS, LoadResult, default_client, load_function  # noqa: E402
from occam.loopback import rows_as_instances, scrape, wait_http  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def config_file(work: Path, tag: str, monitor_port: int) -> Path:
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["model_name"] = tag.split(":")[0]
    raw["serving"] = {"log_dir": str(work / "logs"), "log_predictions": True}
    raw["monitoring"] = {"port": monitor_port, "host": "127.0.0.1"}
    path = work / "occam.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def payloads(n: int) -> list[dict[str, Any]]:
    from occam.config import load_config
    from training.data import load_frame, split_frame

    config = load_config(ROOT / "occam.yaml")
    rows = split_frame(load_frame(config.data.path), config).production.iloc[:n]
    features = [*(config.data.numeric or []), *(config.data.categorical or [])]
    return [{"instances": [row]} for row in rows_as_instances(rows, features)]


def caught_up(url: str, timeout: float = 60.0) -> None:
    """Wait until the resumed sidecar has read the log to its end (`occam_unread_log_bytes`
    0; no load runs meanwhile), so that the next "with" cell measures its steady work on the
    records served in that cell, not also the backlog of the paused cell."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scrape(url).get(("occam_unread_log_bytes", ()), 1.0) == 0.0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"the sidecar did not catch up within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=default_client(),
        help="load generator (bench/loadgen.py; default: wrk when installed)",
    )
    args = parser.parse_args()
    load = load_function(args.client)
    with tempfile.TemporaryDirectory(prefix="occam-sidecar-bench-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "store")
        os.environ["BENTOML_DO_NOT_TRACK"] = "True"
        tag = train_model(work / "store", work)
        monitor_port = free_port()
        config = config_file(work, tag, monitor_port)
        bodies = payloads(2000)
        env = {"OCCAM_CONFIG": str(config), "OCCAM_MODEL_TAG": tag}
        with serve("service.app:Occam", 2, env, bodies[0], work / "service.log") as url:
            monitor = subprocess.Popen(
                [sys.executable, "-m", "occam.cli", "monitor", "--config", str(config)],
                stdout=(work / "monitor.log").open("wb"), stderr=subprocess.STDOUT,
            )  # fmt: skip
            metrics = f"http://127.0.0.1:{monitor_port}/metrics"
            wait_http(metrics, 120, monitor)
            process = psutil.Process(monitor.pid)
            # warm-up: the sidecar loads the bundle's reference and its drift backend on its
            # first records and check (about 3 s of CPU, once); no cell should carry that
            load(f"{url}/predict", bodies, concurrency=args.concurrency, duration=2, warmup=0)
            caught_up(metrics)
            deadline = time.monotonic() + 60
            while scrape(metrics).get(("occam_checks_total", ()), 0.0) < 1:
                assert time.monotonic() < deadline, "the sidecar ran no check"
                time.sleep(0.1)
            runs: dict[str, list[LoadResult]] = {"without": [], "with": []}
            cpu: list[float] = []
            rss: list[float] = []
            for _ in range(args.rounds):
                monitor.send_signal(signal.SIGSTOP)
                runs["without"].append(load(
                    f"{url}/predict", bodies, concurrency=args.concurrency,
                    duration=args.seconds, warmup=0.3))  # fmt: skip
                monitor.send_signal(signal.SIGCONT)
                caught_up(metrics)
                process.cpu_percent(None)
                runs["with"].append(load(
                    f"{url}/predict", bodies, concurrency=args.concurrency,
                    duration=args.seconds, warmup=0.3))  # fmt: skip
                cpu.append(process.cpu_percent(None))
                rss.append(process.memory_info().rss / 2**20)
            time.sleep(3)
            read = scrape(f"http://127.0.0.1:{monitor_port}/metrics").get(
                ("occam_records_read_total", (("kind", "prediction"),)), 0.0
            )
            monitor.send_signal(signal.SIGTERM)
            monitor.wait(30)
        without, with_ = LoadResult.pool(runs["without"]), LoadResult.pool(runs["with"])
        sent = sum(r.requests for rs in runs.values() for r in rs)
    result = {
        "command": "python bench/bench_sidecar_cost.py",
        "workers": 2,
        "concurrency": args.concurrency,
        "client": args.client,
        "rounds": args.rounds,
        "seconds_per_cell": args.seconds,
        "rps_without_sidecar": without.rps,
        "rps_with_sidecar": with_.rps,
        "throughput_ratio": with_.rps / without.rps,
        "p99_ms_without": without.p99_ms,
        "p99_ms_with": with_.p99_ms,
        "sidecar_cpu_percent_of_one_core_mean": sum(cpu) / len(cpu),
        "sidecar_cpu_percent_of_one_core_max": max(cpu),
        "sidecar_rss_mb_max": max(rss),
        "records_read_by_sidecar": read,
        "requests_measured": sent,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sidecar_cost.json").write_text(json.dumps(result, indent=2))
    lines = [
        "# Sidecar cost to the service", "",
        f"Command: `{result['command']}`; Occam as shipped, 2 workers, logging on, single-row "
        f"/predict at concurrency {args.concurrency}; {args.rounds} interleaved rounds of "
        f"{args.seconds:.0f} s per cell on {os.cpu_count()} cores (service, load generator "
        f"`{args.client}` and sidecar share them).", "",
        "| | req/s | p99 ms |", "|---|---:|---:|",
        f"| sidecar paused | {without.rps:.0f} | {without.p99_ms:.1f} |",
        f"| sidecar running | {with_.rps:.0f} | {with_.p99_ms:.1f} |", "",
        f"Throughput with / without: **{result['throughput_ratio']:.3f}** "
        "(issue 11: cost <= 5%, a ratio >= 0.95). "
        "Sidecar CPU while the service is loaded: mean "
        f"{result['sidecar_cpu_percent_of_one_core_mean']:.0f}% "
        f"(max {result['sidecar_cpu_percent_of_one_core_max']:.0f}%) of one core; RSS max "
        f"{result['sidecar_rss_mb_max']:.0f} MB. Records read by the sidecar: {read:.0f} "
        f"(predictions served in the measured cells and warm-ups: at least {sent}).", "",
    ]  # fmt: skip
    (RESULTS / "sidecar_cost.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Serving speed: Occam as shipped against Occam with logging off, Occam with BentoML's access
log on, Occam through BentoML's endpoints (serving.fast_path false), a bare BentoML service
around the same scikit-learn pipeline, a do-nothing BentoML endpoint (BentoML's floor) and the
limit (uvicorn + Starlette + the bundle's ONNX forest, nothing else: bench/limit_service.py),
all up in the same run; 1,000-row requests; the ratios Occam / do-nothing and Occam / limit
against issue 11's targets; the CPU the prediction log adds per request; and whether BentoML's
adaptive batching helps concurrent single-row traffic.

Run: `.venv/bin/python bench/bench_serving.py` (about 7-8 minutes on 2 cores; a short run,
`--workers 2 --concurrency 1 8 --rounds 3 --duration 1`, takes about 3). It trains a 100-tree
model on the bundled data into a private model store (or uses `--bentoml-home` and
`--model-tag`), starts each service with `bentoml serve` (the limit with `uvicorn --workers`)
on a free loopback port, and drives it with `wrk` (one thread; `--client wrk`, the default when
it is installed) or a closed-loop aiohttp client in this process (`--client aiohttp`, which
costs a few hundred microseconds of Python per request on the cores the servers also use, and
so flattens the ratios towards 1); see bench/loadgen.py. Client and servers share the
machine's cores: compare ratios within one run, not absolute figures across machines. The
1-minute load average is sampled during the measurements and reported. Figures go to
bench/results/serving.json and bench/results/serving.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loadgen import CLIENTS, LoadResult, default_client, load_function  # noqa: E402
from bench.serving_report import limit_verdicts, markdown, verdicts  # noqa: E402
from occam.loopback import free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {
    "occam": "service.app:Occam",
    "occam_nolog": "service.app:Occam",
    "occam_accesslog": "service.app:Occam",
    "occam_bentoml_path": "service.app:Occam",
    "bare_sklearn": "bench.bare_service:BareSklearn",
    "noop": "bench.bare_service:Noop",
    "limit": "bench.limit_service:app",
}
#: Served by `uvicorn --workers N` rather than `bentoml serve`.
UVICORN_TARGETS = {"bench.limit_service:app"}
SERVICE_NAMES = {
    "service.app:Occam": "occam",
    "bench.bare_service:BareSklearn": "bare",
    "bench.bare_service:Noop": "noop",
    "bench.bare_service:OnnxProbe": "probe",
}


def train_model(home: Path, work: Path) -> str:
    """Train the default config with a short search (100 trees as shipped); the bundle tag."""
    from occam.config import load_config
    from training.pipeline import train

    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"] |= {"reports_dir": str(work / "reports"), "reference_rows": 2000}
    raw["search"] |= {"n_candidates": 2, "max_rounds": 1, "min_rounds": 1, "cv": 2, "n_jobs": 2}
    raw["evaluation"]["bootstrap"] = 50
    config = work / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = train(load_config(config))
    if not result.promoted:
        raise SystemExit("the bench model did not pass its gates; nothing to serve")
    return str(result.bundle.tag)


def serving_config(work: Path, name: str, tag: str, log: bool, fast_path: bool = True) -> Path:
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["model_name"] = tag.split(":")[0]
    raw["serving"] = {
        "log_dir": str(work / f"logs-{name}"),
        "log_predictions": log,
        "fast_path": fast_path,
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _status(url: str, body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except Exception:
        return 0


@contextmanager
def serve(
    target: str, workers: int, env: dict[str, str], probe: Any, log: Path, options: str = ""
) -> Iterator[str]:
    """Run `bentoml serve target` with `workers` (and BentoML config `options`); yield its base
    URL once every worker answers."""
    port = free_port()
    full_env = {**os.environ, **env, "BENTOML_DO_NOT_TRACK": "True"}
    if target in UVICORN_TARGETS:
        command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--no-access-log",
                   "--log-level", "warning"]  # fmt: skip
    else:
        name = SERVICE_NAMES[target]
        full_env["BENTOML_CONFIG_OPTIONS"] = f"services.{name}.workers={workers} {options}".strip()
        command = [sys.executable, "-m", "bentoml", "serve", target, "--host", "127.0.0.1",
                   "--port", str(port), "--working-dir", str(ROOT)]  # fmt: skip
    with open(log, "ab") as sink:
        process = subprocess.Popen(
            command, env=full_env, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline, streak = time.monotonic() + 120, 0
        while streak < 20:  # consecutive good answers: both workers have loaded their model
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target} did not start; see {log}")
            ok = _status(f"{url}/readyz") == 200 and _status(f"{url}/predict", probe) == 200
            streak = streak + 1 if ok else 0
            time.sleep(0.02 if ok else 0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def interleaved(
    urls: dict[str, str],
    payloads: list[Any],
    concurrency: int,
    rounds: int,
    duration: float,
    client: str,
) -> dict[str, LoadResult]:
    """Measure every URL `rounds` times with `client` (bench/loadgen.py), one after the other in
    each round, and pool the runs: a background load that comes and goes on a shared machine
    then hits all cells alike."""
    runs: dict[str, list[LoadResult]] = {name: [] for name in urls}
    load = load_function(client)
    for _ in range(rounds):
        for name, url in urls.items():
            runs[name].append(
                load(url, payloads, concurrency=concurrency, duration=duration, warmup=0.3)
            )
    return {name: LoadResult.pool(results) for name, results in runs.items()}


def inprocess_costs(tag: str, work: Path) -> dict[str, Any]:
    """CPU time per request of `Runtime.predict` (validation, inference, answer, records) with
    and without the prediction log, in this process and without HTTP: a noise-free measure of
    what logging adds. The log time includes writing every record out (`close` drains)."""
    import functools

    from prometheus_client import CollectorRegistry, Counter

    from occam.bundle import get_bundle
    from service.metrics import ServiceMetrics
    from service.predictor import reference_instances
    from service.runtime import Runtime

    bundle = get_bundle(tag)
    rows = reference_instances(bundle.load_reference().head(1000), bundle.schema)
    costs: dict[str, Any] = {}
    for log in (True, False):
        config = serving_config(work, f"inprocess-{log}", tag, log=log)
        for size, repeats in ((1, 5000), (1000, 30)):
            registry = CollectorRegistry()
            metrics = ServiceMetrics.create(functools.partial(Counter, registry=registry))
            runtime = Runtime.start(config, tag, metrics=metrics)
            runtime.load()
            batches = [rows[i : i + size] for i in range(0, len(rows), size)]
            start = time.process_time()  # all threads: the log writer's work counts
            for i in range(repeats):
                runtime.predict(batches[i % len(batches)])
            runtime.close()  # writes out what is still queued
            per_request = (time.process_time() - start) / repeats * 1e6
            costs[f"{'log' if log else 'nolog'}_{size}_row_us"] = round(per_request, 1)
    for size in (1, 1000):
        costs[f"logging_us_per_{size}_row_request"] = round(
            costs[f"log_{size}_row_us"] - costs[f"nolog_{size}_row_us"], 1
        )
    return costs


def limit_env(tag: str) -> dict[str, str]:
    """What bench/limit_service.py reads: the bundle's ONNX file, features and classes."""
    from occam.bundle import get_bundle

    bundle = get_bundle(tag)
    if bundle.onnx_path is None:
        raise SystemExit(f"{tag} has no ONNX model; the limit server needs one")
    features = [[spec.name, spec.kind] for spec in bundle.schema.features]
    return {
        "BENCH_ONNX_PATH": str(bundle.onnx_path),
        "BENCH_FEATURES": json.dumps(features),
        "BENCH_CLASSES": json.dumps(bundle.classes),
    }


def measure(args: argparse.Namespace, tag: str, work: Path) -> dict[str, Any]:
    from occam.bundle import get_bundle
    from service.predictor import reference_instances

    bundle = get_bundle(tag)
    rows = reference_instances(bundle.load_reference().head(1000), bundle.schema)
    single = [{"instances": [row]} for row in rows]
    batch = [{"instances": rows}]
    configs = {
        "occam": serving_config(work, "occam", tag, log=True),
        "occam_nolog": serving_config(work, "occam_nolog", tag, log=False),
        "occam_bentoml_path": serving_config(
            work, "occam_bentoml_path", tag, log=True, fast_path=False
        ),
    }
    log = work / "servers.log"
    results: dict[str, list[dict[str, Any]]] = {"single_row": [], "batch": [], "batching": []}
    for workers in args.workers:
        with ExitStack() as stack:  # all four services up at once, measured in turn
            urls = {}
            for name, target in TARGETS.items():
                env = {"BENCH_MODEL_TAG": tag, "OCCAM_MODEL_TAG": tag, **limit_env(tag)}
                env["OCCAM_CONFIG"] = str(configs.get(name, configs["occam"]))
                extra = "services.occam.logging.access.enabled=true" if "access" in name else ""
                url = stack.enter_context(serve(target, workers, env, single[0], log, extra))
                urls[name] = f"{url}/predict"
            for concurrency in args.concurrency:
                cells = interleaved(
                    urls, single, concurrency, args.rounds, args.duration, args.client
                )
                for name, result in cells.items():
                    row = {"target": name, "workers": workers, "concurrency": concurrency}
                    results["single_row"].append({**row, **result.to_dict()})
                    print(
                        f"{name:12} w={workers} c={concurrency:<3} {result.to_dict()}", flush=True
                    )
            del urls["noop"], urls["occam_accesslog"], urls["occam_bentoml_path"]
            concurrency = args.batch_concurrency
            cells = interleaved(urls, batch, concurrency, args.rounds, args.duration, args.client)
            for name, result in cells.items():
                figures = {**result.to_dict(), "rows_per_s": round(result.rps * len(rows))}
                row = {"target": name, "workers": workers, "concurrency": concurrency}
                results["batch"].append({**row, **figures})
                print(f"{name:12} w={workers} batch {figures}", flush=True)
    workers = max(args.workers)
    probe = "bench.bare_service:OnnxProbe"
    with serve(probe, workers, {"BENCH_MODEL_TAG": tag}, single[0], log) as url:
        urls = {endpoint: f"{url}/{endpoint}" for endpoint in ("predict", "predict_batched")}
        for concurrency in (8, 32):
            cells = interleaved(urls, single, concurrency, args.rounds, args.duration, args.client)
            for endpoint, result in cells.items():
                row = {"endpoint": endpoint, "workers": workers, "concurrency": concurrency}
                results["batching"].append({**row, **result.to_dict()})
                print(f"{endpoint:16} c={concurrency:<3} {result.to_dict()}", flush=True)
    return results


def targets(results: dict[str, Any], workers: list[int]) -> dict[str, Any]:
    """Issue 11's verdicts (they need concurrency 8), then the earlier ones, or why there are
    none (those need 1 worker and concurrency 1 and 8)."""
    try:
        found = limit_verdicts(results, workers)
    except StopIteration:
        found = {"issue_11_note": "issue 11's targets need --concurrency including 8"}
    try:
        return {**found, **verdicts(results, workers)}
    except StopIteration:
        note = "these targets need --workers including 1 and --concurrency including 1 and 8"
        return {**found, "note": note}


@contextmanager
def load_sampler(every: float = 2.0) -> Iterator[list[float]]:
    """Sample the 1-minute load average every `every` seconds while the block runs (a thread);
    yields the list the samples go into."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(os.getloadavg()[0])
            stop.wait(every)

    thread = threading.Thread(target=sample, name="load-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bentoml-home", type=Path, help="use this model store (with --model-tag)")
    parser.add_argument("--model-tag", help="a promoted bundle in --bentoml-home")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per cell and round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per cell")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--batch-concurrency", type=int, default=2, help="clients sending 1,000-row requests"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, store)")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default=default_client(),
        help="load generator (default: wrk when installed)",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="occam-bench-serving-"))
    home = args.bentoml_home or work / "bentoml"
    os.environ["BENTOML_HOME"] = str(home)  # before anything imports bentoml
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    started = time.monotonic()
    load_before = round(os.getloadavg()[0], 2)
    tag = args.model_tag or train_model(home, work)
    print(f"model {tag}; work folder {work}", flush=True)
    costs = inprocess_costs(tag, work)
    print(f"in-process CPU per request: {costs}", flush=True)
    with load_sampler() as samples:
        measured = measure(args, tag, work)
    results = {**measured, "inprocess_cpu": costs}
    from occam.bundle import get_bundle

    bundle = get_bundle(tag)
    forest = bundle.load_pipeline().steps[-1][1]
    if hasattr(forest, "calibrated_classifiers_"):  # the calibrated forest wraps one forest
        forest = forest.calibrated_classifiers_[0].estimator
    report = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "load_average": {
                "before": load_before,
                "during": {
                    "min": round(min(samples), 2),
                    "mean": round(sum(samples) / len(samples), 2),
                    "max": round(max(samples), 2),
                    "samples": len(samples),
                },
                "after": round(os.getloadavg()[0], 2),
            },
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "model": {
            "tag": tag,
            "trees": len(forest.estimators_),
            "inference": bundle.metadata.inference.format,
        },
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "batch_concurrency": args.batch_concurrency,
            "client": args.client,
        },
        **results,
        "verdicts": targets(results, args.workers),
        "wall_time_s": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "serving.md").write_text(markdown(report))
    print(json.dumps(report["verdicts"], indent=2))
    print(f"wrote {RESULTS / 'serving.md'} in {report['wall_time_s']} s")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

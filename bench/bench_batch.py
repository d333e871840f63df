"""In-process cost of one /predict request, without HTTP: `Runtime.predict` (validate, infer,
build the answers and the log records, write them with `serving.log_durability: write`) for
1-row and 1,000-row requests, with the row-by-row validation and with the columnar one.

Run: `.venv/bin/python bench/bench_batch.py --bentoml-home H --model-tag T` (a promoted bundle,
e.g. from bench/bench_serving.py's `train_model`; about a minute). Each cell is timed in
interleaved rounds (median of the rounds' mean CPU time per request, `time.process_time`), so
a neighbour's load slows both alike: compare the ratio within a run, not absolute times across
runs or machines. Figures go to bench/results/batch.json and batch.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


def _runtime(home: Path, tag: str, work: Path) -> Any:
    os.environ["BENTOML_HOME"] = str(home)
    from service.runtime import Runtime

    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["output"]["model_name"] = tag.split(":")[0]
    raw["serving"] = {"log_dir": str(work / "logs"), "log_durability": "write"}
    config = work / "occam.yaml"
    config.write_text(yaml.safe_dump(raw))
    runtime = Runtime.start(config, tag)
    runtime.load()
    if not runtime.ready:
        raise SystemExit(f"the model did not load: {runtime.failure}")
    return runtime


def _rows(runtime: Any, count: int) -> list[dict[str, Any]]:
    from service.predictor import reference_instances

    reference = runtime.bundle.load_reference()
    rows = reference_instances(reference, runtime.bundle.schema)
    return [rows[i % len(rows)] for i in range(count)]


def _time(runtime: Any, rows: list[dict[str, Any]], seconds: float) -> float:
    """Mean CPU seconds per `predict` call over about `seconds`."""
    calls = 0
    start = time.process_time()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = runtime.predict(rows)
        assert reply.status == 200, reply.body
        calls += 1
    return (time.process_time() - start) / calls


def measure(runtime: Any, rounds: int, seconds: float) -> dict[str, Any]:
    import service.validation as validation

    columnar = validation.COLUMNAR_ROWS
    cells: dict[str, list[float]] = {}
    for _ in range(rounds):
        for size in (1, 1000):
            rows = _rows(runtime, size)
            for path, threshold in (("rows", 10**9), ("columnar", columnar)):
                validation.COLUMNAR_ROWS = threshold
                cells.setdefault(f"{size}/{path}", []).append(_time(runtime, rows, seconds))
    validation.COLUMNAR_ROWS = columnar
    return {key: statistics.median(values) for key, values in cells.items()}


def markdown(report: dict[str, Any]) -> str:
    cells = report["cpu_seconds_per_request"]
    lines = [
        "# In-process cost of one /predict request (validate, infer, answer, log)",
        "",
        f"`{report['command']}` at {report['created_at']}; load average before "
        f"{report['load_average']}. CPU time per request, median of interleaved rounds; "
        "the machine is shared: read the ratio, not the absolute figures.",
        "",
        "| rows per request | row-by-row validation | columnar validation | ratio |",
        "|---|---|---|---|",
    ]
    for size in (1, 1000):
        rows, columnar = cells[f"{size}/rows"], cells[f"{size}/columnar"]
        lines.append(
            f"| {size:,} | {rows * 1e3:.3f} ms | {columnar * 1e3:.3f} ms | {columnar / rows:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bentoml-home", type=Path, required=True)
    parser.add_argument("--model-tag", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per cell and round")
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    load = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="occam-bench-batch-") as work:
        runtime = _runtime(args.bentoml_home, args.model_tag, Path(work))
        try:
            cells = measure(runtime, args.rounds, args.seconds)
        finally:
            runtime.close()
    report = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python bench/bench_batch.py " + " ".join(sys.argv[1:]),
        "load_average": load,
        "cpu_seconds_per_request": cells,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "batch.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "batch.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Promotion and rollback under load: does a running `occam serve` switch models without a
failed request, and how soon?

A 100-tree model is trained on the bundled data into a private model store (bench_serving's
`train_model`), and a second bundle of the same pipeline is saved as `stage=candidate` (the
challenger: same answers, another version). `occam serve` runs with 2 workers on a free
loopback port; 8 client threads send single-row /predict calls back to back (keep-alive
connections) and record every answer's status and `model_version`. After a warm-up the bench
runs `occam promote <challenger>`, waits until answers come from it, runs `occam rollback`,
waits until answers come from the champion again, and stops.

Reported: requests and failed requests (anything but 200; must be 0), the time from the start
of the promote (rollback) command to the first answer by the new version and to the last answer
by the old one, and the version of every answer, phase by phase. The figures depend on
`serving.reload_interval_seconds` (each worker looks every interval: `--interval`, default the
config's 5 s); the clients share the machine's cores with the server.

Run: `.venv/bin/python bench/bench_promotion.py` (about 3 minutes). Writes
bench/results/promotion.json and promotion.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
_HOME = Path(tempfile.mkdtemp(prefix="occam-bench-promotion-"))
os.environ["BENTOML_HOME"] = str(_HOME / "bentoml")
os.environ["OCCAM_AUDIT_LOG"] = str(_HOME / "audit.jsonl")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

from bench.bench_serving import train_model  # noqa: E402
from occam.bundle import get_bundle, save_bundle  # noqa: E402
from occam.demo import free_port, http_json  # noqa: E402
from service.predictor import reference_instances  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 8


class Traffic:
    """`threads` clients sending one row per request until stopped; every answer is kept as
    (monotonic time, status, model_version)."""

    def __init__(self, port: int, row: dict[str, Any], threads: int) -> None:
        self.port = port
        self.body = json.dumps({"instances": [row]}).encode()
        self.answers: list[tuple[float, int, str | None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Content-Type": "application/json"}
        while not self._stop.is_set():
            try:
                connection.request("POST", "/predict", self.body, headers)
                response = connection.getresponse()
                status, data = response.status, response.read()
                version = json.loads(data).get("model_version") if status == 200 else None
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                status, version = 0, None
            with self._lock:
                self.answers.append((time.monotonic(), status, version))
        connection.close()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def first_after(self, since: float, version: str, timeout: float = 120) -> float:
        """Monotonic time of the first answer by `version` at or after `since` (waits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [t for t, _, v in self.answers if t >= since and v == version]
            if found:
                return min(found)
            time.sleep(0.02)
        raise SystemExit(f"no answer by {version} within {timeout} s of the change")


def occam(config: Path, *args: str) -> None:
    command = [sys.executable, "-m", "occam.cli", *args, "--config", str(config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stdout}{done.stderr}")


def serve(config: Path, workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    command = [sys.executable, "-m", "occam.cli", "serve", "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    deadline, streak = time.monotonic() + 180, 0
    while streak < 20:  # consecutive ready answers: every worker has loaded its model
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"occam serve did not start; see {log}")
        try:
            ready, _ = http_json(f"http://127.0.0.1:{port}/readyz", timeout=2, method="GET")
        except OSError:
            ready = 0
        streak = streak + 1 if ready == 200 else 0
        time.sleep(0.05 if ready == 200 else 0.3)
    return process, port


def phase_versions(
    answers: list[tuple[float, int, str | None]], start: float, end: float
) -> dict[str, int]:
    counted = Counter(v or "(no version)" for t, _, v in answers if start <= t < end)
    return dict(counted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=float, default=None, help="reload interval (s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hold", type=float, default=8.0, help="seconds of traffic per phase")
    args = parser.parse_args()
    work = _HOME / "work"
    work.mkdir(parents=True)
    champion = get_bundle(train_model(_HOME, work))
    challenger = save_bundle(
        champion.name,
        pipeline=champion.load_pipeline(),
        metadata=champion.metadata,
        reference=champion.load_reference(),
        promoted=False,
        extra_files={"model.onnx": (champion.path / "model.onnx").read_bytes()},
        holdout=champion.load_holdout(),
    )
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["model_name"] = champion.name
    raw["serving"] = {"log_dir": str(work / "logs")}
    if args.interval is not None:
        raw["serving"]["reload_interval_seconds"] = args.interval
    config = work / "serve.yaml"
    config.write_text(yaml.safe_dump(raw))
    from occam.config import load_config

    interval = load_config(config).serving.reload_interval_seconds
    row = reference_instances(champion.load_reference().head(1), champion.schema)[0]
    process, port = serve(config, args.workers, work / "serve.out")
    traffic = Traffic(port, row, CONCURRENCY)
    try:
        began = time.monotonic()
        traffic.start()
        time.sleep(args.hold)
        promote_at = time.monotonic()
        occam(config, "promote", challenger.tag, "--reason", "bench")
        promote_done = time.monotonic()
        first_new = traffic.first_after(promote_at, challenger.version)
        time.sleep(args.hold + interval)
        rollback_at = time.monotonic()
        occam(config, "rollback", "--reason", "bench")
        rollback_done = time.monotonic()
        first_back = traffic.first_after(rollback_at, champion.version)
        time.sleep(args.hold + interval)
    finally:
        traffic.stop()
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    ended = time.monotonic()
    answers = traffic.answers

    def last_old(since: float, until: float, old: str) -> float:
        seen = [t for t, _, v in answers if since <= t < until and v == old]
        return (max(seen) - since) if seen else 0.0

    failed = Counter(s for _, s, _ in answers if s != 200)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "workers": args.workers,
        "concurrency": CONCURRENCY,
        "reload_interval_seconds": interval,
        "champion": champion.version,
        "challenger": challenger.version,
        "requests": len(answers),
        "failed_requests": sum(failed.values()),
        "failed_by_status": {str(k): v for k, v in failed.items()},
        "promote": {
            "command_seconds": promote_done - promote_at,
            "first_new_answer_seconds": first_new - promote_at,
            "last_old_answer_seconds": last_old(promote_at, rollback_at, champion.version),
        },
        "rollback": {
            "command_seconds": rollback_done - rollback_at,
            "first_new_answer_seconds": first_back - rollback_at,
            "last_old_answer_seconds": last_old(rollback_at, ended, challenger.version),
        },
        "versions": {
            "before promote": phase_versions(answers, began, promote_at),
            "promote to rollback": phase_versions(answers, promote_at, rollback_at),
            "after rollback": phase_versions(answers, rollback_at, ended),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "promotion.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "promotion.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Promotion and rollback under load",
        "",
        f"`python bench/bench_promotion.py`: `occam serve` with {r['workers']} workers, "
        f"{r['concurrency']} client threads sending single-row /predict back to back, "
        f"serving.reload_interval_seconds = {r['reload_interval_seconds']:g}; {r['machine']} "
        "shared by the clients and the server. Champion "
        f"`{r['champion']}`, challenger `{r['challenger']}` (same pipeline, another version).",
        "",
        f"**Requests: {r['requests']}; failed (not 200): {r['failed_requests']}** "
        f"{r['failed_by_status'] or ''}",
        "",
        "| change | command (s) | to first answer by the new version (s) | to last answer by "
        "the old version (s) |",
        "|---|---:|---:|---:|",
    ]
    for name in ("promote", "rollback"):
        p = r[name]
        lines.append(
            f"| `occam {name}` | {p['command_seconds']:.2f} | "
            f"{p['first_new_answer_seconds']:.2f} | {p['last_old_answer_seconds']:.2f} |"
        )
    lines += ["", "Version of every answer, by phase:", "", "| phase | version: answers |",
              "|---|---|"]  # fmt: skip
    for phase, counts in r["versions"].items():
        shown = ", ".join(f"`{v}`: {n}" for v, n in counts.items())
        lines.append(f"| {phase} | {shown} |")
    lines += [
        "",
        "Times are from the start of the command; the command's own time is mostly its start-up "
        "(Python, BentoML and the model store, on cores shared with the load), and the label "
        "changes before it returns, so the first new answer can precede its end. Each worker "
        "swaps on its own poll, so "
        "between the first answer by the new version and the last by the old one both answer "
        "(each answer names its version); the wait is at most one interval plus loading and "
        "self-testing the bundle. `POST /admin/reload` swaps a worker at once.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--render"]:  # rewrite promotion.md from promotion.json
        (RESULTS / "promotion.md").write_text(
            markdown(json.loads((RESULTS / "promotion.json").read_text()))
        )
    else:
        main()

"""The main job, end to end: train if needed, start the service, the sidecar and Prometheus,
replay held-out and then production traffic through `/predict` with feedback, and narrate what
the monitor concludes.

Like `occam/cli.py`, this module knows all three stages, but only through their commands
(`occam serve`, `occam monitor`) and the training entry point; nothing imports it but the CLI.
The process and replay helpers are reused by the end-to-end integration test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(
    url: str, body: Any = None, timeout: float = 30.0, method: str | None = None
) -> tuple[int, Any]:
    """Send `body` as JSON (POST by default; GET when there is no body); return (status,
    parsed JSON or text). 4xx/5xx are answers, not errors."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers 200; fail early when `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


@dataclass
class Processes:
    """Child processes started in their own process groups, stopped together."""

    logs: Path
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        out = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or dict(os.environ),
            cwd=ROOT,
            start_new_session=True,
        )
        self.children[name] = process
        return process

    def kill(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        process = self.children.pop(name)
        if process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def stop_all(self) -> None:
        for name in list(self.children)[::-1]:
            self.kill(name)


def occam_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "occam.cli", *args]


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text exposition -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode())


def rows_as_instances(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    """JSON-ready request rows: NaN becomes null, numpy scalars plain Python values."""
    records = frame[features].astype(object).where(frame[features].notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in records.to_dict(orient="records")
    ]


@dataclass
class ReplayStats:
    rows: int = 0
    requests: int = 0
    rejected_requests: int = 0
    feedback: int = 0
    ids: list[str] = field(default_factory=list)
    #: (id, true label, served probabilities) of every row whose feedback was accepted
    labelled: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)


def replay(
    base_url: str,
    frame: pd.DataFrame,
    features: list[str],
    target: str,
    batch_rows: int = 50,
    feedback_share: float = 0.3,
    rows_per_second: float | None = None,
    seed: int = 0,
    stats: ReplayStats | None = None,
    every: Callable[[ReplayStats], None] | None = None,
) -> ReplayStats:
    """Send `frame` in time order through POST /predict, `batch_rows` per request, and the true
    label of a random `feedback_share` of the rows through POST /feedback."""
    stats = stats or ReplayStats()
    rng = np.random.default_rng(seed)
    start = time.monotonic()
    sent_at_start = stats.rows
    for chunk in _chunks(frame, batch_rows):
        status, answer = http_json(
            f"{base_url}/predict", {"instances": rows_as_instances(chunk, features)}
        )
        stats.requests += 1
        if status != 200:
            stats.rejected_requests += 1
            continue
        ids = [p["id"] for p in answer["predictions"]]
        stats.ids.extend(ids)
        stats.rows += len(ids)
        chosen = rng.random(len(ids)) < feedback_share
        picked = [
            (p["id"], str(y), p["probabilities"])
            for p, y, c in zip(answer["predictions"], chunk[target], chosen, strict=True)
            if c
        ]
        if picked:
            labels = [{"id": i, "label": y} for i, y, _ in picked]
            status, _ = http_json(f"{base_url}/feedback", {"labels": labels})
            if status == 202:
                stats.feedback += len(labels)
                stats.labelled.extend(picked)
        if every is not None:
            every(stats)
        if rows_per_second:
            ahead = (stats.rows - sent_at_start) / rows_per_second - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return stats


def _chunks(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for begin in range(0, len(frame), size):
        yield frame.iloc[begin : begin + size]


def write_prometheus_config(
    path: str | Path,
    service_target: str | None,
    monitor_target: str | None,
    rules_file: str | Path | None,
    scrape_interval: str = "1s",
    evaluation_interval: str | None = None,
) -> Path:
    """Write a Prometheus config scraping the service (job occam-service) and the monitor (job
    occam-monitor) at "host:port" targets (None leaves that job out), evaluating `rules_file`
    (None: no rules) every `evaluation_interval` (default: the scrape interval). No
    Alertmanager: alerts are read from /api/v1/alerts. Returns `path`.
    """
    import yaml

    jobs = {"occam-service": service_target, "occam-monitor": monitor_target}
    config: dict[str, Any] = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval or scrape_interval,
        },
        "rule_files": [str(Path(rules_file).resolve())] if rules_file else [],
        "scrape_configs": [
            {"job_name": job, "metrics_path": "/metrics", "static_configs": [{"targets": [t]}]}
            for job, t in jobs.items()
            if t is not None
        ],
    }
    out = Path(path)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def start_prometheus(processes: Processes, workdir: Path, port: int, config: Path) -> str | None:
    """Start Debian's `prometheus` when installed; return its URL, or None."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    process = processes.start(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/-/ready", 60, process)
    return url


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _labelled(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples.items()
        if sample == name and label in dict(labels)
    }


def monitor_summary(samples: Samples) -> str:
    """One line of what the sidecar concludes, from its /metrics."""

    def get(name: str) -> float | None:
        value = samples.get((name, ()))
        return None if value is None or value != value else value

    window = get("occam_window_rows")
    if get("occam_data_drift") is None:
        return f"window {window or 0:.0f} rows: too small for a verdict yet"
    drifted = sorted(
        f for f, v in _labelled(samples, "occam_feature_drifted", "feature").items() if v == 1
    )
    live = _labelled(samples, "occam_live_metric", "metric")
    goals = _labelled(samples, "occam_goal_threshold", "metric")
    reasons = sorted(
        r for r, v in _labelled(samples, "occam_retrain_reason", "reason").items() if v == 1
    )
    parts = [
        f"window {window or 0:.0f} rows",
        f"drifted inputs: {', '.join(drifted) or 'none'}",
        f"data drift verdict {'YES' if get('occam_data_drift') else 'no'}",
        f"model at risk {'YES' if get('occam_model_at_risk') else 'no'}",
        f"prediction drift {'YES' if get('occam_prediction_drift') else 'no'}",
    ]
    for metric, value in sorted(live.items()):
        if value == value:
            parts.append(f"live {metric} {value:.3f} (goal {goals.get(metric, float('nan')):.2f})")
    parts.append(
        "RETRAIN recommended: " + ", ".join(reasons)
        if get("occam_retrain_recommended")
        else "no retrain"
    )
    return "; ".join(parts)


def firing_alerts(prometheus_url: str) -> list[str]:
    """Names of the alerts firing in Prometheus (with the feature for per-feature ones)."""
    _, answer = http_json(f"{prometheus_url}/api/v1/alerts")
    alerts = answer.get("data", {}).get("alerts", []) if isinstance(answer, dict) else []
    return sorted(
        {
            a["labels"]["alertname"]
            + (f"[{a['labels']['feature']}]" if "feature" in a["labels"] else "")
            for a in alerts
            if a.get("state") == "firing"
        }
    )


def _port_or_free(port: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def run_demo(
    config_path: Path,
    say: Callable[[str], None],
    rows_per_second: float,
    feedback_share: float,
    keep_running: bool,
) -> int:
    """The main job. Returns an exit code (0 when the replay ran to the end)."""
    from occam.bundle import latest_production
    from occam.config import load_config
    from training.data import load_frame, split_frame
    from training.pipeline import train

    config = load_config(config_path)
    bundle = latest_production(config.output.model_name)
    if bundle is None:
        say("no promoted model yet: training one (occam train) ...")
        result = train(config, on_stage=lambda m: say(f"  - {m}"))
        if not result.promoted:
            say(f"the model missed its goals, see {result.card_path}; nothing to serve")
            return 4
        bundle = result.bundle
    goals = bundle.metadata["gate"]["goals"]
    say(f"model {bundle.tag}: " + ", ".join(f"{g['metric']} {g['model']:.3f}" for g in goals))

    workdir = ROOT / ".occam"
    workdir.mkdir(exist_ok=True)
    processes = Processes(workdir / "logs")
    service_port = _port_or_free(config.serving.port)
    monitor_port = _port_or_free(config.monitoring.port)
    try:
        service = processes.start(
            "service",
            occam_command(
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(service_port),
                "--host",
                "127.0.0.1",
            ),
        )
        monitor = processes.start(
            "monitor",
            occam_command("monitor", "--config", str(config_path), "--port", str(monitor_port)),
        )
        base = f"http://127.0.0.1:{service_port}"
        wait_http(f"{base}/readyz", 180, service)
        wait_http(f"http://127.0.0.1:{monitor_port}/metrics", 120, monitor)
        # The shipped rules wait 10 minutes or more before firing; the demo renders them with
        # a short `for` so that a newcomer sees alerts fire within its few minutes.
        rules = workdir / "alerts.yml"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "render_rules.py"),
             str(ROOT / "prometheus" / "alerts.yml"), str(rules), "--for", "20s"],
            check=True,
        )  # fmt: skip
        prom_config = write_prometheus_config(
            workdir / "prometheus.yml",
            f"127.0.0.1:{service_port}",
            f"127.0.0.1:{monitor_port}",
            rules,
            scrape_interval="5s",
        )
        prometheus = start_prometheus(processes, workdir, _port_or_free(9090), prom_config)
        say(f"service    {base}  (POST /predict, POST /feedback, GET /model, /metrics)")
        say(f"monitor    http://127.0.0.1:{monitor_port}/metrics")
        say(
            f"prometheus {prometheus}/alerts"
            if prometheus
            else "prometheus not installed (apt-get install prometheus): alerts are not evaluated"
        )
        say(f"logs       {workdir / 'logs'}  prediction log {config.serving.log_dir}")

        frame = load_frame(config.data.path)
        split = split_frame(frame, config)
        features = bundle.schema.names
        target = config.data.target
        last_report = [0.0]

        def narrate(stats: ReplayStats) -> None:
            if time.monotonic() - last_report[0] < 5:
                return
            last_report[0] = time.monotonic()
            try:
                summary = monitor_summary(scrape(f"http://127.0.0.1:{monitor_port}/metrics"))
            except OSError as exc:
                summary = f"monitor unreachable ({exc})"
            if prometheus:
                summary += f" | alerts firing: {', '.join(firing_alerts(prometheus)) or 'none'}"
            say(f"  {stats.rows:>6} rows sent | {summary}")

        stats = ReplayStats()
        phases = [
            ("held-out end of the training period (in distribution)", split.test),
            ("production period (later months)", split.production),
        ]
        for title, rows in phases:
            period = ""
            if config.data.time_column:
                times = rows[config.data.time_column]
                period = f" {times.iloc[0]} .. {times.iloc[-1]}"
            say(f"replaying {len(rows)} rows: {title}{period}")
            replay(
                base,
                rows,
                features,
                target,
                feedback_share=feedback_share,
                rows_per_second=rows_per_second,
                seed=config.seed,
                stats=stats,
                every=narrate,
            )
        time.sleep(3)
        say("final: " + monitor_summary(scrape(f"http://127.0.0.1:{monitor_port}/metrics")))
        if prometheus:
            say(f"alerts firing in Prometheus: {', '.join(firing_alerts(prometheus)) or 'none'}")
        say(
            f"sent {stats.rows} rows in {stats.requests} requests, {stats.feedback} feedback labels"
        )
        if keep_running:
            say("still running: Ctrl+C stops the service, the monitor and Prometheus")
            while all(p.poll() is None for p in processes.children.values()):
                time.sleep(1)
        return 0
    finally:
        processes.stop_all()

"""Run Occam's processes on loopback and talk to them: free ports, child processes in their own
process groups, JSON over HTTP (with an API key), the monitor's Prometheus exposition, a real
Prometheus (config, start, alerts, range queries), and replaying a data frame through the
service's `/predict` and `/feedback` in time order.

The demo (`occam/demo.py`), the integration and ops tests and the benches share these helpers;
nothing here imports training, serving or monitoring code: they are reached through their
commands (`occam_command`) and their HTTP endpoints only. Every server started here binds
127.0.0.1.
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
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

#: Prometheus text exposition parsed: {(sample name, sorted (label, value) pairs): value}.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_or_free(port: int) -> int:
    """`port` when it can be bound on 127.0.0.1, else a free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def http_json(
    url: str,
    body: Any = None,
    timeout: float = 30.0,
    method: str | None = None,
    api_key: str | None = None,
) -> tuple[int, Any]:
    """Send `body` as JSON (POST by default; GET when there is no body), with
    `Authorization: Bearer <api_key>` when a key is given; return (status, parsed JSON or
    text). 4xx/5xx are answers, not errors."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return http_bytes(url, data, headers, timeout=timeout, method=method)


def http_bytes(
    url: str,
    data: bytes | None,
    headers: dict[str, str],
    timeout: float = 30.0,
    method: str | None = None,
) -> tuple[int, Any]:
    """Send raw `data` (POST when there is some, else GET) with `headers`; return (status,
    parsed JSON or text). 4xx/5xx are answers, not errors."""
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
    """Wait until `url` answers 200 (polling every 0.25 s); fail early when `process` died.
    Raises TimeoutError after `timeout` seconds."""
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
    """Child processes started in their own process groups (output in `logs/<name>.log`),
    stopped together, newest first."""

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
        """Send `sig` to the process group of `name`; SIGKILL it after `timeout` seconds."""
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
    """argv running the `occam` CLI with this interpreter (`occam_command("train", ...)`)."""
    return [sys.executable, "-m", "occam.cli", *args]


def issue_api_key(config_path: Path, keys_file: Path, key_id: str, scopes: str) -> str:
    """A new API key from `occam keys add` with `scopes` ("predict,feedback,admin"): the
    command prints the key once on stdout and appends its hash to `keys_file`, which a
    service started with OCCAM_API_KEYS_FILE=`keys_file` accepts. Raises RuntimeError with the
    command's message when it fails."""
    done = subprocess.run(
        occam_command("keys", "add", "--config", str(config_path), "--id", key_id,
                      "--scopes", scopes, "--file", str(keys_file)),
        capture_output=True, text=True,
    )  # fmt: skip
    key = done.stdout.strip()
    if done.returncode != 0 or not key:
        raise RuntimeError(f"`occam keys add` exited {done.returncode}: {done.stderr.strip()}")
    return key


# --- Prometheus exposition -------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    """Prometheus text exposition -> {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def scrape(url: str) -> Samples:
    """GET a /metrics endpoint and parse it."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return parse_metrics(response.read().decode())


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of one sample, None when absent or NaN."""
    value = samples.get((name, tuple(sorted(labels.items()))))
    return None if value is None or value != value else value


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """{value of `label`: sample value} for every sample of `name` carrying `label`."""
    return {
        dict(labels)[label]: value
        for (sample_name, labels), value in samples.items()
        if sample_name == name and label in dict(labels)
    }


# --- a real Prometheus -----------------------------------------------------------------------


#: Prometheus job names of the service and of the monitor (the shipped rules select on them).
SERVICE_JOB = "occam-service"
MONITOR_JOB = "occam-monitor"


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

    jobs = {SERVICE_JOB: service_target, MONITOR_JOB: monitor_target}
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
    """Start Debian's `prometheus` on 127.0.0.1:`port` (TSDB in `workdir/tsdb`) when installed;
    return its URL once ready, or None when it is not installed."""
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


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """The `result` of a Prometheus instant query (vector: each {"metric": labels, "value":
    [unix seconds, "value"]}); empty when Prometheus does not answer with success (e.g. while
    it starts), so that a caller polling for a result simply polls again."""
    params = urllib.parse.urlencode({"query": expr})
    status, answer = http_json(f"{prometheus_url}/api/v1/query?{params}")
    if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
        return []
    return list(answer["data"]["result"])


def wait_scraped(prometheus_url: str, jobs: Sequence[str], timeout: float) -> None:
    """Wait until Prometheus has scraped every job in `jobs` successfully (`up` is 1), so that
    what follows is watched from its start. Raises TimeoutError naming the jobs still down."""
    deadline = time.monotonic() + timeout
    waiting = set(jobs)
    while True:
        waiting -= {r["metric"].get("job") for r in query(prometheus_url, "up == 1")}
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prometheus has not scraped {sorted(waiting)} in {timeout:.0f} s")
        time.sleep(0.2)


def prometheus_alerts(prometheus_url: str) -> list[dict[str, Any]]:
    """Every alert Prometheus holds (/api/v1/alerts): dicts with labels, annotations, state
    ("pending" or "firing"), activeAt and value."""
    _, answer = http_json(f"{prometheus_url}/api/v1/alerts")
    found = answer.get("data", {}).get("alerts", []) if isinstance(answer, dict) else []
    return list(found)


def alert_name(alert: dict[str, Any]) -> str:
    """An alert's name, with its feature or goal metric for per-feature and per-metric alerts:
    `OccamFeatureDrift[temp]`, `OccamLiveMetricBelowGoal[roc_auc]`."""
    labels = alert["labels"]
    detail = labels.get("feature") or labels.get("metric")
    return labels["alertname"] + (f"[{detail}]" if detail else "")


def firing_alerts(prometheus_url: str) -> list[str]:
    """Names of the alerts firing in Prometheus (with the feature for per-feature ones)."""
    return sorted(
        {alert_name(a) for a in prometheus_alerts(prometheus_url) if a.get("state") == "firing"}
    )


def query_range(
    prometheus_url: str, expr: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    """The `result` of a Prometheus range query (matrix: each {"metric": labels, "values":
    [[unix seconds, "value"], ...]}) between Unix times `start` and `end`, every `step`
    seconds. Raises RuntimeError with Prometheus' message when the query fails."""
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    status, answer = http_json(f"{prometheus_url}/api/v1/query_range?{params}")
    if status != 200 or not isinstance(answer, dict) or answer.get("status") != "success":
        raise RuntimeError(f"query_range {expr!r} failed ({status}): {answer}")
    return list(answer["data"]["result"])


# --- replaying data through the service ------------------------------------------------------


def rows_as_instances(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    """JSON-ready request rows: NaN becomes null, numpy scalars plain Python values."""
    records = frame[features].astype(object).where(frame[features].notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in records.to_dict(orient="records")
    ]


@dataclass
class ReplayStats:
    """What a replay sent and what the service answered (accumulates over several replays)."""

    rows: int = 0
    requests: int = 0
    rejected_requests: int = 0
    feedback: int = 0
    ids: list[str] = field(default_factory=list)
    #: served probabilities of every accepted row, in the order sent (parallel to `ids`)
    probabilities: list[dict[str, float]] = field(default_factory=list)
    #: true label of every accepted row, in the order sent (parallel to `ids`)
    truth: list[str] = field(default_factory=list)
    #: model version that answered each accepted row, in the order sent (parallel to `ids`)
    versions: list[str] = field(default_factory=list)
    #: (id, true label, served probabilities) of every row whose feedback was accepted
    labelled: list[tuple[str, str, dict[str, float]]] = field(default_factory=list)
    #: the sent frame's index label of every accepted row (parallel to `ids`)
    index: list[Any] = field(default_factory=list)
    #: refused requests by their first problem, "field: reason" (the service names both)
    refusals: dict[str, int] = field(default_factory=dict)


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
    api_key: str | None = None,
) -> ReplayStats:
    """Send `frame` in time order through POST /predict, `batch_rows` per request, and the true
    label of a random `feedback_share` of the rows through POST /feedback, at most
    `rows_per_second` (None: as fast as answered), with `api_key` as bearer token. Calls
    `every(stats)` after each request."""
    stats = stats or ReplayStats()
    rng = np.random.default_rng(seed + stats.rows)
    start = time.monotonic()
    sent_at_start = stats.rows
    for chunk in _chunks(frame, batch_rows):
        status, answer = http_json(
            f"{base_url}/predict",
            {"instances": rows_as_instances(chunk, features)},
            api_key=api_key,
        )
        stats.requests += 1
        if status != 200:
            stats.rejected_requests += 1
            problems = answer.get("problems") if isinstance(answer, dict) else None
            first = problems[0] if isinstance(problems, list) and problems else {}
            why = f"{first.get('field') or '-'}: {first.get('reason') or f'HTTP {status}'}"
            stats.refusals[why] = stats.refusals.get(why, 0) + 1
            continue
        stats.index.extend(chunk.index)
        predictions = answer["predictions"]
        truth = [str(y) for y in chunk[target]]
        stats.ids.extend(p["id"] for p in predictions)
        stats.probabilities.extend(p["probabilities"] for p in predictions)
        stats.truth.extend(truth)
        stats.versions.extend([str(answer.get("model_version", ""))] * len(predictions))
        stats.rows += len(predictions)
        chosen = rng.random(len(predictions)) < feedback_share
        picked = [
            (p["id"], y, p["probabilities"])
            for p, y, c in zip(predictions, truth, chosen, strict=True)
            if c
        ]
        if picked:
            labels = [{"id": i, "label": y} for i, y, _ in picked]
            status, _ = http_json(f"{base_url}/feedback", {"labels": labels}, api_key=api_key)
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

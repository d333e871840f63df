"""The main job (`occam demo`, `bash scripts/run.sh`), end to end, through Occam's own commands:
train with `occam train` when no model is promoted, issue an API key with `occam keys add`,
start `occam serve`, `occam monitor` and Prometheus (the shipped rules with a short `for`),
replay the held-out end of the training period and then the production period through
`/predict` (and a share of true labels through `/feedback`) one monitor window at a time, and
tell the story: per window the true goal metric (the demo knows the labels), the monitor's
estimate, live metric, drift and verdict; at the end the alerts firing in Prometheus and why,
and a timeline page under the reports folder (`occam/timeline.py`).

It closes the loop (`_Loop`): once the monitor recommends retraining in the production period,
`occam retrain` trains a challenger on the labelled production rows and gates it against the
champion; a challenger that passes runs in shadow for one window (POST /admin/shadow, compared
by the monitor on live feedback), then `occam promote` swaps it in without a restart, and the
windows after it show the new model's true metric beside what the old champion would have
scored on the same rows. A refused challenger is narrated as such, and scored on the windows
after its refusal beside the champion that served them, so the story says whether the refusal
was right; either way with the monitor's live metric and its interval at the decision and at
the end. Finally `occam rollback` restores the champion (so the next run starts from the same
model) and `occam history` shows the audit log.

Nothing imports this module but the CLI. It imports no stage: the stages are reached through
their commands and HTTP endpoints (`occam/loopback.py`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from occam.bundle import Bundle, get_bundle, latest_production
from occam.config import OccamConfig, load_config
from occam.datafile import read_table
from occam.loopback import (
    MONITOR_JOB,
    ROOT,
    SERVICE_JOB,
    Processes,
    ReplayStats,
    Samples,
    alert_name,
    by_label,
    firing_alerts,
    http_json,
    issue_api_key,
    occam_command,
    port_or_free,
    prometheus_alerts,
    query,
    query_range,
    replay,
    sample,
    scrape,
    start_prometheus,
    wait_http,
    wait_scraped,
    write_prometheus_config,
)
from occam.metrics import score
from occam.timecol import read_time
from occam.timeline import (
    AlertSpan,
    Interval,
    LoopEvent,
    Timeline,
    WindowPoint,
    write_timeline,
)

log = logging.getLogger(__name__)

#: The demo's rules wait this long before firing (the shipped rules wait 10 minutes or more).
ALERT_FOR_SECONDS = 5
#: ... except the scrape-health rules (on `up`: OccamServiceDown, OccamSidecarDown), which wait
#: this long: the demo scrapes every second with a one-second timeout, and on a loaded machine a
#: few scrapes in a row can time out while nothing is down (with 5 s they fired, briefly, in
#: runs beside a test suite). A process that really stops is still reported within it.
SCRAPE_HEALTH_FOR_SECONDS = 30
#: Prometheus scrapes and evaluates rules this often during the demo, in seconds.
PROMETHEUS_INTERVAL_SECONDS = 1
#: The demo's monitor checks at least this often, so that each window is judged at once.
CHECK_INTERVAL_SECONDS = 1.0
#: Features drawn in the timeline's drift panel.
TOP_FEATURES = 4
API_KEY_SCOPES = "predict,feedback,admin"
#: The demo's service looks for a newly promoted bundle at least this often, in seconds.
RELOAD_INTERVAL_SECONDS = 1.0
#: The longest the demo waits for the service to answer with a promoted or restored model.
SWAP_TIMEOUT_SECONDS = 120.0
#: The replayed period in which the loop may retrain.
PRODUCTION = "production period"
#: The alert that pages when a goal is likely missed.
RISK_ALERT = "OccamModelAtRisk"
#: The truth at the end is judged on this many last windows pooled, and a goal counts as missed
#: when the true metric is more than WARRANT_MARGIN under it (the 2-point band within which a
#: window counts as harmless in bench/bench_detection.py's terms).
WARRANT_WINDOWS = 3
WARRANT_MARGIN = 0.02
#: `occam retrain`'s exit code when there are too few labelled rows (or bad data) to retrain.
EXIT_NOT_ENOUGH_ROWS = 3


@dataclass(frozen=True)
class DemoResult:
    """What a demo run ended with (returned to tests; the CLI turns it into an exit code).

    `firing` are the alerts firing in Prometheus at the end (per-feature ones as
    `OccamFeatureDrift[temp]`), read once no alert was pending any more; `fired` every span
    during which an alert fired (Prometheus' ALERTS series); `warranted` lists the goals the
    model truly missed over the last windows (`_last_truth`, `_missed`), so a run where it is
    not empty should end with OccamModelAtRisk firing; `timeline` is the page written."""

    exit_code: int
    windows: list[WindowPoint]
    firing: list[str]
    warranted: list[str]
    timeline: Path | None
    fired: list[AlertSpan] = field(default_factory=list)
    #: the retrain loop's steps, in order (retrain, refused, shadow, promotion, rollback)
    events: list[LoopEvent] = field(default_factory=list)


def run_demo(
    config_path: Path,
    say: Callable[[str], None],
    rows_per_second: float,
    feedback_share: float,
    keep_running: bool,
    workdir: Path | None = None,
) -> DemoResult:
    """The main job. `workdir` (default `.occam/` beside the config file) holds this run's derived
    config, API keys file, prediction log, monitor state, Prometheus data and process logs;
    the previous run's are removed first. The timeline goes to `output.reports_dir`."""
    config = load_config(config_path)
    bundle = latest_production(config.output.model_name)
    if bundle is None:
        say("no promoted model yet: training one with `occam train` ...")
        code = subprocess.run(occam_command("train", "--config", str(config_path))).returncode
        bundle = latest_production(config.output.model_name)
        if code != 0 or bundle is None:
            say(f"`occam train` exited {code}: nothing to serve (see the model card)")
            return DemoResult(code or 4, [], [], [], None)
    goals: dict[str, float] = {g.metric: g.threshold for g in config.goals}
    gate = bundle.metadata.gate.goals
    say(f"model {bundle.tag}: " + ", ".join(f"{g.metric} {g.model:.3f}" for g in gate))
    periods = _periods(config, bundle)
    short = no_window(periods, config, str(config_path))
    if short is not None:
        say(short)
        return DemoResult(2, [], [], [], None)

    workdir = workdir or config_path.resolve().parent / ".occam"
    run_dir = workdir / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    demo_config = _demo_config(config, run_dir)
    keys_file = run_dir / "api-keys.jsonl"
    try:
        key = issue_api_key(demo_config, keys_file, "demo", API_KEY_SCOPES)
    except RuntimeError as exc:
        say(str(exc))
        return DemoResult(2, [], [], [], None)
    say(f"API key issued by `occam keys add` (scopes {API_KEY_SCOPES}), hash in {keys_file}")

    processes = Processes(run_dir / "logs")
    loop = _Loop(demo_config, key, bundle, bundle)
    try:
        stack = _start(processes, config, demo_config, run_dir, keys_file, say)
        windows, stats = _replay_windows(
            stack, config, loop, periods, rows_per_second, feedback_share, say
        )
        firing = _settle_alerts(stack, say)
        truth = _last_truth(stats, config, loop.served) if windows else {}
        warranted, near = _missed(truth, config, WARRANT_MARGIN), _missed(truth, config, 0.0)
        spans = _alert_spans(stack)
        _tell_why(stack, windows, goals, firing, warranted, near, spans, say)
        loop.tell(windows, config, say)
        if loop.promoted:
            loop.restore(stack, len(windows) - 1, say)
        path = None
        if windows:
            timeline = _timeline(stack, config, loop, windows, spans)
            path = write_timeline(timeline, config.output.reports_dir / "timeline.html")
            say(f"timeline: {path}")
        say(f"sent {stats.rows} rows in {stats.requests} requests, {stats.feedback} labels")
        if keep_running:
            say("still running: Ctrl+C stops the service, the monitor and Prometheus")
            while all(p.poll() is None for p in processes.children.values()):
                time.sleep(1)
        return DemoResult(0, windows, firing, warranted, path, spans, list(loop.events))
    except (TimeoutError, RuntimeError) as exc:  # a process died or did not answer in time
        say(f"demo stopped: {exc} (process logs in {run_dir / 'logs'})")
        return DemoResult(1, [], [], [], None, events=list(loop.events))
    finally:
        processes.stop_all()
        if loop.promoted and not loop.restored:  # never leave the challenger for the next run
            _occam(demo_config, "rollback", "--reason", "occam demo stopped: restore the champion")


# --- setting up ------------------------------------------------------------------------------


def _demo_config(config: OccamConfig, run_dir: Path) -> Path:
    """The project's config (paths already absolute) with this run's own prediction log and
    monitor state, a check at least every CHECK_INTERVAL_SECONDS, and the loop's settings
    (`retrain.promote: false`, a reload poll at least every RELOAD_INTERVAL_SECONDS)."""
    raw = config.model_dump(mode="json")
    raw["serving"]["log_dir"] = str(run_dir / "prediction-log")
    monitoring = raw["monitoring"]
    monitoring["state_dir"] = str(run_dir / "monitor-state")
    monitoring["check_interval_seconds"] = min(
        monitoring["check_interval_seconds"], CHECK_INTERVAL_SECONDS
    )
    # the loop: a challenger that passes the gate waits as a candidate for its shadow window,
    # and the service looks for a promoted bundle at least every RELOAD_INTERVAL_SECONDS
    raw["retrain"]["promote"] = False
    raw["serving"]["reload_interval_seconds"] = min(
        raw["serving"]["reload_interval_seconds"] or RELOAD_INTERVAL_SECONDS,
        RELOAD_INTERVAL_SECONDS,
    )
    path = run_dir / "occam.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)  # the derived config must be as valid as the project's
    return path


@dataclass(frozen=True)
class _Stack:
    service: str
    monitor: str
    prometheus: str | None
    started: float


def _start(
    processes: Processes,
    config: OccamConfig,
    demo_config: Path,
    run_dir: Path,
    keys_file: Path,
    say: Callable[[str], None],
) -> _Stack:
    service_port = port_or_free(config.serving.port)
    monitor_port = port_or_free(config.monitoring.port)
    env = {**os.environ, "OCCAM_API_KEYS_FILE": str(keys_file)}
    service = processes.start(
        "service",
        occam_command(
            "serve",
            "--config",
            str(demo_config),
            "--port",
            str(service_port),
            "--host",
            "127.0.0.1",
        ),
        env=env,
    )
    monitor = processes.start(
        "monitor",
        occam_command(
            "monitor",
            "--config",
            str(demo_config),
            "--port",
            str(monitor_port),
            "--host",
            "127.0.0.1",
        ),
        env=env,
    )
    base = f"http://127.0.0.1:{service_port}"
    monitor_url = f"http://127.0.0.1:{monitor_port}/metrics"
    wait_http(f"{base}/readyz", 180, service)
    wait_http(monitor_url, 120, monitor)
    rules = run_dir / "alerts.yml"
    shipped = ROOT / "prometheus" / "alerts.yml"
    health_rules = scrape_health(shipped)
    health = [f"--for-alert={name}={SCRAPE_HEALTH_FOR_SECONDS}s" for name in health_rules]
    subprocess.run(
        occam_script(
            "render_rules.py", str(shipped), str(rules), f"--for={ALERT_FOR_SECONDS}s", *health
        ),
        check=True,
    )
    interval = f"{PROMETHEUS_INTERVAL_SECONDS}s"
    prom_config = write_prometheus_config(
        run_dir / "prometheus.yml",
        f"127.0.0.1:{service_port}",
        f"127.0.0.1:{monitor_port}",
        rules,
        scrape_interval=interval,
    )
    prometheus = start_prometheus(processes, run_dir, port_or_free(9090), prom_config)
    if prometheus is not None:  # the replay starts once both are watched
        wait_scraped(prometheus, [SERVICE_JOB, MONITOR_JOB], 60)
    say(f"service    {base}  (POST /predict, POST /feedback, GET /model, /metrics)")
    say(f"monitor    {monitor_url}")
    say(
        f"prometheus {prometheus}/alerts  (rules with for: {ALERT_FOR_SECONDS}s; "
        f"{SCRAPE_HEALTH_FOR_SECONDS}s for {', '.join(health_rules)})"
        if prometheus
        else "prometheus not installed (apt-get install prometheus): alerts are not evaluated"
    )
    say(f"logs       {run_dir / 'logs'}")
    return _Stack(base, monitor_url, prometheus, time.time())


_SCRAPE_FAILED = re.compile(r"\babsent\(\s*up\b|\bup\s*(\{[^}]*\})?\s*==\s*0\b")


def scrape_health(rules: Path) -> list[str]:
    """The alert rules of `rules` that fire when scrapes fail (`up == 0`, `absent(up)`)."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    return [
        rule["alert"]
        for group in groups
        for rule in group["rules"]
        if "alert" in rule and _SCRAPE_FAILED.search(rule["expr"])
    ]


def occam_script(name: str, *args: str) -> list[str]:
    """argv running one of the checkout's scripts/ with this interpreter."""
    return [sys.executable, str(ROOT / "scripts" / name), *args]


def no_window(
    periods: list[tuple[str, pd.DataFrame]], config: OccamConfig, where: str
) -> str | None:
    """Why nothing can be replayed, with the fix, when no period holds one monitor window."""
    rows = config.monitoring.every_rows
    if any(len(frame) >= rows for _, frame in periods):
        return None
    most = max((len(frame) for _, frame in periods), default=0)
    return (
        f"nothing to replay: the longest period holds {most} rows, fewer than one monitor "
        f"window of {rows} (monitoring.window_rows"
        + (", monitoring.check_every_rows" if config.monitoring.check_every_rows else "")
        + f"); set monitoring.window_rows to at most {most // 2} in {where} to replay "
        "it in windows (the monitor then checks each window of that many rows)"
    )


def _periods(config: OccamConfig, bundle: Bundle) -> list[tuple[str, pd.DataFrame]]:
    """The rows to replay, in time order: the held-out end of the training period (rows from
    the bundle's recorded test period up to `production_start`) and the production period."""
    data = config.data
    path = data.path
    frame = read_table(path)  # as `occam train` read it
    if data.time_column is None or data.split.production_start is None:
        return [("the whole data file (no time column or production_start)", frame)]
    # Read as training reads it (any time format; a split as a date, a number or a share).
    axis = read_time(frame[data.time_column], data.time_column, data.time_format)
    order = np.argsort(axis.values.to_numpy(), kind="stable")
    frame, times = frame.iloc[order], axis.values.iloc[order]
    start = axis.split_point(data.split.production_start, "data.split.production_start")
    periods = []
    test_period = bundle.metadata.data.test_period
    if test_period and data.split.test_strategy == "time":
        first = axis.split_point(test_period[0], "the bundle's test period")
        held_out = (times >= first) & (times < start)
        periods.append(("held-out end of the training period", frame[held_out.to_numpy()]))
    periods.append((PRODUCTION, frame[(times >= start).to_numpy()]))
    return periods


# --- replaying, one window at a time ---------------------------------------------------------


def _replay_windows(
    stack: _Stack,
    config: OccamConfig,
    loop: _Loop,
    periods: list[tuple[str, pd.DataFrame]],
    rows_per_second: float,
    feedback_share: float,
    say: Callable[[str], None],
) -> tuple[list[WindowPoint], ReplayStats]:
    """Send each period in whole monitor windows; after each window wait (bounded) until the
    monitor has read every record and checked after the last one, record its verdict, and
    take the retrain loop's next step (`_Loop.step`) in the production period."""
    rows = config.monitoring.every_rows
    features = loop.champion.schema.names
    key = loop.key
    stats = ReplayStats()
    windows: list[WindowPoint] = []
    time_column = config.data.time_column
    for title, frame in periods:
        frame = frame.reset_index(drop=True)  # index labels are row positions
        count = len(frame) // rows
        first = (
            f" {frame[time_column].iloc[0]} .. {frame[time_column].iloc[-1]}"
            if (time_column and len(frame))
            else ""
        )
        say(f"replaying {title}{':' + first if first else ''}, {count} windows of {rows} rows")
        cursor = 0
        for _ in range(count):
            begin, sent_at, refused = stats.rows, time.time(), dict(stats.refusals)
            cursor = fill_window(
                lambda part: replay(
                    stack.service,
                    part,
                    features,
                    config.data.target,
                    stats=stats,
                    feedback_share=feedback_share,
                    rows_per_second=rows_per_second,
                    seed=config.seed,
                    api_key=key,
                ),
                frame,
                cursor,
                rows,
                stats,
            )
            if stats.refusals != refused:
                say("  " + _refusal_line(refused, stats.refusals))
            if stats.rows - begin < rows:
                say(f"  {title} ran out of rows the service accepts: its last window is short")
                break
            chunk = frame.loc[stats.index[begin:]]
            samples = _wait_counted(stack, stats, sent_at)
            point = _window_point(len(windows), title, chunk, stats, begin, samples, config, loop)
            windows.append(point)
            firing = firing_alerts(stack.prometheus) if stack.prometheus else []
            say(_window_line(point, config, firing))
            if title == PRODUCTION:
                loop.record_refused(point, chunk, stats, begin, config)
                loop.step(stack, config, point, samples, rows, say)
    return windows, stats


def fill_window(
    send: Callable[[pd.DataFrame], Any],
    frame: pd.DataFrame,
    cursor: int,
    rows: int,
    stats: ReplayStats,
) -> int:
    """Send `frame`'s rows from position `cursor` on (`send`: a `replay` into `stats`) until
    the service answered `rows` of them or the frame ends; return the next position. A window
    is `rows` answered predictions, as the monitor counts them: rows the service refuses are
    replaced by the next ones (else the monitor would never count the window)."""
    begin = stats.rows
    while stats.rows - begin < rows and cursor < len(frame):
        part = frame.iloc[cursor : cursor + rows - (stats.rows - begin)]
        cursor += len(part)
        send(part)
    return cursor


def _refusal_line(before: dict[str, int], after: dict[str, int]) -> str:
    """The requests the service refused during one window, by field and reason."""
    new = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    shown = ", ".join(f"{k} x{v}" for k, v in sorted(new.items(), key=lambda kv: -kv[1]))
    return (
        f"the service refused {sum(new.values())} request(s) ({shown}); the window was filled "
        "with the next rows (GET /metrics: occam_service_rejected_rows_total)"
    )


def _wait_counted(
    stack: _Stack, stats: ReplayStats, sent_at: float, timeout: float = 60.0
) -> Samples:
    """The monitor's metrics once it read every record sent, ran a check that started after
    the last record was written, and (when it says so) counted a window after `sent_at`, the
    Unix time this window's first row was sent. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        samples = scrape(stack.monitor)
        read = sample(samples, "occam_records_read_total", kind="prediction")
        labels = sample(samples, "occam_records_read_total", kind="feedback")
        checked = sample(samples, "occam_last_check_timestamp_seconds")
        last = sample(samples, "occam_last_record_timestamp_seconds")
        counted = sample(samples, "occam_last_counted_window_timestamp_seconds")
        caught_up = read == stats.rows and (labels or 0) == stats.feedback
        fresh = counted is None or counted >= sent_at
        if caught_up and checked and last and checked >= last and fresh:
            return samples
        time.sleep(0.2)
    raise TimeoutError(
        f"the monitor did not count the window within {timeout:.0f} s "
        f"(sent {stats.rows} rows, {stats.feedback} labels; see its log)"
    )


def _window_point(
    index: int,
    phase: str,
    chunk: pd.DataFrame,
    stats: ReplayStats,
    begin: int,
    samples: Samples,
    config: OccamConfig,
    loop: _Loop,
) -> WindowPoint:
    """The window's verdicts, and its truth scored by the model that answered it (after a
    promotion also the old champion's score on the same rows)."""
    time_column = config.data.time_column
    answered = set(stats.versions[begin:])
    model = answered.pop() if len(answered) == 1 else None
    bundle = loop.bundle_of(model)
    thresholds = by_label(samples, "occam_feature_drift_threshold", "feature")
    effects = by_label(samples, "occam_feature_drift_effect_size", "feature")
    reasons = by_label(samples, "occam_model_at_risk_reason", "reason")
    at_risk = sample(samples, "occam_model_at_risk")
    return WindowPoint(
        index=index,
        phase=phase,
        rows=len(stats.truth) - begin,
        wall_time=time.time(),
        first_time=str(chunk[time_column].iloc[0]) if time_column else None,
        last_time=str(chunk[time_column].iloc[-1]) if time_column else None,
        truth=true_metrics(stats, begin, config, bundle),
        estimate=_bands(samples, "occam_goal_estimate"),
        live=_bands(samples, "occam_live_metric"),
        drift={f: effects[f] / t for f, t in thresholds.items() if f in effects and t > 0},
        weighted_drift=sample(samples, "occam_weighted_drift"),
        at_risk=None if at_risk is None else at_risk == 1,
        reasons=tuple(sorted(r for r, v in reasons.items() if v == 1)),
        model=model,
        champion_truth=(
            loop.truth_of(loop.champion, chunk, stats, begin, config) if loop.promoted else {}
        ),
    )


def true_metrics(
    stats: ReplayStats, begin: int, config: OccamConfig, bundle: Bundle
) -> dict[str, float]:
    """Each goal metric on the rows replayed from row `begin` on, from their true labels and
    served probabilities, labels decided by the bundle's decision weights as the service
    answers them (rows whose label is not a class, like "unknown", are left out)."""
    classes = bundle.classes
    truth = np.asarray(stats.truth[begin:])
    known = np.isin(truth, classes)
    if not known.any():
        return {}
    proba = np.array([[p[c] for c in classes] for p in stats.probabilities[begin:]])
    positive = config.goals_positive_label or classes[-1]
    return _defined_scores(
        config, truth[known], proba[known], classes, positive, bundle.decision_weights
    )


def _defined_scores(
    config: OccamConfig,
    truth: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    weights: dict[str, float] | None,
) -> dict[str, float]:
    """Each goal metric of `config` on these rows, leaving out one the rows do not define
    (ROC AUC when every true label is one class); scikit-learn's warnings about a window of
    one class are a fact about the window, not news for the console."""
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for g in config.goals:
            value = score(g.metric, truth, proba, classes, positive, weights)
            if math.isfinite(value):
                scores[g.metric] = value
    return scores


def _bands(samples: Samples, name: str) -> dict[str, Interval]:
    """{goal metric: value with `<name>_lower` and `<name>_upper`} from the monitor's gauges."""
    values = by_label(samples, name, "metric")
    lower = by_label(samples, f"{name}_lower", "metric")
    upper = by_label(samples, f"{name}_upper", "metric")
    return {
        m: Interval(v, _finite(lower.get(m)), _finite(upper.get(m)))
        for m, v in values.items()
        if math.isfinite(v)
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _window_line(point: WindowPoint, config: OccamConfig, firing: list[str]) -> str:
    """One line per window: the first goal's truth, estimate and live metric, the drifted
    features, the verdict, and the alerts firing in Prometheus at that moment."""
    goal = config.goals[0]
    metric = goal.metric
    parts = [f"  window {point.index + 1:>3} {(point.first_time or '')[:10]:>10}"]
    truth = point.truth.get(metric)
    parts.append(f"true {metric} {truth:.3f}" if truth is not None else f"true {metric} n/a")
    for label, band in (("estimate", point.estimate.get(metric)), ("live", point.live.get(metric))):
        parts.append(f"{label} {_band_text(band)}" if band else f"{label} -")
    parts.append(f"goal {goal.threshold:.2f}")
    drifted = sorted((v, f) for f, v in point.drift.items() if v > 1)[::-1][:3]
    parts.append("drifted: " + (", ".join(f"{f} {v:.1f}x" for v, f in drifted) or "none"))
    verdict = {None: "no verdict yet", False: "not at risk", True: "AT RISK"}[point.at_risk]
    if point.at_risk and point.reasons:
        verdict += f" ({', '.join(point.reasons)})"
    parts.append(verdict)
    if firing:
        parts.append(f"firing: {', '.join(firing)}")
    return " | ".join(parts)


def _band_text(band: Interval) -> str:
    if band.lower is None or band.upper is None:
        return f"{band.value:.3f}"
    return f"{band.value:.3f} [{band.lower:.3f}, {band.upper:.3f}]"


# --- the end: alerts that hold, and why --------------------------------------------------------


def _settle_alerts(stack: _Stack, say: Callable[[str], None]) -> list[str]:
    """Wait (bounded) until Prometheus has scraped the monitor's last check, evaluated its rules
    on it, and no alert is pending any more (each pending one fired or cleared); return the
    alerts firing then. No traffic is sent meanwhile, so the verdicts hold still."""
    if stack.prometheus is None:
        say("alerts: Prometheus is not installed, so no alert rule is evaluated")
        return []
    checked = sample(scrape(stack.monitor), "occam_last_check_timestamp_seconds") or 0.0
    deadline = time.monotonic() + ALERT_FOR_SECONDS + 20 * PROMETHEUS_INTERVAL_SECONDS + 30
    say("waiting for Prometheus to evaluate the last window and settle its alerts ...")
    while time.monotonic() < deadline:
        if _prometheus_saw(stack.prometheus, checked):
            break
        time.sleep(0.5)
    evaluated_after = time.time()
    pending: list[str] = []
    while time.monotonic() < deadline:
        alerts = prometheus_alerts(stack.prometheus)
        pending = sorted({alert_name(a) for a in alerts if a.get("state") == "pending"})
        if _rules_evaluated_since(stack.prometheus, evaluated_after) and not pending:
            break
        time.sleep(0.5)
    if pending:
        say(f"still pending when the deadline passed: {', '.join(pending)}")
    alerts = prometheus_alerts(stack.prometheus)
    return sorted({alert_name(a) for a in alerts if a.get("state") == "firing"})


def _prometheus_saw(prometheus: str, checked: float) -> bool:
    """Prometheus holds a scrape of the monitor showing the check at `checked` or later."""
    expr = f'occam_last_check_timestamp_seconds{{job="{MONITOR_JOB}"}}'
    return any(float(r["value"][1]) >= checked for r in query(prometheus, expr))


def _rules_evaluated_since(prometheus: str, since: float) -> bool:
    """Every alerting rule group was evaluated after Unix time `since`."""
    _, answer = http_json(f"{prometheus}/api/v1/rules?type=alert")
    groups = answer.get("data", {}).get("groups", []) if isinstance(answer, dict) else []
    stamps = [pd.Timestamp(g["lastEvaluation"]).timestamp() for g in groups]
    return bool(stamps) and min(stamps) > since


def _last_truth(stats: ReplayStats, config: OccamConfig, bundle: Bundle) -> dict[str, float]:
    """Each goal metric on the rows of the last WARRANT_WINDOWS windows pooled (one window
    alone is noisy)."""
    rows = WARRANT_WINDOWS * config.monitoring.every_rows
    return true_metrics(stats, max(stats.rows - rows, 0), config, bundle)


def _missed(truth: dict[str, float], config: OccamConfig, margin: float) -> list[str]:
    """The goals `truth` misses by more than `margin`, as "metric true < goal". With
    WARRANT_MARGIN they warrant an alert (a smaller miss is within the windows' noise and
    warrants nothing); with 0, every miss."""
    return [
        f"{g.metric} {truth[g.metric]:.3f} < {g.threshold:.2f}"
        for g in config.goals
        if g.metric in truth and truth[g.metric] < g.threshold - margin
    ]


def verdict_lines(
    replayed: int, warranted: list[str], near: list[str], fired: list[str], firing: list[str]
) -> list[str]:
    """The truth over the last windows (`replayed` of them, at most WARRANT_WINDOWS) against
    what Prometheus fired and fires now: MISSED when a goal was missed by more than
    WARRANT_MARGIN and OccamModelAtRisk is not firing, FALSE ALARM when it fires and every
    goal was met; a miss within the margin is neither."""
    last = f"the last {replayed} windows" if replayed > 1 else "the last window"
    lines = []
    if warranted:
        lines.append(f"truth: over {last} the model missed its goals: " + "; ".join(warranted))
    elif replayed and near:
        lines.append(
            f"truth: over {last} the model missed a goal by less "
            f"than {WARRANT_MARGIN}, within the noise of its windows: "
            + "; ".join(near)
            + " (an alert or none: either is defensible)"
        )
    elif replayed:
        lines.append(f"truth: over {last} the model met every goal")
    lines.append(f"alerts that fired during the replay: {', '.join(fired) or 'none'}")
    lines.append(f"alerts firing in Prometheus now: {', '.join(firing) or 'none'}")
    risk_firing = RISK_ALERT in firing
    if warranted and not risk_firing:
        lines.append(f"MISSED: the goal was missed but {RISK_ALERT} is not firing")
    if risk_firing and not near:
        lines.append(f"FALSE ALARM: {RISK_ALERT} fires although the model met every goal lately")
    return lines


def _tell_why(
    stack: _Stack,
    windows: list[WindowPoint],
    goals: dict[str, float],
    firing: list[str],
    warranted: list[str],
    near: list[str],
    spans: list[AlertSpan],
    say: Callable[[str], None],
) -> None:
    """The closing story: what the truth says, what Prometheus fires, and the monitor's reasons
    (which goal, which estimate or live metric, which features). `warranted` are the goals
    missed by more than WARRANT_MARGIN, `near` every goal missed at all: a miss within the
    margin warrants neither verdict, so an alert then is not called false."""
    samples = scrape(stack.monitor)
    fired = [
        f"{s.name} (windows {_window_of(windows, s.start)}-{_window_of(windows, s.end)})"
        for s in sorted(spans, key=lambda s: s.start)
    ]
    replayed = min(len(windows), WARRANT_WINDOWS)
    for line in verdict_lines(replayed, warranted, near, fired, firing):
        say(line)
    if stack.prometheus is not None:
        for alert in prometheus_alerts(stack.prometheus):
            description = alert.get("annotations", {}).get("description", "")
            if alert.get("state") == "firing" and alert["labels"]["alertname"] == RISK_ALERT:
                say(f"  Prometheus' {RISK_ALERT}: {' '.join(description.split())}")
    for line in explain(samples, goals):
        say(f"  why: {line}")


def _window_of(windows: list[WindowPoint], t: float) -> str:
    """The window (1-based) whose verdict was the first read at or after Unix time `t`."""
    later = [w.index + 1 for w in windows if w.wall_time >= t]
    return str(later[0]) if later else "end"


def _clock(unix: float) -> str:
    """The UTC time of day of a Unix time."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%H:%M:%S")


def explain(samples: Samples, goals: dict[str, float]) -> list[str]:
    """Why the monitor says what it says, from its metrics: per goal the label-free estimate and
    the live metric against the goal, the importance-weighted drift with the inputs that moved
    most (weighted by importance when exported), and the verdict with its reasons."""
    lines = []
    estimate = _bands(samples, "occam_goal_estimate")
    live = _bands(samples, "occam_live_metric")
    labels = sample(samples, "occam_live_labels")
    oldest, newest = (
        sample(samples, f"occam_live_labels_served_{end}_timestamp_seconds")
        for end in ("oldest", "newest")
    )
    span = (
        f" (predictions served {_clock(oldest)}-{_clock(newest)} UTC)"
        if oldest is not None and newest is not None
        else ""
    )
    for metric, goal in goals.items():
        band = estimate.get(metric)
        if band is not None:
            under = band.upper is not None and band.upper < goal
            side = "band under" if under else "not under"
            lines.append(
                f"estimated {metric} (no labels) {_band_text(band)}: {side} the goal {goal:.2f}"
            )
        band = live.get(metric)
        if band is not None:
            under = (band.upper if band.upper is not None else band.value) < goal
            lines.append(
                f"live {metric} on {labels or 0:.0f} labels{span} {_band_text(band)}: "
                f"{'under' if under else 'not under'} the goal {goal:.2f}"
            )
    weighted = sample(samples, "occam_weighted_drift")
    level = sample(samples, "occam_weighted_drift_threshold")
    importance = by_label(samples, "occam_feature_importance", "feature")
    thresholds = by_label(samples, "occam_feature_drift_threshold", "feature")
    effects = by_label(samples, "occam_feature_drift_effect_size", "feature")
    ratios = {f: effects[f] / t for f, t in thresholds.items() if f in effects and t > 0}
    # the monitor's own share of the weighted drift when exported, else importance x drift
    share = by_label(samples, "occam_weighted_drift_contribution", "feature")
    weight = share or {f: importance.get(f, 0.0) * r for f, r in ratios.items()}
    top = sorted(ratios, key=lambda f: (weight.get(f, 0.0), ratios[f]), reverse=True)[:3]
    drift = ", ".join(
        f"{f} {ratios[f]:.1f}x its alarm level"
        + (f" (importance {importance[f]:.3f})" if f in importance else "")
        + (f" ({share[f]:.0%} of the weighted drift)" if share.get(f, 0.0) > 0 else "")
        for f in top
    )
    if weighted is not None and level is not None:
        lines.append(
            f"importance-weighted drift {weighted:.3f} (extreme level {level:.3f}); "
            f"most damaging inputs: {drift or 'none'}"
        )
    elif drift:
        lines.append(f"inputs that moved most: {drift}")
    reasons = by_label(samples, "occam_model_at_risk_reason", "reason")
    fired = sorted(r for r, v in reasons.items() if v == 1)
    at_risk = sample(samples, "occam_model_at_risk")
    verdict = {None: "no verdict yet", 0.0: "model not at risk", 1.0: "model at risk"}.get(
        at_risk, "model at risk"
    )
    lines.append(
        f"monitor verdict: {verdict}" + (f", reasons: {', '.join(fired)}" if fired else "")
    )
    return lines


# --- the timeline ----------------------------------------------------------------------------


def _timeline(
    stack: _Stack,
    config: OccamConfig,
    loop: _Loop,
    windows: list[WindowPoint],
    spans: list[AlertSpan],
) -> Timeline:
    bundle = loop.champion
    samples = scrape(stack.monitor)
    importance = by_label(samples, "occam_feature_importance", "feature") or dict(
        bundle.feature_importance
    )
    if importance:
        ranked = sorted(importance, key=lambda f: importance[f], reverse=True)
    else:  # no importance known: the features that moved most
        peak = {f: max(w.drift.get(f, 0.0) for w in windows) for f in windows[-1].drift}
        ranked = sorted(peak, key=lambda f: peak[f], reverse=True)
    top = [(f, importance.get(f)) for f in ranked[:TOP_FEATURES]]
    promoted = [e.label for e in loop.events if e.kind == "promotion"]
    return Timeline(
        title=f"{config.project}: model {bundle.tag}"
        + (f", then {promoted[0]}" if promoted else "")
        + ", replayed window by window",
        goals={g.metric: g.threshold for g in config.goals},
        windows=windows,
        alerts=spans,
        top_features=top,
        weighted_drift_threshold=sample(samples, "occam_weighted_drift_threshold"),
        events=list(loop.events),
    )


def _alert_spans(stack: _Stack) -> list[AlertSpan]:
    """When each alert fired, from Prometheus' ALERTS series (per-feature ones by feature)."""
    if stack.prometheus is None:
        return []
    end = time.time()
    step = PROMETHEUS_INTERVAL_SECONDS
    series = query_range(stack.prometheus, 'ALERTS{alertstate="firing"}', stack.started, end, step)
    spans = []
    for s in series:
        name = alert_name({"labels": s["metric"]})
        stamps = [float(t) for t, _ in s["values"]]
        begin = previous = stamps[0]
        for t in stamps[1:]:
            if t - previous > 2 * step:  # a gap: the alert resolved and fired again
                spans.append(AlertSpan(name, begin, previous))
                begin = t
            previous = t
        spans.append(AlertSpan(name, begin, previous))
    return spans


# --- the retrain loop --------------------------------------------------------------------------


def _occam(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `occam <args> --config config_path` (wide output, so its tables are not wrapped)."""
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        occam_command(*args, "--config", str(config_path)),
        capture_output=True,
        text=True,
        env=env,
    )


@dataclass
class _Loop:
    """The retrain loop in a demo run: watching -> (retrain) -> shadow -> promoted, or refused.

    `champion` served when the demo started; `served` serves now; `events` are the steps taken
    (after which window). `restored` once `occam rollback` put the champion back. `decided`
    is the window after which the challenger was promoted or refused; `refused_truth` what a
    refused challenger scores on each later window (by index), beside the champion that
    served it, so the narration says whether the refusal was right."""

    config_path: Path
    key: str
    champion: Bundle
    served: Bundle
    stage: str = "watching"
    challenger: Bundle | None = None
    events: list[LoopEvent] = field(default_factory=list)
    restored: bool = False
    decided: int | None = None
    refused_truth: dict[int, dict[str, float]] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.stage == "promoted"

    def bundle_of(self, version: str | None) -> Bundle:
        """The bundle that answered as `version` (the one serving now when unknown)."""
        for bundle in (self.served, self.champion, self.challenger):
            if bundle is not None and bundle.version == version:
                return bundle
        return self.served

    def step(
        self,
        stack: _Stack,
        config: OccamConfig,
        point: WindowPoint,
        samples: Samples,
        window_rows: int,
        say: Callable[[str], None],
    ) -> None:
        """After production window `point`: retrain when the monitor recommends it, shadow a
        challenger that passed the gate for one window, then promote it (or not)."""
        if self.stage == "watching" and sample(samples, "occam_retrain_recommended") == 1:
            self._retrain(stack, point, window_rows, say)
        elif self.stage == "shadow":
            self._judge_shadow(stack, config, point, samples, say)

    def _retrain(
        self, stack: _Stack, point: WindowPoint, window_rows: int, say: Callable[[str], None]
    ) -> None:
        reasons = ", ".join(point.reasons) or "the monitor's verdict"
        say(f"the monitor recommends retraining ({reasons}): running `occam retrain` ...")
        done = _occam(self.config_path, "retrain")
        output = done.stdout + done.stderr  # the command's story goes to stderr, rich-printed
        table = output.splitlines()
        start = next((i for i, line in enumerate(table) if "champion vs challenger" in line), 0)
        for line in table[start:]:
            if line.strip() and not line.startswith(("bundle ", "model card ", "MLflow ")):
                say(f"  | {line.rstrip()}")
        found = re.search(r"bundle (\S+) \(stage=(\w+)\)", output)
        if done.returncode == EXIT_NOT_ENOUGH_ROWS or found is None:
            detail = (output.strip().splitlines() or ["no output"])[-1]
            say(f"`occam retrain` exited {done.returncode}: {detail}; the loop waits")
            if done.returncode != EXIT_NOT_ENOUGH_ROWS:
                self.stage = "failed"
            return
        self.challenger = get_bundle(found.group(1))
        tag = self.challenger.tag
        if done.returncode != 0:
            self.stage, self.decided = "refused", point.index
            self.events.append(LoopEvent("refused", point.index, f"gate refused {tag}"))
            say(f"the gate refused challenger {tag}: champion {self.served.tag} keeps serving")
            return
        self.events.append(LoopEvent("retrain", point.index, f"retrained: {tag} passed the gate"))
        status, answer = http_json(
            f"{stack.service}/admin/shadow", {"tag": tag, "rows": window_rows}, api_key=self.key
        )
        outcome = answer.get("outcome") if isinstance(answer, dict) else None
        if status != 200 or outcome != "swapped":
            self.stage = "failed"
            say(f"POST /admin/shadow refused {tag} ({status}): {answer}")
            return
        self.stage = "shadow"
        self.events.append(LoopEvent("shadow", point.index, f"{tag} in shadow"))
        say(
            f"challenger {tag} passed the gate; it now scores the next {window_rows} rows in "
            "shadow (logged, never answered) before any promotion"
        )

    def _judge_shadow(
        self,
        stack: _Stack,
        config: OccamConfig,
        point: WindowPoint,
        samples: Samples,
        say: Callable[[str], None],
    ) -> None:
        """Promote the shadowed challenger unless the monitor's live comparison shows it worse
        than the champion on a goal by more than WARRANT_MARGIN."""
        assert self.challenger is not None
        rows = sample(samples, "occam_shadow_rows_total") or 0
        worse = []
        for goal in config.goals:
            live = {
                role: sample(samples, "occam_shadow_live_metric", metric=goal.metric, role=role)
                for role in ("shadow", "champion")
            }
            guess = {
                role: sample(samples, "occam_shadow_goal_estimate", metric=goal.metric, role=role)
                for role in ("shadow", "champion")
            }
            parts = [
                f"{name} challenger {_num(values['shadow'])} vs champion {_num(values['champion'])}"
                for name, values in (("live", live), ("estimated", guess))
                if values["shadow"] is not None or values["champion"] is not None
            ]
            say(f"shadow on {rows:.0f} rows, {goal.metric}: " + ("; ".join(parts) or "no figure"))
            new, old = live["shadow"], live["champion"]
            if new is not None and old is not None and new < old - WARRANT_MARGIN:
                worse.append(f"{goal.metric} {new:.3f} < {old:.3f}")
        tag = self.challenger.tag
        if worse:
            self.stage, self.decided = "refused", point.index
            self.events.append(LoopEvent("refused", point.index, f"shadow: {tag} worse"))
            say(f"not promoted: in shadow the challenger did worse ({'; '.join(worse)})")
            return
        reason = f"occam demo: passed the gate and {rows:.0f} shadow rows"
        done = _occam(self.config_path, "promote", tag, "--reason", reason)
        if done.returncode != 0:
            self.stage = "failed"
            say(f"`occam promote {tag}` exited {done.returncode}: {done.stdout}{done.stderr}")
            return
        _wait_served(stack, self.challenger.version)
        self.events.append(LoopEvent("promotion", point.index, f"{tag} promoted"))
        say(
            f"`occam promote {tag}`: the service answers with it now, without a restart "
            f"(GET /model), and the monitor follows it from the log"
        )
        self.served, self.stage, self.decided = self.challenger, "promoted", point.index

    def truth_of(
        self,
        bundle: Bundle,
        chunk: pd.DataFrame,
        stats: ReplayStats,
        begin: int,
        config: OccamConfig,
    ) -> dict[str, float]:
        """Each goal metric `bundle` (one that did not answer) scores on the rows of `chunk`
        (sent from row `begin` of `stats`), answering by its own decision weights."""
        model: Any = self._models.get(bundle.tag)
        if model is None:
            model = self._models[bundle.tag] = bundle.load_pipeline()
        raw = model.predict_proba(bundle.schema.coerce(chunk))
        columns = [list(map(str, model.classes_)).index(c) for c in bundle.classes]
        truth = np.asarray(stats.truth[begin:])
        known = np.isin(truth, bundle.classes)
        if not known.any():
            return {}
        positive = config.goals_positive_label or bundle.classes[-1]
        proba = raw[:, columns][known]
        return _defined_scores(
            config, truth[known], proba, list(bundle.classes), positive, bundle.decision_weights
        )

    def record_refused(
        self,
        point: WindowPoint,
        chunk: pd.DataFrame,
        stats: ReplayStats,
        begin: int,
        config: OccamConfig,
    ) -> None:
        """After a refusal: what the refused challenger scores on window `point`'s rows."""
        if self.stage == "refused" and self.challenger is not None:
            self.refused_truth[point.index] = self.truth_of(
                self.challenger, chunk, stats, begin, config
            )

    def tell(
        self, windows: list[WindowPoint], config: OccamConfig, say: Callable[[str], None]
    ) -> None:
        """The loop's outcome, measured: after a promotion, what the new model scored on the
        later windows against what the old champion scores on the same rows; after a refusal,
        what the refused challenger would have scored there against the champion that served
        them (so the refusal is shown right or wrong); in both, the monitor's live metric with
        its interval when the decision was taken and at the end."""
        if self.stage == "watching":
            say("the loop: the monitor never recommended retraining in the production period")
            return
        if self.stage not in ("promoted", "refused") or self.decided is None:
            say(f"the loop: no promotion ({self.stage}); champion {self.champion.tag} served on")
            return
        later = [w for w in windows if w.index > self.decided]
        if self.promoted:
            new_name, old_name = "the new model", "the old champion"
            pairs = [(w.truth, w.champion_truth) for w in later if w.champion_truth]
            say(
                f"the loop: after the promotion of {self.served.tag} (after window "
                f"{self.decided + 1}):"
            )
        else:
            new_name, old_name = "the refused challenger", "the champion"
            pairs = [(self.refused_truth.get(w.index, {}), w.truth) for w in later]
            pairs = [(new, old) for new, old in pairs if new]
            say(
                f"the loop: the challenger was refused after window {self.decided + 1}; "
                f"champion {self.champion.tag} served on"
            )
        for goal in config.goals:
            m = goal.metric
            new = [a[m] for a, b in pairs if m in a and m in b]
            old = [b[m] for a, b in pairs if m in a and m in b]
            if not new:
                continue
            a, b = float(np.mean(new)), float(np.mean(old))
            wins = sum(x > y for x, y in zip(new, old, strict=True))
            says = "meets" if a >= goal.threshold else "misses"
            say(
                f"  true {m} over the {len(new)} later windows (mean of windows): {new_name} "
                f"{a:.3f} ({says} the goal {goal.threshold:.2f}), {old_name} on the same rows "
                f"{b:.3f} ({a - b:+.3f}, better in {wins} of {len(new)} windows)"
            )
            before = windows[self.decided].live.get(m) if self.decided < len(windows) else None
            after = later[-1].live.get(m) if later else None
            if before is not None and after is not None:
                say(
                    f"  live {m} (the monitor, on feedback): {_band_text(before)} when the "
                    f"decision was taken, {_band_text(after)} at the end"
                    + (f" ({self.served.tag} serving)" if self.promoted else "")
                )

    def restore(self, stack: _Stack, after: int, say: Callable[[str], None]) -> None:
        """`occam rollback` to the champion (the next run starts from it), then the audit log."""
        done = _occam(self.config_path, "rollback", "--reason", "occam demo: restore the champion")
        if done.returncode != 0:
            say(f"`occam rollback` exited {done.returncode}: {done.stdout}{done.stderr}")
            return
        self.restored = True
        _wait_served(stack, self.champion.version)
        self.events.append(LoopEvent("rollback", after, f"rolled back to {self.champion.tag}"))
        self.served = self.champion
        _, model = http_json(f"{stack.service}/model")
        history = model.get("history", []) if isinstance(model, dict) else []
        say(
            f"`occam rollback`: the service answers with {self.champion.tag} again (GET /model "
            f"shows version {model.get('version') if isinstance(model, dict) else '?'}, "
            f"{len(history)} audit records), ready for the next run"
        )
        shown = _occam(self.config_path, "history", "--limit", "3")
        for line in (shown.stdout + shown.stderr).splitlines():
            if line.strip():
                say(f"  | {line.rstrip()}")


def _wait_served(stack: _Stack, version: str) -> None:
    """Until GET /model names `version` (the service swapped on its poll). Raises TimeoutError."""
    deadline = time.monotonic() + SWAP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        status, model = http_json(f"{stack.service}/model")
        if status == 200 and isinstance(model, dict) and model.get("version") == version:
            return
        time.sleep(0.2)
    raise TimeoutError(f"the service did not swap to model {version} in {SWAP_TIMEOUT_SECONDS} s")


def _num(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.3f}"

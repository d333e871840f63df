"""The sidecar loop: read the log, feed the windows, check, export; one process, one thread of
work (the metrics endpoint answers from its own thread).

Each turn: read new log lines (up to a byte budget), follow the model that wrote them, apply them
to the state; run a check when `check_interval_seconds` passed or `check_every_rows` new
predictions arrived; save the checkpoint every `checkpoint_interval_seconds`; sleep
`poll_interval_seconds` once it has caught up (the read reached the end of every segment; only a
read cut short by the byte budget goes on at once). Under steady traffic the sidecar thus reads
in batches every `poll_interval_seconds`, not a handful of records per turn in a loop that never
waits. SIGTERM/SIGINT end the loop after the current turn and write a final checkpoint.

The watched model follows the log: predictions carry `model_version`, and when a newer bundle of
the configured model name writes them, the sidecar loads that bundle's reference and starts its
windows afresh. An older model's rows are skipped, unless the registry serves that model again
(`occam rollback`, or `occam promote` of an older tag): when skipped rows arrive the sidecar
asks the registry (at most every REGISTRY_CHECK_SECONDS) and follows the model it names. A new
watched model starts with empty windows, no risk verdict and no retrain recommendation (issue
7: a recommendation holds until a new model is served). Before any prediction it watches the
served bundle (`serving.model_tag`, else the newest stage=production one). Without a bundle it
still reads and counts records.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from monitoring.check import CheckResult, describe, run_check
from monitoring.exporter import MonitorCollector, Status
from monitoring.notify import Notifier
from monitoring.reader import gc_paused, read_new
from monitoring.reference import Reference, build_reference, created_timestamp
from monitoring.retention import apply_retention
from monitoring.shadow import ShadowComparison, ShadowTracker
from monitoring.state import STATE_FILE, MonitorState
from occam.auth import metrics_guard
from occam.bundle import Bundle, BundleError, get_bundle, latest_production
from occam.config import OccamConfig

log = logging.getLogger(__name__)

#: Seconds between attempts to find a bundle when none could be loaded.
BUNDLE_RETRY_SECONDS = 30.0
#: Least seconds between two questions to the registry about skipped models' rows.
REGISTRY_CHECK_SECONDS = 2.0


def state_path(config: OccamConfig) -> Path:
    """The checkpoint file: `monitoring.state_dir` / STATE_FILE (outside the log folder)."""
    return Path(config.monitoring.state_dir) / STATE_FILE


def watched_config(config: OccamConfig) -> OccamConfig:
    """`config` with the redacted log columns (`serving.log_redact`) added to
    `monitoring.drift_exclude`: their logged values are hashes or absent, so drift checks
    leave them out."""
    redacted = [c for c in config.serving.log_redact if c not in config.monitoring.drift_exclude]
    if not redacted:
        return config
    monitoring = config.monitoring.model_copy(
        update={"drift_exclude": [*config.monitoring.drift_exclude, *redacted]}
    )
    return config.model_copy(update={"monitoring": monitoring})


class Sidecar:
    """The monitor; `run()` loops until `stop()`, `step()` does one turn (for tests).

    `clock` returns Unix seconds and `find_bundle(tag_or_None)` returns a bundle (None: the
    served one) or raises `BundleError`; both are injectable.
    """

    def __init__(
        self,
        config: OccamConfig,
        clock: Callable[[], float] = time.time,
        find_bundle: Callable[[str | None], Bundle] | None = None,
    ) -> None:
        config = watched_config(config)
        self.config = config
        self.mon = config.monitoring
        self.clock = clock
        self.find_bundle = find_bundle or self._find_bundle
        self.path = state_path(config)
        self.state = MonitorState.load(
            self.path,
            self.mon.window_rows,
            self.mon.min_window_rows,
            self.mon.feedback_join_rows,
            self.mon.live_window_labels,
        )
        self.notifier = Notifier(
            self.mon.retrain_command,
            self.mon.retrain_webhook,
            self.mon.retrain_cooldown_hours * 3600,
            timeout_seconds=self.mon.retrain_webhook_timeout_seconds,
            retries=self.mon.retrain_webhook_retries,
            backoff_seconds=self.mon.retrain_webhook_backoff_seconds,
            command_timeout_seconds=self.mon.retrain_command_timeout_seconds,
        )
        self.reference: Reference | None = None
        self.shadow = ShadowTracker(self.mon.window_rows, self.mon.live_window_labels)
        self.shadow_result: ShadowComparison | None = None
        self.last_check: CheckResult | None = None
        self.last_counted: CheckResult | None = None
        self.checks = self.check_errors = 0
        self._stop = threading.Event()
        self._bundle_tried = self._registry_asked = -float("inf")
        self._checked_at = -float("inf")
        self.behind = False  # the last read stopped at the byte budget: more is waiting
        self._checked_rows = self._last_rows = -1
        self._saved_at = clock()

    # -- the model ---------------------------------------------------------------------------

    def _find_bundle(self, version: str | None) -> Bundle:
        name = self.config.output.model_name
        if version is not None:
            return get_bundle(version if ":" in version else f"{name}:{version}")
        if self.config.serving.model_tag:
            return get_bundle(self.config.serving.model_tag)
        found = latest_production(name)
        if found is None:
            raise BundleError(f"no model {name!r} labelled stage=production in the model store")
        return found

    def _load(self, version: str | None, bundle: Bundle | None = None) -> bool:
        """Watch `version` (None: the served bundle); False when it cannot be loaded."""
        try:
            bundle = bundle or self.find_bundle(version)
            reference = build_reference(bundle, self.mon, seed=self.config.seed)
        except Exception as exc:  # the store or the bundle is broken: keep reading, retry later
            log.warning("cannot load the reference of model %s: %s", version or "(served)", exc)
            return False
        if reference.version != self.state.model_version:
            self.state.adopt_model(reference.version)
            runs = self.state.runs  # a new model starts its risk verdict and recommendation afresh
            self.state.runs = replace(
                runs, risk_enter={}, risk_clear={}, risk_active=(), notified_reasons=()
            )
        self.state.window.bind(reference.encoding)  # rows arriving from now on: as columns
        self.reference = reference
        self.last_check = self.last_counted = None
        self._checked_rows = -1
        log.info(
            "watching model %s (%d reference rows; left out of drift: %s)",
            reference.tag,
            reference.rows,
            ", ".join(reference.excluded) or "none",
        )
        return True

    def _served_again(self, versions: set[str]) -> bool:
        """When the log shows rows of skipped models, ask the registry (rate-limited) which model
        it serves; when that is one of them (a rollback), watch it again. True if it did."""
        state = self.state
        returning = versions & state.skipped_versions
        now = time.monotonic()
        if not returning or now - self._registry_asked < REGISTRY_CHECK_SECONDS:
            return False
        self._registry_asked = now
        try:
            served = self.find_bundle(None)
        except Exception as exc:  # the store is unreachable: keep the watched model
            log.warning("cannot ask the registry which model is served: %s", exc)
            return False
        if served.version not in returning:
            return False
        log.info("the registry serves model %s again: watching it", served.version)
        state.skipped_versions.discard(served.version)
        return self._load(served.version, served)

    def _follow(self, versions: set[str]) -> None:
        """Adopt the model the log shows: the newest of `versions` (not skipped) when the watched
        model was not confirmed by the log yet or is older; other versions are skipped, unless
        the registry serves one of them again (`_served_again`)."""
        state = self.state
        if self._served_again(versions):
            return
        candidates = []
        for version in versions - {state.model_version} - state.skipped_versions:
            try:
                bundle = self.find_bundle(version)
            except Exception as exc:  # BundleError, or the store's own NotFound
                log.warning("the log names model %s, not in the model store: %s", version, exc)
                state.skipped_versions.add(version)
                continue
            candidates.append((created_timestamp(bundle.metadata) or 0.0, version, bundle))
        if not candidates:
            return
        candidates.sort(key=lambda c: (c[0], c[1]))
        created, version, bundle = candidates[-1]
        current = (self.reference.created_ts or 0.0) if self.reference else None
        if current is not None and state.confirmed and created < current:
            state.skipped_versions.update(v for _, v, _ in candidates)
            return
        if self._load(version, bundle):
            state.skipped_versions.update(v for _, v, _ in candidates[:-1])

    # -- the loop ----------------------------------------------------------------------------

    def step(self) -> int:
        """One turn: read, apply, maybe check and checkpoint. Returns records read."""
        now = self.clock()
        if self.reference is None and now - self._bundle_tried >= BUNDLE_RETRY_SECONDS:
            self._bundle_tried = now
            self._load(self.state.model_version)
            if self.reference is None and self.state.model_version is not None:
                self._load(None)
        with gc_paused():  # parse, apply and drop the batch before the collector looks
            batch = read_new(self.config.serving.log_dir, self.state.segments, columnar=True)
            if batch.predictions or batch.rows is not None:
                versions = {r["model_version"] for r in batch.predictions}
                if batch.rows is not None:
                    versions.add(batch.rows.shape.version)
                if versions - {self.state.model_version}:
                    self._follow(versions)
            self.shadow.add(batch.predictions, batch.shadow, batch.feedback)
            self.state.apply(batch)
            read = batch.records + len(batch.shadow) + batch.malformed
            self.behind = batch.more
            del batch
        due = now - self._checked_at >= self.mon.check_interval_seconds
        enough = self.state.rows_total - self._checked_rows >= self.mon.every_rows
        if self.reference is not None and (due or enough):
            self.check(now)
        if now - self._saved_at >= self.mon.checkpoint_interval_seconds:
            self.save()
        return read

    def check(self, now: float) -> None:
        """Run a check; a failure is logged and counted, the last good result stays."""
        reference = self.reference
        if reference is None:
            return
        self._checked_at, self._checked_rows = now, self.state.rows_total
        previous = self.last_check
        unchanged = previous is not None and self.state.rows_total == self._last_rows
        self._last_rows = self.state.rows_total
        try:
            result = run_check(
                self.state, reference, self.mon, now, reuse=previous if unchanged else None
            )
        except Exception:
            self.check_errors += 1
            log.exception("check failed")
            return
        self.apply(result)
        self.compare_shadow(reference)
        self.notifier.update(result.recommendation, self.state.runs, now, reference.version)

    def compare_shadow(self, ref: Reference) -> None:
        """Score the shadow challenger and the champion on their shared rows (`monitoring.shadow`);
        a failure is logged and counted like a failed check."""
        try:
            self.shadow_result = self.shadow.compare(
                ref.classes,
                ref.positive,
                ref.goals,
                self.mon.live_min_labels,
                self.mon.band_level,
                ref.estimator,
                ref.decision_weights,
            )
        except Exception:
            self.check_errors += 1
            log.exception("shadow comparison failed")

    def apply(self, result: CheckResult) -> None:
        """Take a check's result: its hysteresis memory, and (when counted) its verdicts."""
        before = self.state.runs.risk_active
        self.state.runs = result.runs
        self.last_check = result
        self.checks += 1
        if not result.counted:
            return
        self.last_counted = result
        if result.runs.risk_active != before:
            log.warning("model at risk: %s", describe(result) if result.model_at_risk else "no")

    def retain(self) -> None:
        """Apply log retention (`monitoring.log_retention_*`) to the log and the state."""
        mon = self.mon
        apply_retention(
            self.config.serving.log_dir,
            self.state,
            self.clock(),
            mon.log_retention_bytes,
            mon.log_retention_hours,
        )

    def save(self) -> None:
        """Apply log retention (it changes the marks), then write the checkpoint."""
        self.retain()
        self.state.save(self.path)
        self._saved_at = self.clock()

    def run(self, max_seconds: float | None = None, once: bool = False) -> None:
        """Loop until `stop()` (or SIGTERM/SIGINT when run in the main thread), `max_seconds`,
        or, with `once`, until a turn finds nothing new to read (then it checks once more)."""
        started = time.monotonic()
        self.retain()  # a backlog past its age is deleted (and counted) before it is read
        try:
            while not self._stop.is_set():
                read = self.step()
                if once and read == 0:
                    self.check(self.clock())
                    break
                if max_seconds is not None and time.monotonic() - started >= max_seconds:
                    break
                if not self.behind:  # caught up: let the writers write a batch
                    self._stop.wait(self.mon.poll_interval_seconds)
        finally:
            self.save()

    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    # -- the exporter's view -----------------------------------------------------------------

    def status(self) -> Status:
        """A snapshot for the exporter (called from the HTTP thread; reads only)."""
        state = self.state
        return Status(
            config=self.mon,
            now=self.clock(),
            records=dict(state.records),
            malformed=state.malformed,
            feedback_unmatched=state.feedback_unmatched,
            feedback_duplicates=state.feedback_duplicates,
            feedback_label_shift=state.join.label_shift(self.mon.live_min_labels),
            account=replace(state.account, events=dict(state.account.events)),
            log_bytes=state.log_bytes,
            log_segments=state.log_segments,
            window_rows=len(state.window),
            unread_bytes=state.unread_bytes,
            last_record_ts=state.last_record_ts,
            checks=self.checks,
            check_errors=self.check_errors,
            notifications_sent=self.notifier.sent,
            notifications_failed=self.notifier.failed,
            reference=self.reference,
            check=self.last_check,
            counted=self.last_counted,
            shadow=self.shadow_result,
            retrain_runs=dict(self.notifier.runs),
        )

    def collector(self, registry: Any = None) -> MonitorCollector:
        return MonitorCollector(self.status, registry)


def start_exporter(
    sidecar: Sidecar, host: str, port: int, guard: Callable[[Any], Any] | None = None
) -> tuple[Any, threading.Thread]:
    """Serve /metrics from a fresh registry on (host, port); port 0 picks a free port
    (read it from `server.server_port`). `guard` wraps the WSGI app (API keys)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    sidecar.collector(registry)
    if guard is None:
        return start_http_server(port, addr=host, registry=registry)
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(host, port, guard(make_wsgi_app(registry)), ThreadingWSGIServer, Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def main(
    config: OccamConfig,
    port: int | None = None,
    host: str | None = None,
    once: bool = False,
    max_seconds: float | None = None,
    on_ready: Callable[[str], None] = lambda url: None,
) -> None:
    """Run the sidecar with its metrics endpoint until SIGTERM/SIGINT (see `Sidecar.run`).

    With `once` no endpoint is started. Raises `CheckpointError` for an unusable checkpoint and
    OSError when the port cannot be bound. `on_ready` receives the metrics URL.
    """
    sidecar = Sidecar(config)
    server = None
    if not once:
        address = host or config.monitoring.host
        server, _ = start_exporter(
            sidecar,
            address,
            config.monitoring.port if port is None else port,
            metrics_guard(config.serving.auth),
        )
        on_ready(f"http://{address}:{server.server_port}/metrics")
    if threading.current_thread() is threading.main_thread():
        sidecar.install_signal_handlers()
    try:
        sidecar.run(max_seconds=max_seconds, once=once)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()

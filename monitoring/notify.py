"""Retrain notifications: run the configured command and/or POST to the configured webhook.

`Notifier.update` is called after every check with the policy's recommendation; it notifies once
per new recommendation (one whose reasons were not all notified already), at most once per
cooldown, in a background thread that never blocks or takes down the sidecar. The memory of what
was notified lives in the checkpoint (`state.Runs`).

The webhook (``monitoring.retrain_webhook``, http or https only: the config refuses anything
else) gets ``{"retrain_recommended": true, "reasons": [...], "model_version": "..."}`` as JSON,
through httpx with a timeout per attempt and retries with exponential backoff on connection
errors, timeouts, 408, 429 and 5xx answers. `sent`/`failed` count notifications after their
last attempt; the exporter publishes them as ``occam_retrain_notifications_total{outcome}``,
and the alert ``OccamRetrainNotificationFailed`` fires on a failure.

The command (``monitoring.retrain_command``, typically ``occam retrain --config occam.yaml``)
runs at most one at a time: a notification that comes while a run is still going waits for it
(the cooldown keeps them apart). Its outcome is read from the exit code as `occam retrain` sets
it: 0 ``promoted``, 4 ``not_promoted`` (the challenger stayed a candidate: a completed run), any
other code, a timeout (``monitoring.retrain_command_timeout_seconds``) or a command that cannot
start ``failed``. `runs` counts them (``occam_retrain_runs_total{outcome}``); the alert
``OccamRetrainFailed`` fires on a failed run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from monitoring.state import Runs

log = logging.getLogger(__name__)

#: Answers worth another attempt: the receiver is busy or broken, not refusing the request.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: Longest pause between two attempts (seconds), whatever the backoff grows to.
MAX_BACKOFF_SECONDS = 60.0
#: `occam retrain`'s exit codes (occam/cli.py) -> the outcome of a run; anything else failed.
RUN_OUTCOMES = {0: "promoted", 4: "not_promoted"}
#: Every outcome of a retrain run (the `outcome` label of occam_retrain_runs_total).
RUN_OUTCOME_NAMES = ("promoted", "not_promoted", "failed")


class Recommendation(Protocol):
    """What the notifier reads of the policy's recommendation."""

    @property
    def recommended(self) -> bool: ...

    @property
    def active(self) -> tuple[str, ...]: ...


class WebhookError(RuntimeError):
    """A webhook POST that failed after its last attempt."""


class Notifier:
    """Calls `command` (argv) and/or POSTs to `webhook` for new recommendations.

    Both run in the background and never block the sidecar; `sent` and `failed` count the
    calls, `runs` the command's outcomes (`RUN_OUTCOME_NAMES`). `run_command` (argv, env ->
    exit code; None counts as 0) and `post` (url, JSON body) are injectable for tests; the
    default command runner stops a run after `command_timeout_seconds`, the default post is
    `post_webhook` with `timeout_seconds`, `retries` and `backoff_seconds`.
    """

    def __init__(
        self,
        command: Sequence[str] | None,
        webhook: str | None,
        cooldown_seconds: float,
        run_command: Callable[[Sequence[str], dict[str, str]], int | None] | None = None,
        post: Callable[[str, bytes], None] | None = None,
        *,
        timeout_seconds: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 1.0,
        command_timeout_seconds: float = 3600.0,
    ) -> None:
        self.command = list(command) if command else None
        self.webhook = webhook
        self.cooldown_seconds = cooldown_seconds
        self.run_command = run_command or (
            lambda argv, env: _run_command(argv, env, command_timeout_seconds)
        )
        self.post = post or (
            lambda url, body: post_webhook(
                url,
                body,
                timeout_seconds=timeout_seconds,
                retries=retries,
                backoff_seconds=backoff_seconds,
            )
        )
        self.sent = 0
        self.failed = 0
        self.runs = dict.fromkeys(RUN_OUTCOME_NAMES, 0)
        self._count = threading.Lock()
        self._one_run = threading.Lock()  # at most one command at a time

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.webhook)

    def update(self, recommendation: Recommendation, runs: Runs, now: float, model: str) -> bool:
        """Notify if `recommendation` is new and the cooldown has passed; return whether it did.

        Updates `runs.notified_at` / `runs.notified_reasons` (forgotten once the recommendation
        ends, so the next one is new again).
        """
        if not recommendation.recommended:
            runs.notified_reasons = ()
            return False
        active = recommendation.active
        if set(active) <= set(runs.notified_reasons) or not self.enabled:
            return False
        if runs.notified_at is not None and now - runs.notified_at < self.cooldown_seconds:
            return False
        runs.notified_at = now
        runs.notified_reasons = active
        payload = {"retrain_recommended": True, "reasons": list(active), "model_version": model}
        log.warning("retraining recommended for model %s: %s", model, ", ".join(active))
        threading.Thread(target=self._send, args=(payload,), daemon=True).start()
        return True

    def _send(self, payload: dict[str, object]) -> None:
        if self.command:
            env = {
                **os.environ,
                "OCCAM_RETRAIN_REASONS": ",".join(payload["reasons"]),  # type: ignore[arg-type]
                "OCCAM_MODEL_VERSION": str(payload["model_version"]),
            }
            with self._one_run:
                self._attempt("command", lambda: self._run(self.command or [], env))
        if self.webhook:
            body = json.dumps(payload).encode()
            url = self.webhook
            self._attempt("webhook", lambda: self.post(url, body))

    def _run(self, argv: Sequence[str], env: dict[str, str]) -> None:
        """Run the command, count its outcome; raise (a failed notification) when it failed."""
        try:
            code = self.run_command(argv, env)
        except Exception:
            self._count_run("failed")
            raise
        outcome = RUN_OUTCOMES.get(0 if code is None else code, "failed")
        self._count_run(outcome)
        log.warning("retrain command %s finished: exit %s (%s)", argv[0], code, outcome)
        if outcome == "failed":
            raise RuntimeError(f"{argv[0]} exited with {code}")

    def _count_run(self, outcome: str) -> None:
        with self._count:
            self.runs[outcome] += 1

    def _attempt(self, what: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:  # a notification must never take the sidecar down
            with self._count:
                self.failed += 1
            log.error("retrain notification (%s) failed: %s", what, exc)
        else:
            with self._count:
                self.sent += 1


def post_webhook(
    url: str,
    body: bytes,
    *,
    timeout_seconds: float,
    retries: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """POST `body` (JSON) to `url`: 1 + `retries` attempts, `timeout_seconds` each, waiting
    `backoff_seconds` * 2**n (at most `MAX_BACKOFF_SECONDS`) before retry n + 1.

    Retries connection errors, timeouts, 408, 429 and 5xx; any other 4xx is final. Redirects are
    not followed. Raises `WebhookError` saying the last outcome; logs the URL's host only (the
    path or query may hold a token).
    """
    where = urlsplit(url).netloc
    outcome = "no attempt"
    with httpx.Client(timeout=timeout_seconds, follow_redirects=False) as client:
        for attempt in range(retries + 1):
            if attempt:
                pause = min(backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
                log.info("webhook %s: %s; attempt %d in %.1fs", where, outcome, attempt + 1, pause)
                sleep(pause)
            try:
                response = client.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
                continue
            if response.is_success:
                return
            outcome = f"HTTP {response.status_code}"
            if response.status_code not in RETRY_STATUSES:
                break
    raise WebhookError(f"POST to {where} failed after {attempt + 1} attempt(s): {outcome}")


def _run_command(argv: Sequence[str], env: dict[str, str], timeout: float) -> int:
    """Run `argv`; its exit code. Raises `subprocess.TimeoutExpired` (the run is killed) after
    `timeout` seconds and `OSError` when it cannot start."""
    return subprocess.run(list(argv), env=env, timeout=timeout, check=False).returncode

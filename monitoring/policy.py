"""The retrain policy: hysteresis, the recommendation with its reasons, and notifications.

Reasons (each True, False, or None when it cannot be judged yet):

- ``data_drift``: the window drift verdict held for `consecutive` counted windows in a row
  (the "model at risk" verdict; one noisy window does not flip it);
- ``prediction_drift``: the same for the model's outputs (predicted class mix, confidence);
- ``live_metric``: a goal metric under its threshold on at least the minimum number of labels;
- ``model_age``: the model is older than the configured maximum.

Retraining is recommended when any reason is True. A configured command and/or webhook is
called once per new recommendation (one whose reasons were not all notified already), at most
once per cooldown; the memory of what was notified lives in the checkpoint (`state.Runs`).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitoring.state import Runs

log = logging.getLogger(__name__)

REASONS = ("data_drift", "live_metric", "prediction_drift", "model_age")


def advance(run: int, verdict: bool | None, counted: bool) -> int:
    """The run length of drifting windows after a check.

    A check without a verdict, or one that does not count as a new window (too few new rows
    since the last counted one), leaves the run as it was.
    """
    if verdict is None or not counted:
        return run
    return run + 1 if verdict else 0


@dataclass(frozen=True)
class Recommendation:
    """Whether to retrain, and why: `reasons[name]` is True, False or None (not judged)."""

    reasons: dict[str, bool | None]

    @property
    def recommended(self) -> bool:
        return any(self.reasons.values())

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(r for r in REASONS if self.reasons.get(r))


def recommend(
    *,
    data_drift_run: int | None,
    prediction_drift_run: int | None,
    consecutive: int,
    live_below: bool | None,
    model_age_seconds: float | None,
    max_model_age_seconds: float,
) -> Recommendation:
    """The recommendation; a run of None means no verdict has been reached for this model."""
    return Recommendation(
        reasons={
            "data_drift": None if data_drift_run is None else data_drift_run >= consecutive,
            "live_metric": live_below,
            "prediction_drift": (
                None if prediction_drift_run is None else prediction_drift_run >= consecutive
            ),
            "model_age": (
                None if model_age_seconds is None else model_age_seconds > max_model_age_seconds
            ),
        }
    )


class Notifier:
    """Calls `command` (argv) and/or POSTs to `webhook` for new recommendations.

    Both run in the background and never block the sidecar; `sent` and `failed` count the
    calls. `run_command` and `post` are injectable for tests.
    """

    def __init__(
        self,
        command: Sequence[str] | None,
        webhook: str | None,
        cooldown_seconds: float,
        run_command: Callable[[Sequence[str], dict[str, str]], None] | None = None,
        post: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.command = list(command) if command else None
        self.webhook = webhook
        self.cooldown_seconds = cooldown_seconds
        self.run_command = run_command or _run_command
        self.post = post or _post
        self.sent = 0
        self.failed = 0

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
            self._attempt("command", lambda: self.run_command(self.command or [], env))
        if self.webhook:
            body = json.dumps(payload).encode()
            url = self.webhook
            self._attempt("webhook", lambda: self.post(url, body))

    def _attempt(self, what: str, call: Callable[[], None]) -> None:
        try:
            call()
            self.sent += 1
        except Exception as exc:  # a notification must never take the sidecar down
            self.failed += 1
            log.error("retrain notification (%s) failed: %s", what, exc)


def _run_command(argv: Sequence[str], env: dict[str, str]) -> None:
    completed = subprocess.run(list(argv), env=env, timeout=600, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited with {completed.returncode}")


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()

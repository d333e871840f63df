"""Hysteresis, the retrain recommendation and its notifications."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from monitoring.policy import Notifier, Recommendation, advance, recommend
from monitoring.state import Runs


def test_hysteresis_needs_consecutive_counted_windows() -> None:
    run = 0
    for verdict, counted, expected in [
        (True, True, 1),
        (True, False, 1),  # a check within the same window does not count again
        (None, True, 1),  # no verdict: the run stays as it was
        (True, True, 2),
        (False, True, 0),  # one quiet window resets it
        (True, True, 1),
    ]:
        run = advance(run, verdict, counted)
        assert run == expected


def test_one_noisy_window_does_not_recommend() -> None:
    runs = [advance(0, True, True)]
    rec = recommend(
        data_drift_run=runs[-1],
        prediction_drift_run=0,
        consecutive=2,
        live_below=None,
        model_age_seconds=10.0,
        max_model_age_seconds=100.0,
    )
    assert not rec.recommended
    assert rec.reasons == {
        "data_drift": False,
        "live_metric": None,
        "prediction_drift": False,
        "model_age": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "active"),
    [
        ({"data_drift_run": 2}, ("data_drift",)),
        ({"prediction_drift_run": 3}, ("prediction_drift",)),
        ({"live_below": True}, ("live_metric",)),
        ({"model_age_seconds": 101.0}, ("model_age",)),
        ({"data_drift_run": 5, "live_below": True}, ("data_drift", "live_metric")),
    ],
)
def test_each_reason(kwargs: dict, active: tuple[str, ...]) -> None:
    base = {
        "data_drift_run": 0,
        "prediction_drift_run": 0,
        "consecutive": 2,
        "live_below": False,
        "model_age_seconds": 1.0,
        "max_model_age_seconds": 100.0,
    }
    rec = recommend(**(base | kwargs))
    assert rec.recommended and rec.active == active


def test_unknown_reasons_are_none_not_false() -> None:
    rec = recommend(
        data_drift_run=None,
        prediction_drift_run=None,
        consecutive=2,
        live_below=None,
        model_age_seconds=None,
        max_model_age_seconds=100.0,
    )
    assert not rec.recommended and set(rec.reasons.values()) == {None}


class Calls:
    def __init__(self) -> None:
        self.commands: list[tuple[list[str], dict[str, str]]] = []
        self.posts: list[tuple[str, dict]] = []
        self.event = threading.Event()

    def command(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.commands.append((list(argv), env))

    def post(self, url: str, body: bytes) -> None:
        self.posts.append((url, json.loads(body)))
        self.event.set()


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def rec(**reasons: bool) -> Recommendation:
    base: dict[str, bool | None] = {"data_drift": False, "live_metric": None}
    return Recommendation(reasons={**base, **reasons})


def test_notifies_once_per_new_recommendation_with_cooldown() -> None:
    calls = Calls()
    notifier = Notifier(["retrain"], "http://hook", 3600, calls.command, calls.post)
    runs = Runs()
    assert notifier.update(rec(data_drift=True), runs, now=1000.0, model="v1")
    wait_for(lambda: calls.posts)
    assert calls.commands[0][0] == ["retrain"]
    assert calls.commands[0][1]["OCCAM_RETRAIN_REASONS"] == "data_drift"
    assert calls.posts == [
        (
            "http://hook",
            {
                "retrain_recommended": True,
                "reasons": ["data_drift"],
                "model_version": "v1",
            },
        )
    ]
    # the same recommendation, checked again: no second call
    assert not notifier.update(rec(data_drift=True), runs, now=1010.0, model="v1")
    # a new reason inside the cooldown: held back
    assert not notifier.update(rec(data_drift=True, live_metric=True), runs, 2000.0, "v1")
    # after the cooldown: sent
    assert notifier.update(rec(data_drift=True, live_metric=True), runs, 5000.0, "v1")
    # the recommendation ends, then comes back after the cooldown: new again
    assert not notifier.update(rec(), runs, now=6000.0, model="v1")
    assert runs.notified_reasons == ()
    assert notifier.update(rec(data_drift=True), runs, now=9000.0, model="v1")
    wait_for(lambda: notifier.sent == 6)
    assert notifier.sent == 6 and notifier.failed == 0


def test_a_failing_notification_is_counted_not_raised() -> None:
    def boom(url: str, body: bytes) -> None:
        raise OSError("connection refused")

    notifier = Notifier(None, "http://hook", 0, post=boom)
    assert notifier.update(rec(data_drift=True), Runs(), now=1.0, model="v1")
    wait_for(lambda: notifier.failed)
    assert notifier.failed == 1 and notifier.sent == 0


def test_without_command_or_webhook_nothing_is_sent() -> None:
    runs = Runs()
    assert not Notifier(None, None, 0).update(rec(data_drift=True), runs, 1.0, "v1")
    assert runs.notified_at is None


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


def test_real_webhook_and_command(hook_server: tuple[str, list[dict]], tmp_path: Path) -> None:
    url, received = hook_server
    out = tmp_path / "reasons.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['OCCAM_RETRAIN_REASONS'])"
    notifier = Notifier([sys.executable, "-c", script], url, 0)
    assert notifier.update(rec(data_drift=True, live_metric=True), Runs(), 1.0, "v7")
    wait_for(lambda: notifier.sent == 2, timeout=20)
    assert received == [
        {
            "retrain_recommended": True,
            "reasons": ["data_drift", "live_metric"],
            "model_version": "v7",
        }
    ]
    assert out.read_text() == "data_drift,live_metric"

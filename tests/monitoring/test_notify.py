"""Retrain notifications: once per new recommendation, a real command, a real webhook server
that fails and recovers, retries with backoff, failures counted and exported."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.notify import Notifier, WebhookError, post_webhook
from monitoring.sidecar import Sidecar
from monitoring.state import Runs
from occam.config import ConfigError, parse_config
from occam.loopback import free_port
from tests.conftest import small_config


@dataclass(frozen=True)
class Rec:
    """A recommendation as the policy makes one (`notify.Recommendation`)."""

    active: tuple[str, ...]

    @property
    def recommended(self) -> bool:
        return bool(self.active)


def rec(*reasons: str) -> Rec:
    return Rec(tuple(reasons))


def wait_for(condition: object, timeout: float = 30.0) -> None:
    """Poll until `condition()` holds; the assertion after it says what was expected."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


class Calls:
    def __init__(self) -> None:
        self.commands: list[tuple[list[str], dict[str, str]]] = []
        self.posts: list[tuple[str, dict]] = []

    def command(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.commands.append((list(argv), env))

    def post(self, url: str, body: bytes) -> None:
        self.posts.append((url, json.loads(body)))


def test_notifies_once_per_new_recommendation_with_cooldown() -> None:
    calls = Calls()
    notifier = Notifier(["retrain"], "http://hook", 3600, calls.command, calls.post)
    runs = Runs()
    assert notifier.update(rec("data_drift"), runs, now=1000.0, model="v1")
    wait_for(lambda: calls.posts)
    assert calls.commands[0][0] == ["retrain"]
    assert calls.commands[0][1]["OCCAM_RETRAIN_REASONS"] == "data_drift"
    assert calls.posts == [
        (
            "http://hook",
            {"retrain_recommended": True, "reasons": ["data_drift"], "model_version": "v1"},
        )
    ]
    # the same recommendation, checked again: no second call
    assert not notifier.update(rec("data_drift"), runs, now=1010.0, model="v1")
    # a new reason inside the cooldown: held back
    assert not notifier.update(rec("data_drift", "live_metric"), runs, 2000.0, "v1")
    # after the cooldown: sent
    assert notifier.update(rec("data_drift", "live_metric"), runs, 5000.0, "v1")
    # the recommendation ends, then comes back after the cooldown: new again
    assert not notifier.update(rec(), runs, now=6000.0, model="v1")
    assert runs.notified_reasons == ()
    assert notifier.update(rec("data_drift"), runs, now=9000.0, model="v1")
    wait_for(lambda: notifier.sent == 6)
    assert notifier.sent == 6 and notifier.failed == 0


def test_a_failing_notification_is_counted_not_raised() -> None:
    def boom(url: str, body: bytes) -> None:
        raise OSError("connection refused")

    notifier = Notifier(None, "http://hook", 0, post=boom)
    assert notifier.update(rec("data_drift"), Runs(), now=1.0, model="v1")
    wait_for(lambda: notifier.failed)
    assert notifier.failed == 1 and notifier.sent == 0


def test_without_command_or_webhook_nothing_is_sent() -> None:
    runs = Runs()
    assert not Notifier(None, None, 0).update(rec("data_drift"), runs, 1.0, "v1")
    assert runs.notified_at is None


class Hook:
    """A real webhook receiver on loopback that answers `statuses` in turn (then 204), or
    holds every request until the test ends when `hang` is set."""

    def __init__(self, statuses: Sequence[int] = (), hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                if hang:
                    hook.release.wait()
                status = hook.statuses.pop(0) if hook.statuses else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?token=secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks() -> Iterator[list[Hook]]:
    made: list[Hook] = []
    yield made
    for hook in made:
        hook.close()


def hook(hooks: list[Hook], statuses: Sequence[int] = (), hang: bool = False) -> Hook:
    made = Hook(statuses, hang)
    hooks.append(made)
    return made


BODY = json.dumps({"retrain_recommended": True, "reasons": ["live_metric"]}).encode()


def test_webhook_fails_twice_then_succeeds_with_exponential_backoff(hooks: list[Hook]) -> None:
    server = hook(hooks, [500, 503])
    pauses: list[float] = []
    post_webhook(
        server.url, BODY, timeout_seconds=5, retries=3, backoff_seconds=0.5, sleep=pauses.append
    )
    assert server.bodies == [json.loads(BODY)] * 3
    assert pauses == [0.5, 1.0]


def test_webhook_gives_up_after_its_retries_naming_the_last_outcome(hooks: list[Hook]) -> None:
    server = hook(hooks, [503] * 10)
    pauses: list[float] = []
    with pytest.raises(WebhookError, match=r"failed after 3 attempt\(s\): HTTP 503") as info:
        post_webhook(
            server.url, BODY, timeout_seconds=5, retries=2, backoff_seconds=1, sleep=pauses.append
        )
    assert len(server.bodies) == 3 and pauses == [1, 2]
    assert "secret" not in str(info.value)  # the query may hold a token: never in a message


def test_webhook_client_error_is_final(hooks: list[Hook]) -> None:
    server = hook(hooks, [404])
    with pytest.raises(WebhookError, match=r"after 1 attempt\(s\): HTTP 404"):
        post_webhook(server.url, BODY, timeout_seconds=5, retries=3, backoff_seconds=0)
    assert len(server.bodies) == 1


def test_webhook_connection_refused_and_timeout_are_retried(hooks: list[Hook]) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"
    with pytest.raises(WebhookError, match=r"after 2 attempt\(s\): ConnectError"):
        post_webhook(closed, BODY, timeout_seconds=5, retries=1, backoff_seconds=0)
    stuck = hook(hooks, hang=True)
    with pytest.raises(WebhookError, match=r"after 2 attempt\(s\): ReadTimeout"):
        post_webhook(stuck.url, BODY, timeout_seconds=0.2, retries=1, backoff_seconds=0)
    assert len(stuck.bodies) == 2


def test_the_sidecar_counts_a_recovered_and_a_failed_webhook(
    hooks: list[Hook], tmp_path: Path
) -> None:
    flaky = hook(hooks, [500, 502])
    raw = small_config(tmp_path)
    raw["monitoring"] = {
        "retrain_webhook": flaky.url,
        "retrain_webhook_retries": 2,
        "retrain_webhook_backoff_seconds": 0.01,
        "retrain_cooldown_hours": 0,
        "state_dir": str(tmp_path / "state"),
    }
    sidecar = Sidecar(parse_config(raw, base_dir=tmp_path))
    registry = CollectorRegistry()
    sidecar.collector(registry)
    counted = registry.get_sample_value
    runs = sidecar.state.runs

    assert sidecar.notifier.update(rec("data_drift"), runs, 1.0, "v1")
    wait_for(lambda: sidecar.notifier.sent + sidecar.notifier.failed)
    assert len(flaky.bodies) == 3  # failed twice, then succeeded
    assert counted("occam_retrain_notifications_total", {"outcome": "sent"}) == 1
    assert counted("occam_retrain_notifications_total", {"outcome": "failed"}) == 0

    flaky.statuses = [500] * 3  # now every attempt fails
    assert sidecar.notifier.update(rec("data_drift", "live_metric"), runs, 2.0, "v1")
    wait_for(lambda: sidecar.notifier.failed)
    assert len(flaky.bodies) == 6
    assert counted("occam_retrain_notifications_total", {"outcome": "failed"}) == 1
    assert counted("occam_retrain_notifications_total", {"outcome": "sent"}) == 1


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/x", "hooks.example.com/x", "http://"]
)
def test_config_accepts_only_http_webhooks_naming_the_key(url: str, tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["monitoring"] = {"retrain_webhook": url}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert "`monitoring.retrain_webhook`" in str(info.value)
    assert "http:// or https://" in str(info.value)


def test_config_accepts_https_webhooks(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["monitoring"] = {"retrain_webhook": "https://hooks.example.com/occam?token=x"}
    assert parse_config(raw).monitoring.retrain_webhook == "https://hooks.example.com/occam?token=x"


def test_real_webhook_and_command(hooks: list[Hook], tmp_path: Path) -> None:
    server = hook(hooks)
    out = tmp_path / "reasons.txt"
    script = f"import os; open({str(out)!r}, 'w').write(os.environ['OCCAM_RETRAIN_REASONS'])"
    notifier = Notifier([sys.executable, "-c", script], server.url, 0)
    assert notifier.update(rec("data_drift", "live_metric"), Runs(), 1.0, "v7")
    wait_for(lambda: notifier.sent == 2)
    assert server.bodies == [
        {
            "retrain_recommended": True,
            "reasons": ["data_drift", "live_metric"],
            "model_version": "v7",
        }
    ]
    assert out.read_text() == "data_drift,live_metric"

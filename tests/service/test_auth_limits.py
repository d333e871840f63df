"""Keys, scopes, the one error contract, per-value limits, one label per prediction and the
feedback rate limit: the parts called directly, then HTTP through the ASGI app."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from occam.auth import (
    KeyFileError,
    KeyStore,
    add_key,
    bind_refusal,
    digest,
    read_keys,
    token_from_headers,
)
from occam.demo import free_port
from occam.errors import MAX_FIELD_CHARS, ErrorBody, Problem, Reason, status_of
from service.http import TokenBuckets
from service.runtime import LabelledIds

from .conftest import asgi_client, read_log, serving_config


def test_every_reason_carries_its_status_and_the_body_model_lists_them() -> None:
    assert Reason.MISSING_KEY.status == 401 and Reason.MISSING_SCOPE.status == 403
    assert Reason.DUPLICATE_LABEL.status == 409 and Reason.RATE_LIMITED.status == 429
    assert Reason.BODY_TIMEOUT.status == 408 and Reason.CLIENT_DISCONNECTED.status == 499
    assert status_of([Problem(0, "a", Reason.WRONG_TYPE, "x")]) == 400
    assert status_of([Problem(None, None, Reason.UNKNOWN_KEY, "x")]) == 401
    schema = json.dumps(ErrorBody.model_json_schema())
    assert all(f'"{reason.value}"' in schema for reason in Reason)


def test_a_problem_never_carries_a_long_input() -> None:
    problem = Problem(0, "k" * 10_000, Reason.UNKNOWN_FEATURE, "m" * 10_000)
    assert problem.field is not None and len(problem.field) == MAX_FIELD_CHARS
    body = json.dumps(ErrorBody.of([problem]).model_dump(mode="json"))
    assert len(body) < 1000


def test_keys_are_stored_hashed_and_checked_by_scope(tmp_path: Path) -> None:
    path = tmp_path / "keys.jsonl"
    key = add_key(path, "demo", ["predict", "feedback"])
    other = add_key(path, "reader", ["metrics"])
    assert key not in path.read_text() and digest(key) in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    store = KeyStore.load([path])
    assert [k.id for k in read_keys(path)] == ["demo", "reader"]
    assert store.check(key, "feedback").problem is None
    assert store.check(key, "feedback").key_id == "demo"
    reasons = {
        "none": store.check(None, "predict").problem,
        "unknown": store.check(key + "x", "predict").problem,
        "scope": store.check(other, "predict").problem,
    }
    assert {name: p.reason for name, p in reasons.items() if p} == {
        "none": Reason.MISSING_KEY,
        "unknown": Reason.UNKNOWN_KEY,
        "scope": Reason.MISSING_SCOPE,
    }
    assert all(key not in p.message for p in reasons.values() if p)
    with pytest.raises(KeyFileError, match="already"):
        add_key(path, "demo", ["predict"])
    with pytest.raises(KeyFileError, match="not allowed"):
        add_key(path, "x", ["root"])
    path.write_text(path.read_text() + '{"id": "bad"}\n')
    with pytest.raises(KeyFileError, match="line 3"):
        KeyStore.load([path])


def test_tokens_come_from_bearer_or_x_api_key() -> None:
    assert token_from_headers([(b"authorization", b"Bearer abc")]) == "abc"
    assert token_from_headers([(b"x-api-key", b"xyz")]) == "xyz"
    assert token_from_headers([(b"authorization", b"Basic abc")]) is None


def test_only_loopback_may_listen_without_keys(tmp_path: Path) -> None:
    empty = KeyStore()
    assert bind_refusal("127.0.0.1", empty, False, "occam serve") is None
    assert bind_refusal("::1", empty, False, "occam serve") is None
    refusal = bind_refusal("0.0.0.0", empty, False, "occam serve")
    assert refusal is not None and "serving.auth.allow_anonymous" in refusal
    assert bind_refusal("0.0.0.0", empty, True, "occam serve") is None
    path = tmp_path / "keys.jsonl"
    add_key(path, "demo", ["predict"])
    assert bind_refusal("10.1.2.3", KeyStore.load([path]), False, "occam serve") is None


@pytest.mark.parametrize("command", ["serve", "monitor"])
def test_a_public_host_without_keys_refuses_to_start(
    trained: Any, tmp_path: Path, command: str
) -> None:
    config = serving_config(trained, tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "occam.cli", command, "--config", str(config), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    assert "without API keys" in run.stderr and "allow_anonymous" in run.stderr


def test_keys_add_prints_the_key_alone_on_stdout(trained: Any, tmp_path: Path) -> None:
    keys = tmp_path / "keys.jsonl"
    config = serving_config(trained, tmp_path, auth={"keys_file": str(keys)})
    command = [sys.executable, "-m", "occam.cli", "keys", "add", "--config", str(config),
               "--id", "demo", "--scopes", "predict,feedback,admin"]  # fmt: skip
    run = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    key = run.stdout.strip()
    assert run.stdout == key + "\n" and key not in run.stderr
    store = KeyStore.load([keys])
    assert store.check(key, "admin").problem is None


def test_labelled_ids_refuse_a_second_label_within_bounded_memory() -> None:
    ids = LabelledIds(capacity=3)
    assert ids.seen(["a", "b", "a"]) == [2]  # twice in one request
    ids.add(["a", "b", "c"])
    assert ids.seen(["a", "d"]) == [0]
    ids.add(["d"])  # "a" is forgotten: memory stays bounded
    assert ids.seen(["a", "b"]) == [1]


def test_token_buckets_allow_a_burst_then_the_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2, burst=3, clock=lambda: now[0])
    assert [buckets.take("k") for _ in range(3)] == [0, 0, 0]
    assert buckets.take("k") == pytest.approx(0.5)
    assert buckets.take("other") == 0  # per key
    now[0] = 0.5
    assert buckets.take("k") == 0


def test_integer_features_refuse_fractions_and_long_strings_are_refused(
    make_runtime: Any, trained: Any
) -> None:
    runtime = make_runtime(limits={"max_string_chars": 20})
    example = runtime.self_test.example
    integer = next(s.name for s in trained.bundle.schema.features if s.dtype == "integer")
    category = trained.bundle.schema.categorical[0]
    assert runtime.predict([{**example, integer: float(example[integer])}]).status == 200
    reply = runtime.predict([{**example, integer: example[integer] + 0.5}])
    problem = reply.body["problems"][0]
    assert (reply.status, problem["field"], problem["reason"]) == (400, integer, "not_integer")
    reply = runtime.predict([{**example, category: "z" * 100_000}])
    problem = reply.body["problems"][0]
    assert (reply.status, problem["field"], problem["reason"]) == (
        400,
        category,
        "value_too_long",
    )
    assert len(json.dumps(reply.body)) < 2000


def test_feedback_accepts_one_label_per_prediction(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime()
    ident = runtime.predict([runtime.self_test.example]).body["predictions"][0]["id"]
    label = trained.bundle.classes[0]
    assert runtime.feedback([(ident, label)]).status == 202
    again = runtime.feedback([(ident, trained.bundle.classes[-1])])
    assert again.status == 409
    assert again.body["problems"][0]["reason"] == "duplicate_label"


def _keys(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "keys.jsonl"
    scopes = {
        "writer": ["predict", "feedback"],
        "predictor": ["predict"],
        "scraper": ["metrics"],
    }
    return path, {name: add_key(path, name, wanted) for name, wanted in scopes.items()}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_scopes_over_http_and_poisoning_without_a_key_never_reaches_the_log(
    trained: Any, tmp_path: Path
) -> None:
    path, keys = _keys(tmp_path)
    config = serving_config(trained, tmp_path, auth={"keys_file": str(path)})
    with asgi_client(config) as client:
        row = client.get("/model").json()["example_request"]["instances"][0]
        anonymous = client.post("/predict", json={"instances": [row]})
        assert anonymous.status_code == 401
        assert anonymous.json()["problems"][0]["reason"] == "missing_key"
        answer = client.post("/predict", json={"instances": [row]}, headers=_bearer(keys["writer"]))
        assert answer.status_code == 200
        ident = answer.json()["predictions"][0]["id"]
        poison = {"labels": [{"id": ident, "label": trained.bundle.classes[0]}]}
        refused = [
            client.post("/feedback", json=poison),
            client.post("/feedback", json=poison, headers=_bearer("occam_guessed")),
            client.post("/feedback", json=poison, headers=_bearer(keys["predictor"])),
            client.post("/feedback", json=poison, headers={"X-API-Key": keys["scraper"]}),
        ]
        assert [r.status_code for r in refused] == [401, 401, 403, 403]
        assert [r.json()["problems"][0]["reason"] for r in refused] == [
            "missing_key",
            "unknown_key",
            "missing_scope",
            "missing_scope",
        ]
        assert client.get("/model").status_code == 200  # read-only, no scope needed
        accepted = client.post("/feedback", json=poison, headers=_bearer(keys["writer"]))
        assert accepted.status_code == 202
    records = read_log(tmp_path / "logs")
    assert [r.kind for r in records if r.kind != "rejected"] == ["prediction", "feedback"]
    assert not [r for r in records if r.kind == "rejected"]  # refused before reading: not logged


def test_feedback_is_rate_limited_per_key(trained: Any, tmp_path: Path) -> None:
    config = serving_config(
        trained, tmp_path, limits={"feedback_per_second": 0.01, "feedback_burst": 2}
    )
    with asgi_client(config) as client:
        body = {"labels": [{"id": "0" * 32, "label": "?"}]}
        statuses = [client.post("/feedback", json=body).status_code for _ in range(3)]
        assert statuses == [400, 400, 429]
        limited = client.post("/feedback", json=body)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["problems"][0]["reason"] == "rate_limited"


def _get(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_monitor_metrics_need_the_metrics_scope(trained: Any, tmp_path: Path) -> None:
    path, keys = _keys(tmp_path)
    config = serving_config(trained, tmp_path, auth={"keys_file": str(path), "metrics_scope": True})
    port = free_port()
    command = [sys.executable, "-m", "occam.cli", "monitor", "--config", str(config),
               "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    output = tmp_path / "monitor.out"
    with open(output, "wb") as sink, subprocess.Popen(command, stderr=sink, stdout=sink) as process:
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, output.read_text()[-3000:]
                try:
                    status = _get(url)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the monitor never listened"
                    time.sleep(0.2)
            assert status == 401
            assert _get(url, _bearer(keys["writer"])) == 403
            assert _get(url, _bearer(keys["scraper"])) == 200
        finally:
            # A graceful stop is tested in tests/monitoring; here the monitor may still be
            # building its reference on a busy machine, which SIGTERM waits for.
            process.kill()
            process.wait(30)

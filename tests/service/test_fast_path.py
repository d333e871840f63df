"""The fast path (`serving.fast_path`, the default: the guard answers POST /predict and /feedback
itself) against BentoML's `@bentoml.api` endpoints (`fast_path: false`), through two real
`occam serve` processes on the same bundle: the same requests get the same status and the same
body (prediction ids aside, which are random), the same log records and the same counters.
"""

from __future__ import annotations

import copy
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from occam.loopback import http_bytes
from occam.records import PredictionRecord, RejectedRecord
from tests.service.conftest import (
    HeldOut,
    Server,
    asgi_client,
    occam_serve,
    read_log,
    serving_config,
    wait_for_log,
)


def send(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    """POST raw `body` bytes; (status, parsed JSON or text)."""
    return http_bytes(url, body, {"Content-Type": content_type})


def without_ids(body: Any) -> Any:
    """`body` with each prediction's random id replaced by its form (32 hex digits or not)."""
    body = copy.deepcopy(body)
    if isinstance(body, dict):
        for prediction in body.get("predictions", []):
            prediction["id"] = bool(re.fullmatch(r"[0-9a-f]{32}", prediction["id"]))
    return body


@pytest.fixture(scope="module")
def servers(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """Two services on the session's bundle: the fast path and BentoML's endpoints."""
    folder = tmp_path_factory.mktemp("fast-path")
    with (
        occam_serve(serving_config(trained, folder / "fast", fast_path=True)) as fast,
        occam_serve(serving_config(trained, folder / "bentoml", fast_path=False)) as slow,
    ):
        yield {"fast": fast, "bentoml": slow}


def predict_bodies(held_out: HeldOut) -> dict[str, bytes]:
    """Requests to /predict: valid, refused by Occam's validation, refused by the request spec
    (pydantic), and not JSON at all."""
    rows = held_out.instances
    first = rows[0]
    numeric = next(k for k, v in first.items() if isinstance(v, (int, float)))
    text = next(k for k, v in first.items() if isinstance(v, str))
    cases: dict[str, Any] = {
        "one row": {"instances": [first]},
        "twenty rows": {"instances": rows[:20]},
        "forty rows (columnar)": {"instances": rows[:40]},
        "unknown feature": {"instances": [{**first, "surprise": 1}]},
        "missing feature": {"instances": [{k: v for k, v in first.items() if k != numeric}]},
        "text for a number": {"instances": [{**first, numeric: "many"}]},
        "null feature": {"instances": [{**first, text: None}]},
        "number for a category": {"instances": [{**first, text: 123456}]},
        "mixed batch": {"instances": [first, {**first, numeric: "x"}, rows[1], {"a": 1}]},
        "a row that is not an object": {"instances": [first, [1, 2]]},
        "no rows": {"instances": []},
        "instances not a list": {"instances": {"a": 1}},
        "extra top-level key": {"instances": [first], "debug": True},
        "no instances": {"rows": [first]},
        "a list body": [first],
        "too many rows": {"instances": [first] * 1001},
        "very long string": {"instances": [{**first, text: "x" * 5000}]},
    }
    bodies = {name: json.dumps(body).encode() for name, body in cases.items()}
    bodies["malformed JSON"] = b'{"instances": [{"carrier": '
    bodies["empty body"] = b""
    bodies["not UTF-8"] = b'{"instances": [{"carrier": "\xff\xfe"}]}'
    bodies["NaN"] = json.dumps({"instances": [{**first, numeric: float("nan")}]}).encode()
    return bodies


def feedback_bodies(classes: list[str]) -> dict[str, bytes]:
    ids = [f"{i:032x}" for i in range(1, 4)]
    cases: dict[str, Any] = {
        "labels": {"labels": [{"id": ids[0], "label": classes[0]}]},
        "two labels": {"labels": [{"id": ids[1], "label": classes[1]}, {"id": ids[2], "label": 1}]},
        "the same id again": {"labels": [{"id": ids[0], "label": classes[0]}]},
        "unknown label": {"labels": [{"id": f"{9:032x}", "label": "maybe"}]},
        "bad id": {"labels": [{"id": "not-an-id", "label": classes[0]}]},
        "no labels": {"labels": []},
        "extra field": {"labels": [{"id": f"{8:032x}", "label": classes[0], "x": 1}]},
        "label missing": {"labels": [{"id": f"{7:032x}"}]},
        "not an object": {"labels": ["x"]},
    }
    bodies = {name: json.dumps(body).encode() for name, body in cases.items()}
    bodies["malformed JSON"] = b'{"labels": ['
    return bodies


def test_predict_answers_and_refusals_are_the_same_on_both_paths(
    servers: dict[str, Server], held_out: HeldOut
) -> None:
    for name, body in predict_bodies(held_out).items():
        fast = send(f"{servers['fast'].url}/predict", body)
        slow = send(f"{servers['bentoml'].url}/predict", body)
        assert fast[0] == slow[0], (name, fast, slow)
        assert without_ids(fast[1]) == without_ids(slow[1]), name
        if fast[0] == 200:
            assert all(p["id"] for p in without_ids(fast[1])["predictions"]), name
        else:
            assert fast[1]["problems"], name  # Occam's error body, naming each problem


def test_non_json_requests_are_refused_alike(servers: dict[str, Server], held_out: HeldOut) -> None:
    one = json.dumps({"instances": [held_out.instances[0]]}).encode()
    for name, body, media in (
        ("form", one, "application/x-www-form-urlencoded"),
        ("pickle", b"\x80\x04K\x01.", "application/vnd.bentoml+pickle"),
        ("JSON with a charset", one, "application/json; charset=utf-8"),
    ):
        fast = send(f"{servers['fast'].url}/predict", body, media)
        slow = send(f"{servers['bentoml'].url}/predict", body, media)
        assert fast[0] == slow[0], (name, fast, slow)
        assert without_ids(fast[1]) == without_ids(slow[1]), name


def test_feedback_answers_and_refusals_are_the_same_on_both_paths(
    servers: dict[str, Server], trained: Any
) -> None:
    classes = list(trained.bundle.classes)
    for name, body in feedback_bodies(classes).items():
        fast = send(f"{servers['fast'].url}/feedback", body)
        slow = send(f"{servers['bentoml'].url}/feedback", body)
        assert fast == slow, (name, fast, slow)
    assert send(f"{servers['fast'].url}/feedback", feedback_bodies(classes)["labels"])[0] == 409


def _log_folder(server: Server) -> Path:
    return server.output.parent / "logs"


def _metric(server: Server, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_both_paths_log_and_count_the_same(servers: dict[str, Server], held_out: HeldOut) -> None:
    rows = held_out.instances[100:105]
    bad = {**rows[0], "surprise": 1}
    before = {
        path: (
            _metric(server, "bentoml_service_request_total", endpoint="/predict"),
            _metric(server, "occam_service_rejected_rows_total", reason="unknown_feature"),
            _metric(server, "occam_service_predictions_total"),
        )
        for path, server in servers.items()
    }
    records = {}
    for path, server in servers.items():
        status, answer = send(f"{server.url}/predict", json.dumps({"instances": rows}).encode())
        assert status == 200
        assert send(f"{server.url}/predict", json.dumps({"instances": [bad]}).encode())[0] == 400
        ids = {p["id"] for p in answer["predictions"]}
        logged = wait_for_log(_log_folder(server), ids)
        mine = [r for r in logged if isinstance(r, PredictionRecord) and r.id in ids]
        records[path] = sorted(
            json.dumps(
                [r.features, r.label, r.predicted, r.probabilities, r.abstained, r.marks],
                sort_keys=True,
            )
            for r in mine
        )
        assert len(mine) == len(rows)
        rejected = [r for r in read_log(_log_folder(server)) if isinstance(r, RejectedRecord)]
        assert any(r.reason == "unknown_feature" for r in rejected)
    assert records["fast"] == records["bentoml"]
    for path, server in servers.items():
        requests, refused, answered = before[path]
        # the request metrics middleware counts the fast path's answers as BentoML's own
        assert _metric(server, "bentoml_service_request_total", endpoint="/predict") == (
            requests + 2
        )
        assert (
            _metric(server, "occam_service_rejected_rows_total", reason="unknown_feature")
            == refused + 1
        )
        assert _metric(server, "occam_service_predictions_total") == answered + len(rows)
        assert (
            _metric(
                server,
                "bentoml_service_request_duration_seconds_count",
                endpoint="/predict",
                http_response_code="200",
            )
            > 0
        )


def test_opentelemetry_middleware_only_when_tracing_samples(trained: Any, tmp_path: Path) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer

    from service.wire import tracing_enabled

    with asgi_client(serving_config(trained, tmp_path)) as client:
        layers = []
        node = client.app.middleware_stack
        while node is not None and node is not client.app.router:
            layers.append(type(node).__name__)
            node = getattr(node, "app", None)
    assert "RequestGuard" in layers and "TimeoutMiddleware" in layers
    assert "OpenTelemetryMiddleware" not in layers  # BentoML's default sample rate is 0
    rate = BentoMLContainer.config.tracing.sample_rate
    before = rate.get()
    try:
        rate.set(0.5)
        assert tracing_enabled()
        rate.set(0.0)
        assert not tracing_enabled()
    finally:
        rate.set(before)

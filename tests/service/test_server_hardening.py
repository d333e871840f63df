"""A real `occam serve` with API keys and small limits, attacked over real sockets: random
paths (the /metrics series stay put), slow and large headers, slow bodies, clients that leave
mid-body (499, not 500), big values, and feedback poisoning without a key."""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from occam.auth import add_key

from .conftest import Server, occam_serve, read_log, serving_config

pytestmark = pytest.mark.integration
#: Bounds generous enough for a loaded machine; the server's own limits are 1 s.
SOCKET_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def guarded(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """(server, {key name: key}, log folder) of a server with keys and 1 s read timeouts."""
    folder = tmp_path_factory.mktemp("guarded")
    keys_file = folder / "keys.jsonl"
    keys = {
        "writer": add_key(keys_file, "writer", ["predict", "feedback"]),
        "predictor": add_key(keys_file, "predictor", ["predict"]),
        "scraper": add_key(keys_file, "scraper", ["metrics"]),
    }
    config = serving_config(
        trained,
        folder,
        auth={"keys_file": str(keys_file), "metrics_scope": True},
        limits={"header_timeout_seconds": 1, "body_timeout_seconds": 1, "max_header_bytes": 4096},
        max_body_bytes=3_000_000,
    )
    with occam_serve(config) as server:
        yield server, keys, folder / "logs"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _request(
    server: Server, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=SOCKET_TIMEOUT)
    data = None if body is None else json.dumps(body).encode()
    connection.request(
        method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}


def _metrics(server: Server, keys: dict[str, str]) -> str:
    status, text, _ = _request(server, "GET", "/metrics", headers=_bearer(keys["scraper"]))
    assert status == 200
    return str(text)


def _series(text: str) -> list[str]:
    return [line.split(" ")[0] for line in text.splitlines() if line and line[0] != "#"]


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample of `name` whose labels include `labels`, None if absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _log_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0


def _raw(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket timeout)."""
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _row(server: Server) -> dict[str, Any]:
    _, doc, _ = _request(server, "GET", "/model")
    return dict(doc["example_request"]["instances"][0])


def test_metrics_need_their_scope(guarded: Any) -> None:
    server, keys, _ = guarded
    assert _request(server, "GET", "/metrics")[0] == 401
    assert _request(server, "GET", "/metrics", headers=_bearer(keys["writer"]))[0] == 403


def test_ten_thousand_random_paths_leave_the_series_count_unchanged(guarded: Any) -> None:
    server, keys, _ = guarded
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=SOCKET_TIMEOUT)

    def get(path: str) -> int:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status

    assert get("/warm-up-path") == 404  # the shared `other` series exist from here on
    before = _series(_metrics(server, keys))
    rng = random.Random(0)
    for _ in range(10_000):
        path = "/" + "".join(rng.choices(string.ascii_letters + string.digits, k=12))
        assert get(path) == 404
    connection.close()
    text = _metrics(server, keys)
    after = _series(text)
    assert len(after) == len(before)
    assert set(after) == set(before)
    unknown = _sample(
        text, "bentoml_service_request_total", endpoint="other", http_response_code="404"
    )
    assert unknown is not None and unknown >= 10_001


def test_slow_headers_are_cut(guarded: Any) -> None:
    server, _, _ = guarded
    with _raw(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and nothing more
        answer = _read_all(sock)  # returns when the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408")


def test_large_headers_are_refused(guarded: Any) -> None:
    server, _, _ = guarded
    with _raw(server) as sock:
        sock.sendall(b"GET /model HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431")
    assert _request(server, "GET", "/model")[0] == 200


def test_a_slow_body_gets_408_and_nothing_is_logged(guarded: Any) -> None:
    server, keys, logs = guarded
    before = read_log(logs) if logs.is_dir() else []
    with _raw(server) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + keys["writer"].encode() + b"\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"instances": ['
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"body_timeout" in answer
    after = read_log(logs) if logs.is_dir() else []
    assert len(after) == len(before)


def test_a_client_leaving_mid_body_is_a_499_not_a_500(guarded: Any) -> None:
    server, keys, _ = guarded
    for _ in range(3):
        with _raw(server) as sock:
            sock.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + keys["writer"].encode() + b"\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"instances": ['
            )
    text = ""
    left = {"endpoint": "/predict", "http_response_code": "499"}
    for _ in range(100):  # the server notices the disconnects asynchronously
        text = _metrics(server, keys)
        if _sample(text, "bentoml_service_request_total", **left) == 3:
            break
        _request(server, "GET", "/model")
    assert _sample(text, "bentoml_service_request_total", **left) == 3, text
    server_errors = {"endpoint": "/predict", "http_response_code": "500"}
    assert not _sample(text, "bentoml_service_request_total", **server_errors)  # absent or 0
    assert _sample(text, "occam_service_rejected_rows_total", reason="client_disconnected") == 3
    output = server.output.read_text()
    assert "Traceback" not in output and "client disconnected" in output


def test_big_values_are_refused_fast_and_stay_out_of_the_log(guarded: Any) -> None:
    server, keys, logs = guarded
    row = _row(server)
    category = next(k for k, v in row.items() if isinstance(v, str))
    big = "x" * 1_900_000
    before = _log_bytes(logs)
    status, body, _ = _request(
        server,
        "POST",
        "/predict",
        {"instances": [{**row, category: big}]},
        headers=_bearer(keys["writer"]),
    )
    assert status == 400
    problem = body["problems"][0]
    assert (problem["field"], problem["reason"]) == (category, "value_too_long")
    assert len(json.dumps(body)) < 2000
    status, body, _ = _request(
        server,
        "POST",
        "/feedback",
        {"labels": [{"id": "0" * 32, "label": big}]},
        headers=_bearer(keys["writer"]),
    )
    assert status == 400 and len(json.dumps(body)) < 2000
    # The writer flushes every 50 ms; two `rejected` records at most, none holding the value.
    _request(server, "GET", "/model")
    assert _log_bytes(logs) - before < 1000


def test_poisoning_without_a_key_is_refused_and_not_logged(guarded: Any, trained: Any) -> None:
    server, keys, logs = guarded
    status, answer, _ = _request(
        server, "POST", "/predict", {"instances": [_row(server)]}, headers=_bearer(keys["writer"])
    )
    assert status == 200
    ident = answer["predictions"][0]["id"]
    poison = {"labels": [{"id": ident, "label": trained.bundle.classes[0]}]}
    attempts = [
        _request(server, "POST", "/feedback", poison),
        _request(server, "POST", "/feedback", poison, headers=_bearer("occam_guess")),
        _request(server, "POST", "/feedback", poison, headers=_bearer(keys["predictor"])),
    ]
    assert [(status, body["problems"][0]["reason"]) for status, body, _ in attempts] == [
        (401, "missing_key"),
        (401, "unknown_key"),
        (403, "missing_scope"),
    ]
    first = _request(server, "POST", "/feedback", poison, headers=_bearer(keys["writer"]))
    assert first[0] == 202
    second = _request(server, "POST", "/feedback", poison, headers=_bearer(keys["writer"]))
    assert (second[0], second[1]["problems"][0]["reason"]) == (409, "duplicate_label")
    server.stop()  # the last test of the module: flush the log
    feedback = [r for r in read_log(logs) if r.kind == "feedback" and r.id == ident]  # type: ignore[union-attr]
    assert len(feedback) == 1

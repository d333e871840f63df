"""Promotion without downtime, on real `occam serve` processes: a newly promoted bundle is
swapped in under concurrent load (no failed request, every answer names its version),
`occam rollback` swaps back, a bundle that fails verification is refused and the old one keeps
serving, the admin call needs the `admin` scope, and shadow answers never reach callers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from occam.auth import add_key
from occam.bundle import REFERENCE_FILE, Bundle, save_bundle
from occam.records import PredictionRecord, dumps, loads
from service.predictor import reference_instances
from tests.service.conftest import http, occam_serve, read_log, serving_config


def _bundles(trained: Any, name: str, count: int, promoted_first: bool = True) -> list[Bundle]:
    """`count` intact bundles of model `name` (the trained pipeline), the first production."""
    source = trained.bundle
    pipeline, reference = source.load_pipeline(), source.load_reference()
    extra = {f.name: f.read_bytes() for f in [source.path / "model.onnx"] if f.is_file()}
    return [
        save_bundle(
            name,
            pipeline=pipeline,
            metadata=source.metadata,
            reference=reference,
            promoted=promoted_first and i == 0,
            extra_files=extra,
            holdout=source.load_holdout(),
        )
        for i in range(count)
    ]


@pytest.fixture
def audit_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A private audit log for this test, for this process and the ones it starts."""
    env = {"OCCAM_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    monkeypatch.setenv("OCCAM_AUDIT_LOG", env["OCCAM_AUDIT_LOG"])
    return env


def _occam(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "occam.cli", *args, "--config", str(config)]
    return subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )


class Load:
    """Single-row /predict calls from `threads` threads until stopped; keeps (thread, status,
    version) for every answer, in order."""

    def __init__(self, url: str, row: dict[str, Any], threads: int = 8) -> None:
        self.url, self.row = url, row
        self.answers: list[tuple[int, int, str | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                status, body = http("POST", f"{self.url}/predict", {"instances": [self.row]})
            except OSError:
                status, body = 0, None
            version = body.get("model_version") if isinstance(body, dict) else None
            with self._lock:
                self.answers.append((index, status, version))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for(self, version: str, timeout: float = 60) -> None:
        """Until an answer after this call comes from `version` (a wait, not an assertion on
        time: the test fails only if it never happens)."""
        start = len(self.answers)
        deadline = time.monotonic() + timeout
        while not any(v == version for _, _, v in self.answers[start:]):
            assert time.monotonic() < deadline, f"no answer by {version} within {timeout} s"
            time.sleep(0.05)

    def versions_by_thread(self) -> dict[int, list[str | None]]:
        runs: dict[int, list[str | None]] = {}
        for index, _, version in self.answers:
            seen = runs.setdefault(index, [])
            if not seen or seen[-1] != version:
                seen.append(version)
        return runs


def _metric(url: str, name: str, **labels: str) -> float:
    status, text = http("GET", f"{url}/metrics")
    assert status == 200
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in str(text).splitlines():
        if line.startswith(f"{name}{{") and wanted in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_promote_and_rollback_swap_under_load_without_a_failed_request(
    trained: Any, tmp_path: Path, audit_env: dict[str, str]
) -> None:
    name = "occam-test-swap"
    first, second = _bundles(trained, name, 2)
    config = serving_config(trained, tmp_path, model_name=name, reload_interval_seconds=0.2)
    row = reference_instances(trained.bundle.load_reference().head(1), trained.bundle.schema)[0]
    # One worker: its swap is atomic, so each client sees the versions in order (with several
    # workers each swaps on its own poll; bench/bench_promotion.py runs two).
    with occam_serve(config, OCCAM_AUDIT_LOG=audit_env["OCCAM_AUDIT_LOG"]) as server:
        with Load(server.url, row) as load:
            load.wait_for(first.version)
            promoted = _occam(config, audit_env, "promote", second.tag, "--reason", "test")
            assert promoted.returncode == 0, promoted.stdout + promoted.stderr
            load.wait_for(second.version)
            rolled = _occam(config, audit_env, "rollback", "--reason", "test")
            assert rolled.returncode == 0, rolled.stdout + rolled.stderr
            load.wait_for(first.version)
        statuses = {status for _, status, _ in load.answers}
        assert statuses == {200}, f"failed answers: {statuses}"
        # Each client saw the first version, then the second, then the first again: never a
        # mix, never an answer without its version (a thread may start after the promotion).
        for runs in load.versions_by_thread().values():
            assert None not in runs
            assert runs in (
                [first.version, second.version, first.version],
                [second.version, first.version],
                [first.version],
            ), runs
        status, doc = http("GET", f"{server.url}/model")
        assert status == 200 and doc["version"] == first.version
        actions = [(r["action"], r["to_tag"]) for r in doc["history"]]
        assert actions[-2:] == [("promote", second.tag), ("rollback", first.tag)]
        assert _metric(server.url, "occam_service_model_reloads_total", outcome="swapped") >= 2
    logged = [r for r in read_log(tmp_path / "logs") if isinstance(r, PredictionRecord)]
    assert {r.model_version for r in logged} == {first.version, second.version}


def test_a_bundle_that_fails_verification_is_refused_and_the_old_one_keeps_serving(
    trained: Any, tmp_path: Path, audit_env: dict[str, str]
) -> None:
    name = "occam-test-swap-refused"
    (served,) = _bundles(trained, name, 1)
    config = serving_config(trained, tmp_path, model_name=name, reload_interval_seconds=0)
    with occam_serve(config, OCCAM_AUDIT_LOG=audit_env["OCCAM_AUDIT_LOG"]) as server:
        # Labelled production at save, then changed on disk: its manifest no longer matches.
        (tampered,) = _bundles(trained, name, 1)
        with open(tampered.path / REFERENCE_FILE, "ab") as file:
            file.write(b"\n")
        status, result = http("POST", f"{server.url}/admin/reload", {})
        assert status == 200
        assert result["outcome"] == "refused"
        assert result["model_version"] == served.version
        assert tampered.tag in result["detail"] and REFERENCE_FILE in result["detail"]
        status, body = http("POST", f"{server.url}/predict", {"instances": [_example(server)]})
        assert status == 200 and body["model_version"] == served.version
        assert _metric(server.url, "occam_service_model_reloads_total", outcome="refused") == 1
        # Asked again: still refused, not counted twice, still serving the old one.
        status, again = http("POST", f"{server.url}/admin/reload", {})
        assert (status, again["model_version"]) == (200, served.version)
    assert "refused" in server.output.read_text()


def _example(server: Any) -> dict[str, Any]:
    status, doc = http("GET", f"{server.url}/model")
    assert status == 200
    return dict(doc["example_request"]["instances"][0])


def test_admin_calls_need_the_admin_scope(
    trained: Any, tmp_path: Path, audit_env: dict[str, str]
) -> None:
    name = "occam-test-swap-admin"
    _bundles(trained, name, 1)
    keys = tmp_path / "keys.jsonl"
    predictor = add_key(keys, "predictor", ["predict"])
    admin = add_key(keys, "admin", ["admin"])
    config = serving_config(
        trained, tmp_path, model_name=name, auth={"keys_file": str(keys)}, reload_interval_seconds=0
    )
    with occam_serve(config, OCCAM_AUDIT_LOG=audit_env["OCCAM_AUDIT_LOG"]) as server:
        url = f"{server.url}/admin/reload"
        assert http_with(url, None)[0] == 401
        assert http_with(url, predictor)[0] == 403
        status, body = http_with(url, admin)
        assert status == 200 and body["outcome"] == "unchanged"


def http_with(url: str, key: str | None) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_shadow_answers_never_reach_callers(
    trained: Any, tmp_path: Path, audit_env: dict[str, str]
) -> None:
    name = "occam-test-shadow"
    served, challenger = _bundles(trained, name, 2)
    config = serving_config(
        trained,
        tmp_path,
        model_name=name,
        shadow_tag=challenger.tag,
        shadow_rows=5,
        log_durability="write",
    )
    with occam_serve(config, OCCAM_AUDIT_LOG=audit_env["OCCAM_AUDIT_LOG"]) as server:
        status, doc = http("GET", f"{server.url}/model")
        assert doc["shadow"]["version"] == challenger.version
        row = dict(doc["example_request"]["instances"][0])
        answered = []
        for _ in range(4):
            status, body = http("POST", f"{server.url}/predict", {"instances": [row, row]})
            assert status == 200 and body["model_version"] == served.version
            assert challenger.version not in json.dumps(body)
            answered += [p["id"] for p in body["predictions"]]
    records = [r for r in read_log(tmp_path / "logs") if isinstance(r, PredictionRecord)]
    shadow = [r for r in records if r.shadow]
    assert [r.model_version for r in shadow] == [challenger.version] * 5
    assert {r.id for r in shadow} <= set(answered)
    assert {r.model_version for r in records if not r.shadow} == {served.version}
    assert len([r for r in records if not r.shadow]) == len(answered)


def test_served_rows_are_written_without_the_shadow_field() -> None:
    """Readers older than the shadow flag read served rows unchanged."""
    row = PredictionRecord("a", 1.0, "v1", {}, "x", "x", {"x": 1.0}, False, {})
    assert b"shadow" not in dumps(row)
    assert loads(dumps(row)) == row
    shadow = PredictionRecord("a", 1.0, "v2", {}, "x", "x", {"x": 1.0}, False, {}, shadow=True)
    assert json.loads(dumps(shadow))["shadow"] is True
    assert loads(dumps(shadow)) == shadow

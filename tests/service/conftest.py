"""Fixtures for the service tests: configs around the session's trained bundle, runtimes with
their own Prometheus registry, the held-out rows, bundles that must not be served, and real
`occam serve` processes on free loopback ports."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter

from occam.bundle import ONNX_FILE, REFERENCE_FILE, Bundle, save_bundle
from occam.config import load_config
from occam.loopback import free_port, http_json
from occam.metadata import InferenceRecord
from occam.records import Record, segment_key, segment_records
from service.metrics import ServiceMetrics
from service.runtime import Runtime


def serving_config(trained: Any, folder: Path, **serving: Any) -> Path:
    """The trained config with its log folder in `folder` and `serving` keys overridden;
    `model_name` sets `output.model_name`."""
    raw = yaml.safe_load(Path(trained.config_path).read_text())
    if "model_name" in serving:
        raw["output"]["model_name"] = serving.pop("model_name")
    raw["serving"] = {**raw.get("serving", {}), "log_dir": str(folder / "logs"), **serving}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "occam.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@dataclass
class Counters:
    """Service counters on a private registry, read back by exposed name."""

    metrics: ServiceMetrics
    registry: CollectorRegistry

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def counters() -> Counters:
    registry = CollectorRegistry()
    return Counters(ServiceMetrics.create(functools.partial(Counter, registry=registry)), registry)


@pytest.fixture
def make_runtime(trained: Any, tmp_path: Path, counters: Counters) -> Iterator[Any]:
    """Build a loaded runtime: `make_runtime(model_tag=None, **serving_overrides)`."""
    started: list[Runtime] = []

    def make(model_tag: str | None = None, load: bool = True, **serving: Any) -> Runtime:
        config = serving_config(trained, tmp_path / f"rt{len(started)}", **serving)
        runtime = Runtime.start(config, model_tag, metrics=counters.metrics)
        started.append(runtime)
        if load:
            runtime.load()
        return runtime

    yield make
    for runtime in started:
        runtime.close()


def read_log(folder: Path) -> list[Record]:
    """Every record in the segment files of `folder`, file by file in name order."""
    records: list[Record] = []
    for path in sorted(folder.iterdir()):
        if segment_key(path.name) is not None:
            records.extend(segment_records(path.read_bytes()))
    return records


def wait_for_log(folder: Path, ids: set[str], timeout: float = 10) -> list[Record]:
    """The records of `folder` once every prediction id in `ids` has been written (the writer
    flushes every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_log(folder) if folder.is_dir() else []
        found = {r.id for r in records if r.kind == "prediction"}  # type: ignore[union-attr]
        if ids <= found or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


@dataclass(frozen=True)
class HeldOut:
    """The held-out test rows as the service receives them and as sklearn saw them."""

    instances: list[dict[str, Any]]
    x: pd.DataFrame
    y: np.ndarray


@pytest.fixture(scope="session")
def held_out(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> HeldOut:
    """Rebuilt from the config's split exactly as training did (tests may import training)."""
    from service.predictor import reference_instances
    from training.data import load_frame, split_frame
    from training.labels import resolve_labels

    config = load_config(trained.config_path)
    raw = load_frame(config.data.path)
    known, _ = resolve_labels(raw, config, tmp_path_factory.mktemp("labels"))
    test = split_frame(known, config).test
    schema = trained.bundle.schema
    return HeldOut(
        instances=reference_instances(test, schema),
        x=schema.coerce(test),
        y=test[config.data.target].astype(str).to_numpy(),
    )


@dataclass(frozen=True)
class BadBundles:
    """Bundles the service must refuse or cannot trust, each under its own model name."""

    candidate: Bundle  # not promoted
    tampered: Bundle  # promoted, reference file changed after training
    disagreeing: Bundle  # promoted, intact, but its reference outputs are not the model's
    sklearn_only: Bundle  # promoted, intact, without model.onnx


@pytest.fixture(scope="session")
def bad_bundles(trained: Any) -> BadBundles:
    source = trained.bundle
    pipeline = source.load_pipeline()
    reference = source.load_reference()
    onnx = {ONNX_FILE: (source.path / ONNX_FILE).read_bytes()}

    def save(name: str, promoted: bool = True, **kwargs: Any) -> Bundle:
        return save_bundle(
            name,
            pipeline=pipeline,
            metadata=kwargs.pop("metadata", source.metadata),
            reference=kwargs.pop("reference", reference),
            promoted=promoted,
            extra_files=kwargs.pop("extra_files", onnx),
        )

    tampered = save("occam-test-tampered")
    with open(tampered.path / REFERENCE_FILE, "ab") as file:
        file.write(b"\n")
    shifted = reference.copy()
    first = f"model_proba_{source.classes[0]}"
    shifted[first] = shifted[first] * 0.9
    no_onnx = source.metadata.model_copy(
        update={"inference": InferenceRecord(format="sklearn", reason="test: no ONNX")}
    )
    return BadBundles(
        candidate=save("occam-test-candidate", promoted=False),
        tampered=tampered,
        disagreeing=save("occam-test-disagreeing", reference=shifted),
        sklearn_only=save("occam-test-sklearn", metadata=no_onnx, extra_files={}),
    )


def http(method: str, url: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """(status, parsed JSON or text) for one request; 4xx/5xx are answers, not errors."""
    return http_json(url, body, timeout=timeout, method=method)


@dataclass
class Server:
    """A running `occam serve`; `url` is its base address."""

    url: str
    process: subprocess.Popen[bytes]
    output: Path

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (BentoML shuts down gracefully and the log is flushed); the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return int(self.process.returncode)


def wait_serving(server: Server, timeout: float = 120) -> None:
    """Until /readyz and /model (with `ready`) answer 200 ten times in a row (every worker
    must have loaded the model, and requests go to any of them)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 10:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {server.output.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"server not ready: {server.output.read_text()[-3000:]}")
        try:
            ready, _ = http("GET", f"{server.url}/readyz", timeout=2)
            status, doc = http("GET", f"{server.url}/model", timeout=2)
        except OSError:
            ready, status, doc = 0, 0, None
        ok = ready == 200 and status == 200 and isinstance(doc, dict) and doc.get("ready")
        streak = streak + 1 if ok else 0
        time.sleep(0.2)


@contextmanager
def occam_serve(config: Path, workers: int = 1, **env: str) -> Iterator[Server]:
    """Start `occam serve --config config` on a free port, wait until it serves, stop it."""
    port = free_port()
    output = config.parent / f"serve-{port}.out"
    command = [sys.executable, "-m", "occam.cli", "serve", "--config", str(config),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]  # fmt: skip
    process_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **env}
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=process_env)
    server = Server(f"http://127.0.0.1:{port}", process, output)
    try:
        wait_serving(server)
        yield server
    finally:
        server.stop()


@contextmanager
def asgi_client(config: Path, model_tag: str | None = None, ready: bool = True) -> Iterator[Any]:
    """A Starlette TestClient on `Occam.to_asgi()` (lifespan included) serving `config`.

    Only one may be open at a time: BentoML keeps the service instance in a process global.
    """
    with warnings.catch_warnings():  # starlette 1.x suggests httpx2 over httpx; both work here
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from service.app import CONFIG_ENV, MODEL_TAG_ENV, Occam

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CONFIG_ENV, str(config))
        # BentoML registers its own request metrics in the process-wide Prometheus registry
        # once per app, and a second app in the same process would clash: keep them off here
        # (Occam's counters stay on; /metrics itself is tested on real servers).
        patch.setenv("BENTOML_CONFIG_OPTIONS", "services.occam.metrics.enabled=false")
        if model_tag:
            patch.setenv(MODEL_TAG_ENV, model_tag)
        else:
            patch.delenv(MODEL_TAG_ENV, raising=False)
        with TestClient(Occam.to_asgi()) as client:  # type: ignore[attr-defined]
            deadline = time.monotonic() + 60
            while ready and client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the service never became ready"
                time.sleep(0.05)
            yield client

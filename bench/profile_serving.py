"""Where a single-row POST /predict spends its time inside a BentoML worker of Occam.

In process, no sockets: the service's ASGI app (`Occam.to_asgi()`, lifespan started, the model
loaded, BentoML's multiprocess metrics on as under `bentoml serve`) is called directly with one
request after another, and the time per request is measured for the whole stack and for the
stack with one layer taken out at a time (BentoML's request metrics, OpenTelemetry, the
timeout, the guard, ...), and for the pieces the endpoint runs (pydantic's parse of the request
spec, `Runtime.predict`, JSON encoding). What uvicorn itself costs (HTTP parsing, the socket)
is outside; bench/bench_serving.py measures that through real servers.

Run: `BENTOML_HOME=<home> .venv/bin/python bench/profile_serving.py --model-tag <tag>`
(a minute); prints a table and writes bench/results/serving_profile.json. `--cprofile` also
prints the top functions of the whole stack by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

#: The layers that can be taken out (BentoML's endpoint needs its ContextMiddleware and the
#: ExceptionMiddleware): the name measured and the layers it stands for.
OPTIONAL = {
    "request_metrics": ("RouteMetricsMiddleware", "_RestorePath"),
    "opentelemetry": ("OpenTelemetryMiddleware",),
    "timeout": ("TimeoutMiddleware",),
    "guard": ("RequestGuard",),
}
Call = Callable[[], Coroutine[Any, Any, int]]


def _config(tag: str, work: Path, fast_path: bool) -> Path:
    import yaml

    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["model_name"] = tag.split(":")[0]
    raw["serving"] = {"log_dir": str(work / "logs")}
    if not fast_path:  # only then: the key is unknown to an Occam from before the fast path
        raw["serving"]["fast_path"] = False
    path = work / "occam.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _request(app: Any, path: str, body: bytes) -> Call:
    """A coroutine function that sends one POST `path` with `body` to `app`; its status."""
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def call() -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 3000),
            "state": {},
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    return call


async def _time(call: Call, count: int, rounds: int) -> float:
    """The least over `rounds` of the mean CPU time of this thread per call (microseconds):
    the event loop's own work, which other processes on a shared machine inflate least."""
    for _ in range(200):
        status = await call()
    assert status == 200, status
    means = []
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(count):
            await call()
        means.append((time.thread_time() - start) / count * 1e6)
    return round(min(means), 1)


async def _collections(call: Call, count: int, freeze: bool) -> dict[str, Any]:
    """Garbage collections during `count` requests, by generation, with their longest pause
    (ms), after `gc.freeze()` of everything alive or with nothing frozen."""
    gc.unfreeze()
    gc.collect()
    if freeze:
        gc.freeze()
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started: list[float] = []

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        else:
            pauses[info["generation"]].append((time.perf_counter() - started.pop()) * 1e3)

    gc.callbacks.append(watch)
    try:
        for _ in range(count):
            await call()
    finally:
        gc.callbacks.remove(watch)
    return {
        "requests": count,
        "tracked_objects": len(gc.get_objects()),
        "frozen_objects": gc.get_freeze_count(),
        **{
            f"gen{gen}": {"collections": len(p), "max_ms": round(max(p, default=0.0), 2)}
            for gen, p in pauses.items()
        },
    }


def _timed_sync(function: Callable[[], Any], count: int, rounds: int) -> float:
    for _ in range(200):
        function()
    means = []
    for _ in range(rounds):
        start = time.thread_time()
        for _ in range(count):
            function()
        means.append((time.thread_time() - start) / count * 1e6)
    return round(min(means), 1)


async def profile(tag: str, count: int, rounds: int, cprofile: bool) -> dict[str, Any]:
    from bentoml._internal.context import server_context

    from service.app import Occam
    from service.runtime import current_runtime

    server_context.service_name = "occam"
    server_context.service_routes = ["/predict", "/feedback"]
    server_context.bento_name = "occam"
    server_context.bento_version = "not available"
    server_context.service_type = "entry_service"
    app = Occam.to_asgi()  # type: ignore[attr-defined]
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    deadline = time.monotonic() + 60
    while (runtime := current_runtime()) is None or not runtime.ready:
        assert time.monotonic() < deadline, "the model never loaded"
        await asyncio.sleep(0.05)
    from service.predictor import reference_instances

    rows = reference_instances(runtime.bundle.load_reference().head(200), runtime.bundle.schema)
    body = json.dumps({"instances": [rows[0]]}).encode()
    call = _request(app, "/predict", body)
    await call()  # builds the middleware stack once (its layers register their metrics)
    chain: list[Any] = []
    node: Any = app.middleware_stack
    while hasattr(node, "app") and node is not app.router:
        chain.append(node)
        node = node.app
    chain.append(node)
    layers = [type(layer).__name__ for layer in chain]
    figures: dict[str, Any] = {"layers_outer_to_inner": layers}

    def splice(keep: Callable[[str], bool]) -> None:
        """Link the layers whose name `keep` accepts (the outermost one always stays)."""
        kept = [chain[0]] + [layer for layer in chain[1:-1] if keep(type(layer).__name__)]
        for outer, inner in zip(kept, [*kept[1:], chain[-1]], strict=True):
            outer.app = inner

    originals = [layer.app for layer in chain[:-1]]
    figures["whole_stack_us"] = await _time(call, count, rounds)
    without: dict[str, float] = {}
    for layer, names in OPTIONAL.items():
        splice(lambda name, names=names: name not in names)  # type: ignore[misc]
        without[layer] = await _time(call, count, rounds)
    figures["without_layer_us"] = without
    splice(lambda name: name not in {n for names in OPTIONAL.values() for n in names})
    figures["without_all_of_them_us"] = await _time(call, count, rounds)
    for layer, inner in zip(chain[:-1], originals, strict=True):
        layer.app = inner

    from service.messages import PredictRequest

    instances = [rows[0]]
    figures["parts_us"] = {
        "pydantic_request_spec_parse": _timed_sync(
            lambda: PredictRequest.model_validate_json(body), count, rounds
        ),
        "json_loads": _timed_sync(lambda: json.loads(body), count, rounds),
        "runtime_validate": _timed_sync(
            lambda: runtime.validator.validate(instances), count, rounds
        ),
        "runtime_predict_with_log": _timed_sync(lambda: runtime.predict(instances), count, rounds),
    }
    reply = runtime.predict(instances)
    from starlette.responses import JSONResponse

    figures["parts_us"]["starlette_json_response"] = _timed_sync(
        lambda: JSONResponse(reply.body).body, count, rounds
    )
    try:
        import orjson

        figures["parts_us"]["orjson_dumps"] = _timed_sync(
            lambda: orjson.dumps(reply.body), count, rounds
        )
    except ImportError:
        pass
    from pydantic_core import to_json

    figures["parts_us"]["pydantic_core_to_json"] = _timed_sync(
        lambda: to_json(reply.body), count, rounds
    )
    figures["gc"] = {"frozen": await _collections(call, count * 5, freeze=True)}
    figures["gc"]["not_frozen"] = await _collections(call, count * 5, freeze=False)
    if cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(count):
            await call()
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(40)
    await lifespan.__aexit__(None, None, None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-tag", required=True)
    parser.add_argument("--count", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--bentoml-path", action="store_true", help="serving.fast_path false: BentoML's endpoint"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serving_profile.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="occam-profile-"))
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(work / "prometheus"))
    (work / "prometheus").mkdir(exist_ok=True)
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    os.environ["OCCAM_CONFIG"] = str(_config(args.model_tag, work, not args.bentoml_path))
    os.environ["OCCAM_MODEL_TAG"] = args.model_tag
    os.chdir(ROOT)
    import uvloop

    gc.collect()
    load = os.getloadavg()[0]
    figures = uvloop.run(profile(args.model_tag, args.count, args.rounds, args.cprofile))
    figures["load_average_1min"] = round(load, 2)
    figures["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, indent=2))
    args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Closed-loop HTTP load on loopback: a small aiohttp client in this process, or `wrk`.

`concurrency` clients each send one request, wait for the answer, and send the next, for
`duration` seconds after `warmup` seconds (or until `max_requests`). Latency is measured per
request from send to full body; throughput is completed requests per second.

The aiohttp client costs a few hundred microseconds of Python per request on the cores the
server under test also uses, which flattens every ratio towards 1; `wrk` (C, one thread; Debian
package `wrk`, the tool issue 11's figures were taken with) costs a few microseconds, so it is
the benchmarks' default client when installed (`run_wrk`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """Completed requests, errors (non-2xx or transport), requests/s, latency percentiles (ms);
    `latencies_ms` keeps every completed request's latency, so runs can be pooled."""

    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    latencies_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, latencies_ms: list[float], errors: int, seconds: float) -> LoadResult:
        values = np.asarray(latencies_ms) if latencies_ms else np.asarray([np.nan])
        return cls(
            requests=len(latencies_ms),
            errors=errors,
            seconds=seconds,
            rps=len(latencies_ms) / seconds if seconds > 0 else 0.0,
            p50_ms=float(np.percentile(values, 50)),
            p99_ms=float(np.percentile(values, 99)),
            latencies_ms=tuple(latencies_ms),
        )

    @classmethod
    def pool(cls, runs: list[LoadResult]) -> LoadResult:
        """One result for several runs of the same cell (interleaved with other cells). Runs
        without per-request latencies (`run_wrk`: wrk reports percentiles) pool their
        percentiles as the request-weighted mean of each run's."""
        errors, seconds = sum(r.errors for r in runs), sum(r.seconds for r in runs)
        if any(r.requests and not r.latencies_ms for r in runs):
            requests = sum(r.requests for r in runs)
            weights = [r.requests / requests if requests else 0.0 for r in runs]
            return cls(
                requests=requests,
                errors=errors,
                seconds=seconds,
                rps=requests / seconds if seconds > 0 else 0.0,
                p50_ms=sum(w * r.p50_ms for w, r in zip(weights, runs, strict=True)),
                p99_ms=sum(w * r.p99_ms for w, r in zip(weights, runs, strict=True)),
            )
        latencies = [x for run in runs for x in run.latencies_ms]
        return cls.of(latencies, errors, seconds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


#: The load clients the benchmarks offer (`--client`).
CLIENTS = ("wrk", "aiohttp")


def default_client() -> str:
    """wrk when it is installed, else the aiohttp client."""
    return "wrk" if shutil.which("wrk") else "aiohttp"


def load_function(client: str) -> Callable[..., LoadResult]:
    """The function that drives a URL with `client` (`run_wrk` or `run_load`, same arguments)."""
    return run_wrk if client == "wrk" else run_load


def _loopback_only(url: str) -> None:
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise ValueError(f"loopback only, got {url}")


async def _run(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
) -> LoadResult:
    _loopback_only(url)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def client() -> None:
            nonlocal errors
            while True:
                now = time.perf_counter()
                if now >= stop_at or len(latencies) >= max_requests:
                    return
                body = bodies[next(counter) % len(bodies)]
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        ok = 200 <= response.status < 300
                except aiohttp.ClientError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if ok:
                        latencies.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = min(time.perf_counter(), stop_at) - measure_from
    return LoadResult.of([x * 1000 for x in latencies], errors, elapsed)


def run_load(
    url: str,
    payloads: Sequence[Any],
    *,
    concurrency: int,
    duration: float = 3.0,
    warmup: float = 0.5,
    max_requests: int = 200_000,
) -> LoadResult:
    """Drive `url` with POSTs of `payloads` (JSON-able objects, cycled) and measure."""
    bodies = [json.dumps(p).encode() for p in payloads]
    return asyncio.run(_run(url, bodies, concurrency, duration, warmup, max_requests))


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i %% #bodies) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("OCCAM-WRK %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    e.status + e.connect + e.read + e.write + e.timeout, latency:percentile(50),
    latency:percentile(99)))
end
"""


def run_wrk(
    url: str,
    payloads: Sequence[Any],
    *,
    concurrency: int,
    duration: float = 3.0,
    warmup: float = 0.5,
) -> LoadResult:
    """Drive `url` with `wrk` (one thread, `concurrency` connections) POSTing `payloads` (cycled
    per thread) for `duration` seconds (whole seconds, at least 1: wrk's unit) after a warm-up
    run of `warmup` seconds (rounded up; none for 0). Errors: non-2xx/3xx answers and socket
    errors (connect, read, write, timeout). Percentiles from wrk's latency histogram."""
    _loopback_only(url)
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk (or --client aiohttp)")
    bodies = [json.dumps(p) for p in payloads]
    if any("]==]" in b for b in bodies):
        raise ValueError("a payload holds the Lua string delimiter ]==]")
    literal = ",".join(f"[==[{b}]==]" for b in bodies)
    with tempfile.TemporaryDirectory(prefix="occam-wrk-") as folder:
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT % literal)

        def run(seconds: int) -> str:
            argv = [wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url]
            done = subprocess.run(argv, capture_output=True, text=True, check=True)
            return done.stdout

        if warmup > 0:
            run(max(1, int(-(-warmup // 1))))
        out = run(max(1, round(duration)))
    line = next(x for x in out.splitlines() if x.startswith("OCCAM-WRK "))
    requests, micros, errors, p50, p99 = (int(v) for v in line.split()[1:])
    seconds = micros / 1e6
    ok = max(requests - errors, 0)
    return LoadResult(
        requests=ok,
        errors=errors,
        seconds=seconds,
        rps=ok / seconds if seconds > 0 else 0.0,
        p50_ms=p50 / 1000,
        p99_ms=p99 / 1000,
    )

"""A small closed-loop HTTP load generator (aiohttp, loopback only).

`concurrency` clients each send one request, wait for the answer, and send the next, for
`duration` seconds after `warmup` seconds (or until `max_requests`). Latency is measured per
request from send to full body; throughput is completed requests per second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
        """One result for several runs of the same cell (interleaved with other cells)."""
        latencies = [x for run in runs for x in run.latencies_ms]
        return cls.of(latencies, sum(r.errors for r in runs), sum(r.seconds for r in runs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


async def _run(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    duration: float,
    warmup: float,
    max_requests: int,
) -> LoadResult:
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise ValueError(f"loopback only, got {url}")
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

"""The limit for bench/bench_serving.py (never deployed): uvicorn + Starlette + the bundle's
ONNX forest (onnxruntime), nothing else. No validation, no log, no metrics, no BentoML: what
this machine can do for a `/predict` that parses the same JSON, runs the same model and answers
each row's label and probabilities.

Run by the benchmark as `python -m uvicorn bench.limit_service:app --workers N`. It reads the
model from environment variables the benchmark sets (so this module imports nothing of Occam):
`BENCH_ONNX_PATH` (the bundle's model.onnx), `BENCH_FEATURES` (a JSON list of
`[name, kind]` in the model's input order, kind "numeric" or "categorical") and
`BENCH_CLASSES` (a JSON list of the class names in the model's output order).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


def _session(path: str) -> ort.InferenceSession:
    """One intra-op thread, as Occam's own ONNX runtime: the workers are the parallelism."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options)


SESSION = _session(os.environ["BENCH_ONNX_PATH"])
FEATURES: list[tuple[str, bool]] = [
    (name, kind == "numeric") for name, kind in json.loads(os.environ["BENCH_FEATURES"])
]
CLASSES: list[str] = [str(c) for c in json.loads(os.environ["BENCH_CLASSES"])]


async def predict(request: Request) -> JSONResponse:
    """`{"instances": [{feature: value}, ...]}` -> `{"predictions": [{label, probabilities}]}`."""
    rows: list[dict[str, Any]] = (await request.json())["instances"]
    feed = {
        name: np.asarray(
            [row[name] for row in rows], dtype=np.float32 if numeric else object
        ).reshape(-1, 1)
        for name, numeric in FEATURES
    }
    labels, proba = SESSION.run(None, feed)
    return JSONResponse(
        {
            "predictions": [
                {"label": str(label), "probabilities": dict(zip(CLASSES, row, strict=True))}
                for label, row in zip(labels, proba.tolist(), strict=True)
            ]
        }
    )


async def readyz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", readyz)])

"""Comparison services for bench/bench_serving.py (never deployed).

- `BareSklearn`: the minimal BentoML service a user would write around the same fitted
  scikit-learn pipeline: no validation, no log, a plain `def` endpoint.
- `Noop`: an endpoint that parses the same request and does nothing: BentoML's floor.
- `OnnxProbe`: the bundle's ONNX model behind a plain endpoint and behind an adaptive-batching
  one (`batchable=True`), to decide whether batching helps concurrent single-row traffic.

All three use Occam's server settings (short traffic timeout, access log off) so that the
comparison is about the work per request. `BENCH_MODEL_TAG` names the bundle to load.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import numpy as np
import pandas as pd

from occam.bundle import get_bundle

SETTINGS: dict[str, Any] = {
    "workers": 1,
    "traffic": {"timeout": 10},
    "logging": {"access": {"enabled": False}},
}


@bentoml.service(name="bare", **SETTINGS)
class BareSklearn:
    def __init__(self) -> None:
        bundle = get_bundle(os.environ["BENCH_MODEL_TAG"])
        self.pipeline = bundle.load_pipeline()
        self.schema = bundle.schema
        self.classes = [str(c) for c in self.pipeline.classes_]

    @bentoml.api
    def predict(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        frame = self.schema.coerce(pd.DataFrame(instances))
        proba = self.pipeline.predict_proba(frame)
        labels = np.asarray(self.classes)[proba.argmax(axis=1)]
        return {
            "predictions": [
                {"label": str(label), "probabilities": dict(zip(self.classes, row, strict=True))}
                for label, row in zip(labels, proba.tolist(), strict=True)
            ]
        }


@bentoml.service(name="noop", **SETTINGS)
class Noop:
    @bentoml.api
    async def predict(self, instances: list[dict[str, Any]]) -> dict[str, Any]:
        return {}


@bentoml.service(name="probe", **SETTINGS)
class OnnxProbe:
    def __init__(self) -> None:
        import onnxruntime as ort

        bundle = get_bundle(os.environ["BENCH_MODEL_TAG"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(bundle.onnx_path), options)
        self.schema = bundle.schema
        self.classes = bundle.classes

    def _run(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        feed = {
            spec.name: np.asarray(
                [row[spec.name] for row in rows],
                dtype=np.float32 if spec.kind == "numeric" else object,
            ).reshape(-1, 1)
            for spec in self.schema.features
        }
        labels, proba = self.session.run(None, feed)
        return [
            {"label": str(label), "probabilities": dict(zip(self.classes, row, strict=True))}
            for label, row in zip(labels, proba.tolist(), strict=True)
        ]

    @bentoml.api
    async def predict(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._run(instances)

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=20)
    async def predict_batched(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self._run(instances)

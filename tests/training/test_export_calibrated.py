"""The ONNX form of the calibrated forest, both calibration methods, on seeded synthetic rows."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from occam.schema import FeatureSchema
from training.calibration import Method, calibrated_pipeline
from training.export import export_onnx, onnx_feed, to_onnx_bytes
from training.model import make_pipeline


def frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.uniform(0, 10, n),
            "c": rng.choice(["red", "green", "blue"], n),
        }
    )
    x.loc[rng.choice(n, n // 20, replace=False), "a"] = np.nan
    logit = 1.5 * x["a"].fillna(0) - 0.3 * x["b"] + (x["c"] == "red") * 1.0 + 1
    y = np.where(rng.uniform(size=n) < 1 / (1 + np.exp(-logit)), "yes", "no")
    return x, y


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_onnx_reproduces_the_calibrated_probabilities(method: Method) -> None:
    x, y = frame(3000, 0)
    schema = FeatureSchema.from_frame(x, ["a", "b"], ["c"])
    x, test = schema.coerce(x), schema.coerce(frame(1000, 1)[0])
    params = {"n_estimators": 20, "min_samples_leaf": 20, "class_weight": "balanced"}
    model = calibrated_pipeline(make_pipeline(["a", "b"], ["c"], params, 0), method, KFold(3))
    model.fit(x, y)
    session = ort.InferenceSession(to_onnx_bytes(model, schema))
    labels, proba = session.run(None, onnx_feed(schema, test))
    expected = model.predict_proba(test)
    assert np.array_equal(np.asarray(labels).ravel(), model.predict(test))
    # within 1e-5 here; skl2onnx's own isotonic converter (nearest threshold) is 3.8e-2 off
    assert np.max(np.abs(np.asarray(proba) - expected)) <= 1e-5
    data, summary = export_onnx(model, schema, test)
    assert data is not None and summary["format"] == "onnx" and summary["labels_match"]

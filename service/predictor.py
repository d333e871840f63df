"""The served form of the forest: ONNX Runtime when the bundle has a checked `model.onnx`, else
the scikit-learn pipeline (the slow reference), and the self-test that gates readiness.

Both predictors take the validated columns (`ValidRows.columns`) and return the top label and
the probabilities in the bundle's class order. scikit-learn forests run with `n_jobs=1`: the
server already runs one process per core, and joblib threads per request only add overhead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from occam.bundle import Bundle
from occam.metadata import (
    MODEL_PREDICTION_COLUMN,
    PREDICTION_COLUMN,
    model_proba_column,
    proba_columns,
)
from occam.metrics import LabelDecider
from occam.schema import FeatureSchema, category_text
from service.validation import Validator

log = logging.getLogger("occam.service.predictor")
#: The self-test's tolerance between the served probabilities and the reference's (computed by
#: scikit-learn in float64 at training; ONNX runs in float32, checked to 1e-5 at export).
SELF_TEST_TOLERANCE = 1e-4
SELF_TEST_ROWS = 20


class Predictor(Protocol):
    """What the runtime needs from a served model."""

    kind: str
    reason: str | None

    def predict(self, columns: dict[str, list[Any]]) -> tuple[list[str], np.ndarray]:
        """Top labels and an (n, classes) array of probabilities in the bundle's class order."""
        ...

    def probabilities(self, columns: dict[str, list[Any]]) -> np.ndarray:
        """The (n, classes) array of `predict` alone."""
        ...


class OnnxPredictor:
    """The forest in ONNX Runtime: microseconds per row instead of milliseconds."""

    kind = "onnx"
    reason: str | None = None

    def __init__(self, path: str, schema: FeatureSchema) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One thread per session: the server runs one worker process per core already.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._numeric = tuple(schema.numeric)
        self._categorical = tuple(schema.categorical)
        self._outputs = [o.name for o in self._session.get_outputs()]

    def predict(self, columns: dict[str, list[Any]]) -> tuple[list[str], np.ndarray]:
        labels, proba = self._run(columns)
        return [str(label) for label in labels.ravel()], np.asarray(proba, dtype=np.float64)

    def probabilities(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.asarray(self._run(columns)[1], dtype=np.float64)

    def _run(self, columns: dict[str, list[Any]]) -> list[Any]:
        feed: dict[str, np.ndarray] = {}
        if self._numeric:
            # All numeric columns in one conversion (one array per column cost a call each and
            # showed in a single-row request's profile); each row of the block is contiguous.
            # Numbers beyond float32 become +-inf, as in scikit-learn's trees (float32 too).
            with np.errstate(over="ignore"):
                block = np.array([columns[name] for name in self._numeric], dtype=np.float32)
            for name, values in zip(self._numeric, block, strict=True):
                feed[name] = values.reshape(-1, 1)
        for name in self._categorical:
            feed[name] = np.asarray(columns[name], dtype=object).reshape(-1, 1)
        return self._session.run(self._outputs, feed)


class SklearnPredictor:
    """The fitted scikit-learn pipeline itself (about 6 ms per single row for 100 trees)."""

    kind = "sklearn"

    def __init__(self, pipeline: Any, schema: FeatureSchema, classes: list[str], reason: str):
        forest = pipeline.steps[-1][1]
        if hasattr(forest, "n_jobs"):
            forest.n_jobs = 1
        self._pipeline = pipeline
        self._names = schema.names
        own = [str(c) for c in pipeline.classes_]
        self._order = [own.index(c) if c in own else -1 for c in classes]
        self._classes = np.asarray(classes)
        self.reason: str | None = reason

    def predict(self, columns: dict[str, list[Any]]) -> tuple[list[str], np.ndarray]:
        frame = pd.DataFrame({name: columns[name] for name in self._names})
        own = self._pipeline.predict_proba(frame)
        proba = np.zeros((len(frame), len(self._order)))
        for i, j in enumerate(self._order):
            if j >= 0:
                proba[:, i] = own[:, j]
        labels = self._classes[proba.argmax(axis=1)]
        return [str(label) for label in labels], proba

    def probabilities(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return self.predict(columns)[1]


class DecidedPredictor:
    """Answers the label the bundle's decision weights choose from the calibrated probabilities
    (`occam.metrics.predicted_labels`, as the training gate scored it), not the most likely one."""

    def __init__(self, inner: Predictor, classes: list[str], weights: dict[str, float]) -> None:
        self.inner, self.classes, self.weights = inner, classes, weights
        self.kind, self.reason = inner.kind, inner.reason
        self.decide = LabelDecider(classes, weights)

    def predict(self, columns: dict[str, list[Any]]) -> tuple[list[str], np.ndarray]:
        proba = self.inner.probabilities(columns)
        return self.decide(proba).tolist(), proba

    def probabilities(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return self.inner.probabilities(columns)


def load_predictor(bundle: Bundle, inference: Literal["auto", "sklearn"] = "auto") -> Predictor:
    """The fastest checked form of the bundle's model, answering labels by its decision weights.

    `inference="sklearn"` forces the scikit-learn pipeline (the reference).
    """
    form = _load_form(bundle, inference)
    weights = bundle.decision_weights
    return DecidedPredictor(form, bundle.classes, weights) if weights else form


def _load_form(bundle: Bundle, inference: Literal["auto", "sklearn"]) -> Predictor:
    """ONNX when the bundle has a checked `model.onnx`; scikit-learn when not, saying why."""
    schema = bundle.schema
    if inference == "sklearn":
        reason = "serving.inference is 'sklearn'"
    elif bundle.onnx_path is None:
        reason = bundle.metadata.inference.reason or "the bundle has no model.onnx"
    else:
        try:
            return OnnxPredictor(str(bundle.onnx_path), schema)
        except Exception as exc:  # a runtime that cannot load the model: serve the reference
            reason = f"ONNX Runtime could not load model.onnx: {type(exc).__name__}: {exc}"
    log.warning("bundle %s is served with scikit-learn (slow): %s", bundle.tag, reason)
    return SklearnPredictor(bundle.load_pipeline(), schema, bundle.classes, reason)


@dataclass(frozen=True)
class SelfTest:
    """The outcome of predicting reference rows and comparing with the training-time outputs."""

    rows: int
    max_abs_diff: float
    labels_checked: int
    example: dict[str, Any]


class SelfTestError(RuntimeError):
    """The served model does not reproduce the bundle's reference outputs."""


def reference_instances(reference: pd.DataFrame, schema: FeatureSchema) -> list[dict[str, Any]]:
    """Reference rows as a client would send them (JSON values, null for missing)."""
    rows = []
    for record in reference[schema.names].to_dict(orient="records"):
        row: dict[str, Any] = {}
        for spec in schema.features:
            value = record[spec.name]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                row[spec.name] = None
            elif spec.kind == "numeric":
                number = float(value)
                row[spec.name] = int(number) if spec.dtype == "integer" else number
            else:  # as `FeatureSchema.coerce` turned the training values into categories
                row[spec.name] = category_text(
                    value.item() if isinstance(value, np.generic) else value
                )
        rows.append(row)
    return rows


def reference_outputs(reference: pd.DataFrame, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """The fitted model's own labels and probabilities on the reference rows, as recorded at
    training: `model_prediction` and `model_proba_<class>`. (`prediction`/`proba_<class>` are
    out-of-fold outputs, the drift reference; bundles written before the model's own outputs
    were recorded kept the model's outputs there.)"""
    own = model_proba_column(classes[0]) in reference.columns
    proba = reference[proba_columns(classes, own=own)].to_numpy(dtype=float)
    labels = reference[MODEL_PREDICTION_COLUMN if own else PREDICTION_COLUMN]
    return [str(label) for label in labels], proba


def self_test(
    predictor: Predictor, validator: Validator, bundle: Bundle, rows: int = SELF_TEST_ROWS
) -> SelfTest:
    """Validate and predict the first reference rows; raise `SelfTestError` when the answer
    differs from the model's outputs recorded at training by more than `SELF_TEST_TOLERANCE`,
    or when a clear-cut label (top two probabilities 0.001 apart) differs."""
    reference = bundle.load_reference().head(min(rows, validator.max_rows))
    instances = reference_instances(reference, bundle.schema)
    valid, problems = validator.validate(instances)
    if valid is None:
        raise SelfTestError(f"reference rows fail validation: {problems[0].message}")
    labels, proba = predictor.predict(valid.columns)
    classes = bundle.classes
    expected_labels, expected = reference_outputs(reference, classes)
    diff = float(np.max(np.abs(proba - expected)))
    if not np.isfinite(diff) or diff > SELF_TEST_TOLERANCE:
        raise SelfTestError(
            f"{predictor.kind} probabilities differ from the reference by {diff:.2e} "
            f"(> {SELF_TEST_TOLERANCE}); the bundle's files disagree, retrain"
        )
    top = np.sort(expected, axis=1)
    clear = (top[:, -1] - top[:, -2] > 1e-3) if len(classes) > 1 else np.ones(len(top), bool)
    wrong = [int(i) for i in np.flatnonzero(clear) if labels[i] != expected_labels[i]]
    if wrong:
        raise SelfTestError(f"{predictor.kind} labels differ from the reference on rows {wrong}")
    return SelfTest(
        rows=len(instances),
        max_abs_diff=diff,
        labels_checked=int(clear.sum()),
        example=instances[0],
    )

"""The fast inference form: the fitted pipeline converted to ONNX, checked against sklearn.

The pipeline ends in the calibrated forest (`CalibratedClassifierCV(ensemble=False)`); skl2onnx
converts the forest and its sigmoid or isotonic map, so ONNX answers calibrated probabilities.

A forest in scikit-learn pays Python overhead per tree on every call (about 5.7 ms for one row
with 100 trees here); ONNX Runtime runs the same trees in microseconds. The conversion is kept
only when it reproduces sklearn's labels exactly and its probabilities to `tolerance` on the
rows given; otherwise the service falls back to sklearn and says so.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from occam.schema import FeatureSchema

log = logging.getLogger(__name__)
TOLERANCE = 1e-5


def onnx_feed(schema: FeatureSchema, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """ONNX inputs for rows already passed through `FeatureSchema.coerce`: one (n, 1) tensor
    per feature, float32 for numbers (NaN for missing) and strings for categories."""
    feed: dict[str, np.ndarray] = {}
    for spec in schema.features:
        column = frame[spec.name]
        if spec.kind == "numeric":
            feed[spec.name] = column.to_numpy(dtype=np.float32).reshape(-1, 1)
        else:
            feed[spec.name] = column.astype(str).to_numpy(dtype=object).reshape(-1, 1)
    return feed


def _isotonic_interpolated(
    scope: Any, container: Any, model: Any, T: str, k: int, dtype: Any, proto_type: int
) -> str:
    """ONNX nodes for calibrator `k` of a fitted `CalibratedClassifierCV(method="isotonic")`:
    linear interpolation between the isotonic thresholds, clipped to their range, as
    scikit-learn's `IsotonicRegression.predict` computes it (in float64, cast back at the end).

    skl2onnx 1.20 maps each input to the y of the *nearest* threshold instead, which is up to
    0.03 off on steep segments of the map (measured on the flights data); this replaces it.
    Returns the name of the (n, 1) calibrated column, of type `proto_type`.
    """
    from onnx import TensorProto
    from skl2onnx.common._apply_operation import apply_cast, apply_clip, apply_reshape

    calibrator = model.calibrators[k]
    xs = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
    ys = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
    if len(xs) == 1:  # a constant map
        xs, ys = np.r_[xs, xs + 1.0], np.r_[ys, ys]
    slopes = np.diff(ys) / np.diff(xs)

    def name(prefix: str) -> str:
        return str(scope.get_unique_variable_name(prefix))

    def constant(prefix: str, values: np.ndarray, kind: int = TensorProto.DOUBLE) -> str:
        tensor = name(prefix)
        container.add_initializer(tensor, kind, list(values.shape), values.ravel().tolist())
        return tensor

    column, as_double, clipped = name("iso_column"), name("iso_double"), name("iso_clipped")
    apply_reshape(scope, T, column, container, desired_shape=(-1, 1))
    apply_cast(scope, column, as_double, container, to=TensorProto.DOUBLE)
    apply_clip(scope, as_double, clipped, container, min=np.float64(xs[0]), max=np.float64(xs[-1]))
    # segment index = number of interior thresholds <= x (0 .. len(xs) - 2)
    above, counted, segment = name("iso_above"), name("iso_counted"), name("iso_segment")
    container.add_node(
        "GreaterOrEqual",
        [clipped, constant("iso_inner", xs[1:-1])],
        above,
        name=scope.get_unique_operator_name("IsoGE"),
    )
    apply_cast(scope, above, counted, container, to=TensorProto.INT64)
    axes = constant("iso_axes", np.asarray([1], dtype=np.int64), TensorProto.INT64)
    container.add_node(
        "ReduceSum",
        [counted, axes],
        segment,
        keepdims=1,
        name=scope.get_unique_operator_name("IsoSegment"),
    )
    picked: dict[str, str] = {}
    for key, values in (("x0", xs[:-1]), ("y0", ys[:-1]), ("slope", slopes)):
        picked[key] = name(f"iso_{key}")
        container.add_node(
            "Gather",
            [constant(f"iso_{key}s", values), segment],
            picked[key],
            axis=0,
            name=scope.get_unique_operator_name("IsoGather"),
        )
    offset, rise, value, out = name("iso_dx"), name("iso_dy"), name("iso_y"), name("iso_out")
    container.add_node("Sub", [clipped, picked["x0"]], offset, name=name("IsoSub"))
    container.add_node("Mul", [offset, picked["slope"]], rise, name=name("IsoMul"))
    container.add_node("Add", [picked["y0"], rise], value, name=name("IsoAdd"))
    apply_cast(scope, value, out, container, to=proto_type)
    return out


def to_onnx_bytes(pipeline: Any, schema: FeatureSchema) -> bytes:
    """The fitted pipeline as ONNX bytes: one (n, 1) input per feature, probabilities as one
    (n, classes) tensor. Isotonic calibration maps are converted by `_isotonic_interpolated`
    (the converter module's own function is swapped for the call and restored after)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from skl2onnx.operator_converters import calibrated_classifier_cv as converter

    inputs = [
        (s.name, FloatTensorType([None, 1]) if s.kind == "numeric" else StringTensorType([None, 1]))
        for s in schema.features
    ]
    classifier = pipeline.steps[-1][1]  # the calibrated forest: probabilities as one tensor
    original = converter._transform_isotonic
    converter._transform_isotonic = _isotonic_interpolated
    try:
        model = to_onnx(
            pipeline,
            initial_types=inputs,
            options={id(classifier): {"zipmap": False}},
            target_opset=17,
        )
    finally:
        converter._transform_isotonic = original
    return bytes(model.SerializeToString())


def export_onnx(
    pipeline: Any, schema: FeatureSchema, check_rows: pd.DataFrame, tolerance: float = TOLERANCE
) -> tuple[bytes | None, dict[str, Any]]:
    """Convert and verify; return (ONNX bytes or None, a summary for the bundle metadata).

    `check_rows` are coerced feature rows (the held-out test set): the summary records how many
    were compared, whether every label matched and the largest probability difference.
    """
    try:
        import onnxruntime as ort

        data = to_onnx_bytes(pipeline, schema)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        labels, proba = session.run(None, onnx_feed(schema, check_rows))
    except Exception as exc:  # any converter gap means: serve sklearn, and say why
        reason = f"conversion failed: {type(exc).__name__}: {exc}"
        log.warning("ONNX export: %s; serving will use scikit-learn", reason)
        return None, {"format": "sklearn", "reason": reason}
    expected = pipeline.predict_proba(check_rows)
    diff = float(np.max(np.abs(np.asarray(proba) - expected))) if len(check_rows) else 0.0
    labels_match = bool(np.array_equal(np.asarray(labels).ravel(), pipeline.predict(check_rows)))
    summary: dict[str, Any] = {
        "rows_checked": len(check_rows),
        "labels_match": labels_match,
        "max_abs_proba_diff": diff,
        "tolerance": tolerance,
    }
    if not labels_match or diff > tolerance:
        reason = (
            f"ONNX output differs from sklearn (labels match: {labels_match}, max diff {diff:.2e})"
        )
        log.warning("ONNX export: %s; serving will use scikit-learn", reason)
        return None, {"format": "sklearn", "reason": reason, **summary}
    return data, {"format": "onnx", **summary}

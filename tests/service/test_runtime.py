"""The serving runtime called directly, on the session's trained bundle: start-up refusals,
predictions, abstention, feedback, rejections, the log and the counters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from occam.bundle import BundleError
from occam.config import ConfigError
from occam.records import (
    PROBABILITY_DIGITS,
    FeedbackRecord,
    PredictionRecord,
    RejectedRecord,
)
from service.predictor import SelfTestError, load_predictor, self_test
from service.runtime import Runtime

from .conftest import BadBundles, Counters, HeldOut, read_log, serving_config

PREDICTIONS = "occam_service_predictions_total"


def reference_rows(trained: Any, n: int = 50) -> list[dict[str, Any]]:
    from service.predictor import reference_instances

    return reference_instances(trained.bundle.load_reference().head(n), trained.bundle.schema)


def test_start_refuses_a_bundle_that_was_not_promoted(
    trained: Any, tmp_path: Path, bad_bundles: BadBundles
) -> None:
    config = serving_config(trained, tmp_path)
    with pytest.raises(BundleError, match=r"stage=candidate.*not served"):
        Runtime.start(config, bad_bundles.candidate.tag)


def test_start_refuses_a_bundle_whose_files_changed(
    trained: Any, tmp_path: Path, bad_bundles: BadBundles
) -> None:
    config = serving_config(trained, tmp_path)
    with pytest.raises(
        BundleError, match=re.escape("reference.csv.gz does not match its recorded SHA-256")
    ):
        Runtime.start(config, bad_bundles.tampered.tag)


def test_start_refuses_when_nothing_is_promoted(trained: Any, tmp_path: Path) -> None:
    config = serving_config(trained, tmp_path, model_name="occam-test-candidate")
    with pytest.raises(BundleError, match="no model 'occam-test-candidate' labelled"):
        Runtime.start(config)


def test_start_refuses_a_bad_config(trained: Any, tmp_path: Path) -> None:
    config = serving_config(trained, tmp_path, max_rows=0)
    with pytest.raises(ConfigError, match=re.escape("serving.max_rows")):
        Runtime.start(config)


def test_not_ready_until_loaded_then_predicts(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime(load=False)
    assert not runtime.ready
    assert runtime.predict(reference_rows(trained, 1)).status == 503
    runtime.load()
    assert runtime.ready and runtime.self_test.rows == 20
    assert runtime.predict(reference_rows(trained, 1)).status == 200


def test_predictions_match_the_reference_and_abstain_under_the_threshold(
    make_runtime: Any, trained: Any, counters: Counters
) -> None:
    runtime = make_runtime()
    rows = reference_rows(trained, 200)
    reply = runtime.predict(rows)
    assert reply.status == 200
    body = reply.body
    assert body["model_version"] == trained.bundle.version
    answers = body["predictions"]
    reference = trained.bundle.load_reference().head(200)
    classes = trained.bundle.classes
    expected = reference[[f"model_proba_{c}" for c in classes]].to_numpy()
    got = np.array([[a["probabilities"][c] for c in classes] for a in answers])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    abstain = trained.bundle.metadata.abstain
    under = expected.max(axis=1) < abstain.threshold
    assert under.any() and not under.all()  # the fixture exercises both branches
    assert [a["abstained"] for a in answers] == under.tolist()
    for answer, is_under, top in zip(answers, under, reference["model_prediction"], strict=True):
        assert answer["label"] == (abstain.label if is_under else top)
    assert len({a["id"] for a in answers}) == 200
    assert all(len(a["id"]) == 32 for a in answers)
    version = trained.bundle.version
    assert counters.value("occam_service_abstentions_total", model_version=version) == under.sum()
    answered = sum(
        counters.value(PREDICTIONS, model_version=version, label=label)
        for label in [*classes, abstain.label]
    )
    assert answered == 200


def test_every_row_feedback_and_rejection_is_logged(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime()
    rows = reference_rows(trained, 3)
    rows[1] = {**rows[1], "distance": 1e9, "dest": "XXX"}
    answers = runtime.predict(rows).body["predictions"]
    assert runtime.feedback([(answers[0]["id"], trained.bundle.classes[0])]).status == 202
    assert runtime.predict([{**rows[0], "distance": "far"}]).status == 400
    runtime.close()
    records = read_log(runtime.serving.log_dir)
    predictions = [r for r in records if isinstance(r, PredictionRecord)]
    assert [r.id for r in predictions] == [a["id"] for a in answers]
    assert predictions[1].features == rows[1]  # as received
    assert predictions[1].marks == {
        "unseen_category": ["dest"],
        "out_of_range": ["distance"],
        "missing": [],
    }
    assert predictions[0].model_version == trained.bundle.version
    assert predictions[0].probabilities == {  # the compact log keeps PROBABILITY_DIGITS
        c: round(p, PROBABILITY_DIGITS) for c, p in answers[0]["probabilities"].items()
    }
    feedback = [r for r in records if isinstance(r, FeedbackRecord)]
    assert [(r.id, r.label) for r in feedback] == [(answers[0]["id"], trained.bundle.classes[0])]
    rejected = [r for r in records if isinstance(r, RejectedRecord)]
    assert [(r.reason, r.field) for r in rejected] == [("wrong_type", "distance")]


def test_logging_off_keeps_feedback_and_rejections(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime(log_predictions=False)
    answers = runtime.predict(reference_rows(trained, 2)).body["predictions"]
    runtime.feedback([(answers[0]["id"], trained.bundle.classes[1])])
    runtime.predict([])
    runtime.close()
    kinds = [r.kind for r in read_log(runtime.serving.log_dir)]
    assert kinds == ["feedback", "rejected"]


def test_feedback_refuses_an_unknown_label_naming_it(
    make_runtime: Any, counters: Counters, trained: Any
) -> None:
    runtime = make_runtime()
    reply = runtime.feedback([("a" * 32, trained.bundle.classes[0]), ("b" * 32, "maybe")])
    assert reply.status == 400
    [problem] = reply.body["problems"]
    assert (problem["row"], problem["field"], problem["reason"]) == (1, "label", "unknown_label")
    assert "'maybe'" in problem["message"] and trained.bundle.classes[0] in problem["message"]
    assert counters.value("occam_service_rejected_rows_total", reason="unknown_label") == 1
    assert counters.value("occam_service_feedback_labels_total", label="maybe") == 0
    assert reply.body["error"].endswith("; no label was logged")  # not "nothing was predicted"


def test_feedback_reads_a_numeric_label_as_its_text_and_names_it_when_unknown(
    make_runtime: Any, trained: Any
) -> None:
    runtime = make_runtime()
    reply = runtime.feedback([("a" * 32, 1), ("b" * 32, True)])
    assert reply.status == 400
    assert reply.body["error"] == "request refused: 2 problem(s) in 2 row(s); no label was logged"
    first, second = reply.body["problems"]
    assert first["message"].startswith("label 1 (read as '1') is not a class of this model")
    assert second["message"].startswith("label True (read as 'True') is not a class")
    ident = runtime.predict(reference_rows(trained, 1)).body["predictions"][0]["id"]
    assert runtime.feedback([(ident, trained.bundle.classes[1])]).status == 202
    runtime.close()
    feedback = [r for r in read_log(runtime.serving.log_dir) if isinstance(r, FeedbackRecord)]
    assert [(r.id, r.label) for r in feedback] == [(ident, trained.bundle.classes[1])]


def test_rejections_are_counted_per_bad_row_by_reason(
    make_runtime: Any, trained: Any, counters: Counters
) -> None:
    runtime = make_runtime(max_rows=3)
    row = reference_rows(trained, 1)[0]
    reply = runtime.predict([row, {**row, "temp": "hot", "carrier": [1]}, {"x": 1}])
    assert reply.status == 400
    assert {(q["row"], q["field"]) for q in reply.body["problems"]} >= {(1, "temp"), (2, "x")}
    assert runtime.predict([row] * 4).body["problems"][0]["reason"] == "too_many_rows"

    def count(reason: str) -> float:
        return counters.value("occam_service_rejected_rows_total", reason=reason)

    assert (count("wrong_type"), count("unknown_feature"), count("too_many_rows")) == (1, 1, 1)


def test_the_model_document_says_how_to_call_the_model(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime(unseen_category="reject")
    doc = runtime.model_document()
    bundle = trained.bundle
    assert (doc["tag"], doc["version"], doc["stage"]) == (bundle.tag, bundle.version, "production")
    assert doc["classes"] == bundle.classes
    assert [f["name"] for f in doc["features"]] == bundle.schema.names
    assert doc["abstain"]["threshold"] == bundle.metadata.abstain.threshold
    assert doc["goals"] and doc["gate"]["passed"] is True
    assert doc["limits"]["unseen_category"] == "reject"
    assert doc["inference"] == {"format": "onnx", "fallback_reason": None}
    assert runtime.predict(doc["example_request"]["instances"]).status == 200


def test_a_bundle_without_onnx_is_served_by_sklearn_saying_why(
    make_runtime: Any,
    bad_bundles: BadBundles,
    held_out: HeldOut,
    trained: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="occam.service"):
        runtime = make_runtime(model_tag=bad_bundles.sklearn_only.tag)
    assert runtime.predictor.kind == "sklearn"
    assert "served with scikit-learn (slow): test: no ONNX" in caplog.text
    assert runtime.model_document()["inference"]["fallback_reason"] == "test: no ONNX"
    rows = held_out.instances[:300]
    answers = runtime.predict(rows).body["predictions"]
    pipeline = trained.bundle.load_pipeline()
    proba = pipeline.predict_proba(held_out.x.iloc[:300])
    got = np.array([[a["probabilities"][c] for c in pipeline.classes_] for a in answers])
    np.testing.assert_allclose(got, proba, atol=1e-12)


def test_a_model_that_disagrees_with_its_reference_never_becomes_ready(
    make_runtime: Any, bad_bundles: BadBundles, trained: Any
) -> None:
    runtime = make_runtime(model_tag=bad_bundles.disagreeing.tag)
    assert not runtime.ready
    assert "differ from the reference" in (runtime.failure or "")
    reply = runtime.predict(reference_rows(trained, 1))
    assert reply.status == 503 and "failed to load" in reply.body["error"]


def test_self_test_compares_with_the_reference(make_runtime: Any, trained: Any) -> None:
    runtime = make_runtime()
    predictor = load_predictor(trained.bundle)
    assert self_test(predictor, runtime.validator, trained.bundle).max_abs_diff < 1e-5

    class Shifted:
        kind = "shifted"
        reason: str | None = None

        def predict(self, columns: dict[str, list[Any]]) -> tuple[list[str], np.ndarray]:
            labels, proba = predictor.predict(columns)
            return labels, proba + 1e-3

    with pytest.raises(SelfTestError, match=re.escape("differ from the reference by 1.0")):
        self_test(Shifted(), runtime.validator, trained.bundle)

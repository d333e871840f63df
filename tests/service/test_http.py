"""HTTP through the service's ASGI app (BentoML's own app, lifespan included): every bad input
is a 4xx naming row, field and reason, the server keeps serving, and the served answers equal
scikit-learn's on the whole held-out set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bentoml._internal.service.openapi.specification import Schema
from prometheus_client import REGISTRY

from occam.metrics import predicted_labels
from occam.records import PredictionRecord
from service.messages import FeedbackResponse, PredictResponse
from service.openapi import category_codes, with_codes

from .conftest import HeldOut, asgi_client, serving_config, wait_for_log


@pytest.fixture(scope="module")
def served(trained: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    """(client, log folder) for the trained bundle with the default serving settings."""
    folder = tmp_path_factory.mktemp("http")
    with asgi_client(serving_config(trained, folder)) as client:
        yield client, folder / "logs"


@pytest.fixture(scope="module")
def client(served: tuple[Any, Path]) -> Any:
    return served[0]


@pytest.fixture(scope="module")
def row(client: Any) -> dict[str, Any]:
    return dict(client.get("/model").json()["example_request"]["instances"][0])


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("occam_service_rejected_rows_total", {"reason": reason}) or 0


def post_raw(client: Any, path: str, content: bytes, **headers: str) -> Any:
    return client.post(
        path, content=content, headers={"content-type": "application/json", **headers}
    )


def test_probes_and_model_document(client: Any, trained: Any) -> None:
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 200
    doc = client.get("/model")
    assert doc.status_code == 200
    assert doc.json()["tag"] == trained.bundle.tag
    assert doc.json()["ready"] is True
    assert client.post("/model").status_code == 405


def test_a_prediction_answers_in_the_documented_shape(client: Any, row: dict[str, Any]) -> None:
    response = client.post("/predict", json={"instances": [row, row]})
    assert response.status_code == 200
    body = PredictResponse.model_validate(response.json())
    assert len(body.predictions) == 2
    assert body.predictions[0].id != body.predictions[1].id
    assert set(body.predictions[0].probabilities) == set(client.get("/model").json()["classes"])


def test_served_labels_equal_sklearn_on_the_whole_held_out_set(
    served: tuple[Any, Path], held_out: HeldOut, trained: Any
) -> None:
    client, logs = served
    answers: list[dict[str, Any]] = []
    for start in range(0, len(held_out.instances), 1000):
        response = client.post(
            "/predict", json={"instances": held_out.instances[start : start + 1000]}
        )
        assert response.status_code == 200, response.text[:500]
        answers.extend(response.json()["predictions"])
    pipeline = trained.bundle.load_pipeline()
    classes = [str(c) for c in pipeline.classes_]
    expected_proba = pipeline.predict_proba(held_out.x)
    # the answered label is the one the bundle's decision weights choose, as the gate scored it
    expected_labels = predicted_labels(expected_proba, classes, trained.bundle.decision_weights)
    assert len(answers) == len(held_out.instances) > 1000
    proba = np.array([[a["probabilities"][c] for c in classes] for a in answers])
    np.testing.assert_allclose(proba, expected_proba, rtol=0, atol=1e-5)
    # The answered label is the top class, or the abstain label; the log keeps the top class.
    logged = wait_for_log(logs, {a["id"] for a in answers})
    top = {r.id: r.predicted for r in logged if isinstance(r, PredictionRecord)}
    served_top = np.array([top[a["id"]] for a in answers])
    assert (served_top == expected_labels).all()
    abstain = trained.bundle.metadata["abstain"]
    for answer, label in zip(answers, expected_labels, strict=True):
        assert answer["label"] == (abstain["label"] if answer["abstained"] else label)


def bad_rows(row: dict[str, Any]) -> list[tuple[str, Any, int, str | None, str]]:
    """(case, instances, row index, field, reason) for every bad-row kind."""
    without = {k: v for k, v in row.items() if k != "distance"}
    return [
        ("missing feature", [row, without], 1, "distance", "missing_feature"),
        ("unknown feature", [{**row, "colour": "red"}], 0, "colour", "unknown_feature"),
        ("wrong type", [{**row, "distance": "far"}], 0, "distance", "wrong_type"),
        ("boolean", [{**row, "distance": True}], 0, "distance", "wrong_type"),
        ("array for a category", [{**row, "carrier": ["UA"]}], 0, "carrier", "wrong_type"),
        ("unknown category code", [{**row, "carrier": 9}], 0, "carrier", "unmatched_category"),
        ("null not allowed", [{**row, "distance": None}], 0, "distance", "missing_value"),
        ("row not an object", [row, row, "x"], 2, None, "not_an_object"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_each_bad_row_is_a_4xx_naming_row_field_and_reason(
    client: Any, row: dict[str, Any], case: int
) -> None:
    """400, except a category sent as a number that reads as no known category: 422."""
    name, instances, index, field, reason = bad_rows(row)[case]
    before = rejected(reason)
    response = client.post("/predict", json={"instances": instances})
    assert response.status_code == (422 if reason == "unmatched_category" else 400), name
    problem = response.json()["problems"][0]
    assert (problem["row"], problem["field"], problem["reason"]) == (index, field, reason), name
    assert rejected(reason) == before + 1
    assert client.post("/predict", json={"instances": [row]}).status_code == 200


@pytest.mark.parametrize(
    ("token", "field", "reason"),
    [("NaN", "distance", "missing_value"), ("Infinity", "distance", "not_finite")],
)
def test_nan_and_infinity_tokens_are_refused(
    client: Any, row: dict[str, Any], token: str, field: str, reason: str
) -> None:
    body = json.dumps({"instances": [{**row, field: "TOKEN"}]}).replace('"TOKEN"', token)
    response = post_raw(client, "/predict", body.encode())
    assert response.status_code == 400
    problem = response.json()["problems"][0]
    assert (problem["row"], problem["field"], problem["reason"]) == (0, field, reason)


def test_nan_is_a_missing_value_where_training_had_missing_values(
    client: Any, row: dict[str, Any], trained: Any
) -> None:
    nullable = next(f.name for f in trained.bundle.schema.features if f.nullable)
    body = json.dumps({"instances": [{**row, nullable: "TOKEN"}]}).replace('"TOKEN"', "NaN")
    assert post_raw(client, "/predict", body.encode()).status_code == 200


def test_far_out_of_range_and_unseen_categories_are_answered(
    client: Any, row: dict[str, Any]
) -> None:
    response = client.post(
        "/predict", json={"instances": [{**row, "distance": 1e7, "dest": "ZZZ"}]}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("content", "reason", "field"),
    [
        (b'{"instances": [', "malformed_json", None),
        (b"", "invalid_request", "instances"),
        (b'{"instances": []}', "empty_request", "instances"),
        (b'{"instances": {"a": 1}}', "wrong_type", "instances"),
        (b'{"rows": []}', "invalid_request", "instances"),
    ],
)
def test_request_level_problems_are_400s(
    client: Any, row: dict[str, Any], content: bytes, reason: str, field: str | None
) -> None:
    before = rejected(reason)
    response = post_raw(client, "/predict", content)
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert (problems[0]["row"], problems[0]["reason"], problems[0]["field"]) == (
        None,
        reason,
        field,
    )
    assert rejected(reason) >= before + 1
    assert client.post("/predict", json={"instances": [row]}).status_code == 200


def test_too_many_rows(client: Any, row: dict[str, Any]) -> None:
    response = client.post("/predict", json={"instances": [row] * 1001})
    assert response.status_code == 400
    assert response.json()["problems"][0]["reason"] == "too_many_rows"
    assert "at most 1000" in response.json()["problems"][0]["message"]


def test_an_oversized_body_is_a_413_before_it_is_read(client: Any, row: dict[str, Any]) -> None:
    big = json.dumps({"instances": [{**row, "dest": "x" * 3_000_000}]}).encode()
    response = post_raw(client, "/predict", big)
    assert response.status_code == 413
    assert response.json()["problems"][0]["reason"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the guard counts as it reads
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    chunked = client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    small = json.dumps({"instances": [row]}).encode()
    chunked_ok = client.post("/predict", content=iter([small[:10], small[10:]]))
    assert chunked_ok.status_code == 200


@pytest.mark.parametrize(
    "media_type", ["application/vnd.bentoml+pickle", "text/plain", "multipart/form-data"]
)
def test_only_json_is_accepted(client: Any, media_type: str) -> None:
    response = client.post(
        "/predict", content=b"\x80\x04K\x01.", headers={"content-type": media_type}
    )
    assert response.status_code == 415
    assert response.json()["problems"][0]["reason"] == "unsupported_media_type"


def test_feedback_is_accepted_and_unknown_labels_are_named(
    client: Any, row: dict[str, Any]
) -> None:
    classes = client.get("/model").json()["classes"]
    ident = client.post("/predict", json={"instances": [row]}).json()["predictions"][0]["id"]
    response = client.post("/feedback", json={"labels": [{"id": ident, "label": classes[0]}]})
    assert response.status_code == 202
    assert FeedbackResponse.model_validate(response.json()).accepted == 1
    unknown = client.post("/feedback", json={"labels": [{"id": ident, "label": "perhaps"}]})
    assert unknown.status_code == 400
    problem = unknown.json()["problems"][0]
    assert (problem["row"], problem["field"], problem["reason"]) == (0, "label", "unknown_label")
    assert "'perhaps'" in problem["message"]
    assert unknown.json()["error"].endswith("no label was logged")
    bad_id = client.post("/feedback", json={"labels": [{"id": "42", "label": classes[0]}]})
    assert bad_id.status_code == 400
    assert (bad_id.json()["problems"][0]["row"], bad_id.json()["problems"][0]["field"]) == (0, "id")
    assert "nothing was predicted" not in bad_id.json()["error"]
    assert client.post("/feedback", json={"labels": []}).status_code == 400


@pytest.mark.parametrize(
    ("label", "shown"), [(1, "label 1 (read as '1')"), (True, "label True (read as 'True')")]
)
def test_feedback_with_a_number_or_boolean_label_is_read_as_text_and_named(
    client: Any, row: dict[str, Any], label: Any, shown: str
) -> None:
    """`"label": 1` reaches the label check (not a schema error) and is named as read."""
    ident = client.post("/predict", json={"instances": [row]}).json()["predictions"][0]["id"]
    response = client.post("/feedback", json={"labels": [{"id": ident, "label": label}]})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "request refused: 1 problem(s) in 1 row(s); no label was logged"
    [problem] = body["problems"]
    assert (problem["row"], problem["field"], problem["reason"]) == (0, "label", "unknown_label")
    assert problem["message"].startswith(f"{shown} is not a class of this model")


def test_category_codes_are_documented_as_numbers_and_booleans() -> None:
    assert category_codes(["12", "2.5", "012", "1e3", "inf", "nan", "True", "UA"]) == (
        [12, 2.5],
        [True],
    )
    plain = Schema(type="string", enum=["UA", "DL"])
    assert with_codes(plain, ["UA", "DL"]) is plain  # nothing else reads as a category
    coded = with_codes(Schema(type="string", enum=["12", "False"]), ["12", "False"])
    assert coded.anyOf is not None
    assert [(form.type, form.enum) for form in coded.anyOf] == [
        ("string", ["12", "False"]),
        ("number", [12]),
        ("boolean", [False]),
    ]


def test_docs_describe_the_served_model(client: Any, trained: Any) -> None:
    spec = client.get("/docs.json").json()
    predict = spec["paths"]["/predict"]["post"]
    rows = predict["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "instances"
    ]
    assert rows["maxItems"] == 1000
    assert rows["items"]["required"] == trained.bundle.schema.names
    assert rows["items"]["additionalProperties"] is False
    assert {"400", "413", "415", "422", "503"} <= set(predict["responses"])
    feedback = spec["paths"]["/feedback"]["post"]
    assert "202" in feedback["responses"] and "200" not in feedback["responses"]
    labels = feedback["requestBody"]["content"]["application/json"]["schema"]["properties"][
        "labels"
    ]
    assert labels["items"]["properties"]["label"]["enum"] == trained.bundle.classes
    assert "get" in spec["paths"]["/model"]

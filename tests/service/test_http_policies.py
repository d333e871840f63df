"""HTTP through the ASGI app under other settings and bundles: refusing unseen categories,
small limits, a model that fails its self-test, and the scikit-learn fallback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .conftest import BadBundles, asgi_client, serving_config


def example(client: Any) -> dict[str, Any]:
    return dict(client.get("/model").json()["example_request"]["instances"][0])


def test_strict_policies_and_small_limits(trained: Any, tmp_path: Path) -> None:
    config = serving_config(
        trained, tmp_path, unseen_category="reject", max_rows=5, max_body_bytes=4096
    )
    with asgi_client(config) as client:
        row = example(client)
        unseen = client.post("/predict", json={"instances": [row, {**row, "origin": "XYZ"}]})
        assert unseen.status_code == 400
        problem = unseen.json()["problems"][0]
        assert (problem["row"], problem["field"], problem["reason"]) == (
            1,
            "origin",
            "unseen_category",
        )
        too_many = client.post("/predict", json={"instances": [row] * 6})
        assert too_many.json()["problems"][0]["reason"] == "too_many_rows"
        body = json.dumps({"instances": [{**row, "dest": "x" * 5000}]}).encode()
        too_big = client.post(
            "/predict", content=body, headers={"content-type": "application/json"}
        )
        assert too_big.status_code == 413
        assert "4096 bytes" in too_big.json()["problems"][0]["message"]
        assert client.post("/predict", json={"instances": [row] * 5}).status_code == 200
        spec = client.get("/docs.json").json()
        instances = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
        origin = instances["schema"]["properties"]["instances"]["items"]["properties"]["origin"]
        assert origin["enum"] == list(trained.bundle.schema["origin"].categories)


def test_a_model_failing_its_self_test_stays_unready_and_says_why(
    trained: Any, tmp_path: Path, bad_bundles: BadBundles
) -> None:
    config = serving_config(trained, tmp_path)
    with asgi_client(config, bad_bundles.disagreeing.tag, ready=False) as client:
        deadline = time.monotonic() + 30
        while client.get("/model").json()["inference"]["format"] is None:
            if "failed" in client.post("/predict", json={"instances": [{}]}).text:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/readyz").status_code == 503
        assert client.get("/livez").status_code == 200
        assert client.get("/model").json()["ready"] is False
        response = client.post("/predict", json={"instances": [{}]})
        assert response.status_code == 503
        assert "differ from the reference" in response.json()["error"]


def test_the_sklearn_fallback_serves_over_http(
    trained: Any, tmp_path: Path, bad_bundles: BadBundles
) -> None:
    config = serving_config(trained, tmp_path)
    with asgi_client(config, bad_bundles.sklearn_only.tag) as client:
        doc = client.get("/model").json()
        assert doc["inference"]["format"] == "sklearn"
        response = client.post("/predict", json=doc["example_request"])
        assert response.status_code == 200
        assert response.json()["model_version"] == bad_bundles.sklearn_only.version

"""Real processes: `occam serve` (BentoML, two workers) on a free loopback port, spoken to over
HTTP; the prediction log read back after shutdown; /metrics checked with promtool; and the
`bentoml build` of bentofile.yaml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from occam.bundle import ONNX_FILE, save_bundle
from occam.records import FeedbackRecord, PredictionRecord, RejectedRecord, segment_key

from .conftest import BadBundles, HeldOut, http, occam_serve, read_log, serving_config

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def metric_values(text: str, name: str) -> dict[str, float]:
    """{label string: value} for the samples of `name` in a Prometheus exposition."""
    pattern = re.compile(rf"^{name}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return {labels or "": float(value) for labels, value in pattern.findall(text)}


def test_occam_serve_predicts_takes_feedback_logs_and_counts(
    trained: Any, tmp_path: Path, held_out: HeldOut
) -> None:
    config = serving_config(trained, tmp_path)
    rows = held_out.instances[:40]
    odd = {**rows[0], "dest": "ZZZ", "distance": 1e7}  # accepted, marked for the monitor
    with occam_serve(config, workers=2) as server:
        answers = []
        for row in [*rows[:30], odd]:  # single rows: spread over both workers
            status, body = http("POST", f"{server.url}/predict", {"instances": [row]})
            assert status == 200, body
            answers.extend(body["predictions"])
        status, body = http("POST", f"{server.url}/predict", {"instances": rows[30:]})
        assert status == 200
        answers.extend(body["predictions"])
        labels = [(a["id"], trained.bundle.classes[i % 2]) for i, a in enumerate(answers[:10])]
        feedback = {"labels": [{"id": i, "label": label} for i, label in labels]}
        assert http("POST", f"{server.url}/feedback", feedback)[0] == 202
        status, body = http(
            "POST", f"{server.url}/predict", {"instances": [{**rows[0], "temp": "hot"}]}
        )
        assert (status, body["problems"][0]["field"]) == (400, "temp")
        status, body = http(
            "POST", f"{server.url}/feedback", {"labels": [{"id": "0" * 32, "label": "?"}]}
        )
        assert status == 400 and body["problems"][0]["reason"] == "unknown_label"
        assert http("GET", f"{server.url}/readyz")[0] == 200

        status, metrics = http("GET", f"{server.url}/metrics")
        assert status == 200
        version = trained.bundle.version
        predictions = metric_values(metrics, "occam_service_predictions_total")
        assert sum(predictions.values()) == len(answers) == 41  # summed across both workers
        assert all(f'model_version="{version}"' in labels for labels in predictions)
        abstentions = metric_values(metrics, "occam_service_abstentions_total")
        assert sum(abstentions.values()) == sum(a["abstained"] for a in answers)
        rejected = metric_values(metrics, "occam_service_rejected_rows_total")
        assert rejected['{reason="wrong_type"}'] == 1 and rejected['{reason="unknown_label"}'] == 1
        feedback_counts = metric_values(metrics, "occam_service_feedback_labels_total")
        assert sum(feedback_counts.values()) == 10
        assert metric_values(metrics, "occam_service_log_dropped_records_total") == {"": 0.0}
        if shutil.which("promtool") is None:
            pytest.fail("promtool is needed: apt-get install -y --no-install-recommends prometheus")
        check = subprocess.run(
            ["promtool", "check", "metrics"], input=metrics.encode(), capture_output=True
        )
        assert check.returncode == 0, check.stdout + check.stderr
    assert server.process.returncode == 0

    logs = tmp_path / "logs"
    files = sorted(p.name for p in logs.iterdir())
    assert files and all(segment_key(name) is not None for name in files)
    assert {segment_key(name)[0] for name in files} <= {1, 2}  # type: ignore[index]
    records = read_log(logs)  # after a graceful stop everything is on disk
    logged = {r.id: r for r in records if isinstance(r, PredictionRecord)}
    assert set(logged) == {a["id"] for a in answers}
    marked = logged[answers[30]["id"]]
    assert marked.features == odd
    assert marked.marks["unseen_category"] == ["dest"] and marked.marks["out_of_range"] == [
        "distance"
    ]
    assert [(r.id, r.label) for r in records if isinstance(r, FeedbackRecord)] == labels
    rejections = [(r.reason, r.field) for r in records if isinstance(r, RejectedRecord)]
    assert sorted(rejections) == [("unknown_label", "label"), ("wrong_type", "temp")]


def test_occam_serve_refuses_a_bundle_that_was_not_promoted(
    trained: Any, tmp_path: Path, bad_bundles: BadBundles
) -> None:
    config = serving_config(trained, tmp_path)
    for tag, reason in [
        (bad_bundles.candidate.tag, "stage=candidate"),
        (bad_bundles.tampered.tag, "reference.csv.gz does not match"),
    ]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "occam.cli",
                "serve",
                "--config",
                str(config),
                "--model-tag",
                tag,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "BENTOML_DO_NOT_TRACK": "True"},
        )
        assert result.returncode == 5, result.stderr
        assert reason in " ".join(result.stderr.split())


def test_bentoml_build_packages_the_service_offline(trained: Any) -> None:
    # bentofile.yaml packages the newest `occam-flights` bundle (occam.yaml's model name): make
    # it a copy of the session's bundle, whatever other tests trained under that name before
    source = trained.bundle
    packaged = save_bundle(
        "occam-flights",
        pipeline=source.load_pipeline(),
        metadata=source.metadata,
        reference=source.load_reference(),
        promoted=False,
        extra_files={ONNX_FILE: (source.path / ONNX_FILE).read_bytes()},
        holdout=source.load_holdout(),
    )
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", ".", "--output", "tag"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "True"},
        cwd=ROOT,  # BentoML refuses a build context outside the working directory
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("occam:")
    bento = Path(os.environ["BENTOML_HOME"]) / "bentos" / "occam" / tag.split(":")[1]
    source = {p.relative_to(bento / "src").as_posix() for p in (bento / "src").rglob("*.py")}
    assert {"service/app.py", "service/runtime.py", "occam/bundle.py"} <= source
    assert not any(name.startswith(("training/", "tests/", "monitoring/")) for name in source)
    assert packaged.tag in (bento / "bento.yaml").read_text()

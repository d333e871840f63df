"""Small real bundles for registry and integrity tests: a fitted scikit-learn pipeline saved by
`occam.bundle.save_bundle` into the session's model store, in a second instead of a training."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from occam.bundle import MANIFEST_FILE, ONNX_FILE, Bundle, save_bundle
from occam.metadata import BundleMetadata
from tests.conftest import ROOT, small_config, write_config


def model_name() -> str:
    """A model name no other test uses."""
    return f"occam-test-{uuid.uuid4().hex[:10]}"


def tiny_metadata_json(*, passed: bool = True) -> dict[str, Any]:
    """The smallest ``metadata.json`` content a bundle of one numeric feature `x` and classes
    `a`, `b` can have (every part an Occam of the first version wrote)."""
    quality = {
        "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 10} for c in "ab"},
        "confusion_matrix": {"labels": ["a", "b"], "matrix": [[5, 5], [5, 5]]},
        "brier": 0.5,
    }
    goal = {"metric": "accuracy", "threshold": 0.5}
    return {
        "project": "test",
        "created_at": "2026-01-01T00:00:00+00:00",
        "seed": 0,
        "target": "y",
        "time_column": None,
        "classes": ["a", "b"],
        "positive_label": "b",
        "schema": {
            "features": [
                {
                    "name": "x",
                    "kind": "numeric",
                    "dtype": "number",
                    "nullable": False,
                    "missing_share": 0.0,
                    "minimum": 0.0,
                    "maximum": 19.0,
                }
            ]
        },
        "goals": [goal],
        "gate": {
            "passed": passed,
            "margin": 0.0,
            "baseline_meets_goals": True,
            "goals": [
                {
                    **goal,
                    "baseline": 0.5,
                    "model": 0.5,
                    "ci_low": 0.4,
                    "ci_high": 0.6,
                    "baseline_ci_low": 0.4,
                    "baseline_ci_high": 0.6,
                    "met": passed,
                    "beats_baseline": passed,
                    "passed": passed,
                }
            ],
        },
        "baseline": {"strategy": "prior", **quality},
        "model": {
            **quality,
            "best_params": {},
            "fixed_params": {},
            "cv_score": 0.5,
            "scoring": "accuracy",
            "search": {"rounds": 1, "fits": 1, "round_best_scores": [0.5]},
        },
        "slices": {"metric": "accuracy", "columns": {}, "worst": None},
        "abstain": None,
        "data": {
            "path": "data.csv",
            "fingerprint": "0" * 64,
            "rows": 20,
            "train_rows": 20,
            "test_rows": 0,
            "production_rows": 0,
            "production_start": None,
            "test_strategy": "stratified",
            "train_period": None,
            "test_period": None,
            "missing_share": {},
            "findings": [],
            "dropped_features": [],
        },
        "labels": {"rows": 20, "unknown_rows": 0, "unknown_share": 0.0},
        "inference": {"format": "sklearn", "reason": "a test bundle"},
    }


def tiny_metadata(*, passed: bool = True) -> BundleMetadata:
    """`tiny_metadata_json` as the typed metadata `save_bundle` takes."""
    return BundleMetadata.from_json(tiny_metadata_json(passed=passed))


def make_bundle(name: str, *, promoted: bool, onnx: bool = True) -> Bundle:
    """Save a bundle of `name` (stage production or candidate), signed when a key is set."""
    X = pd.DataFrame({"x": np.arange(20.0)})
    y = np.array(["a", "b"] * 10)
    pipeline = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(X, y)
    return save_bundle(
        name,
        pipeline=pipeline,
        metadata=tiny_metadata(passed=promoted),
        reference=X.assign(proba_a=0.5, proba_b=0.5),
        promoted=promoted,
        extra_files={ONNX_FILE: b"not really onnx"} if onnx else None,
    )


def rewrite_with_hash(bundle: Bundle, filename: str, data: bytes) -> None:
    """Replace a file AND its hash in the manifest: what an attacker with write access does."""
    (bundle.path / filename).write_bytes(data)
    manifest_path = bundle.path / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"][filename] = hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))


def set_label_by_hand(bundle: Bundle, old: str, new: str) -> None:
    """Edit the stage label in BentoML's model.yaml as a person with a text editor would."""
    path = bundle.path / "model.yaml"
    text = path.read_text()
    assert f"stage: {old}" in text
    path.write_text(text.replace(f"stage: {old}", f"stage: {new}"))


def occam(
    tmp: Path, model: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `occam` CLI with a config whose output.model_name is `model`."""
    config = tmp / "occam.yaml"
    if not config.exists():
        write_config(tmp, small_config(tmp, **{"output.model_name": model}))
    return subprocess.run(
        [sys.executable, "-m", "occam.cli", args[0], "--config", str(config), *args[1:]],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def save_old_bundle(name: str, metadata_json: dict[str, Any], *, promoted: bool) -> str:
    """Save a bundle as an older Occam did: `metadata_json` written as it is (whatever this
    Occam's `BundleMetadata` says) with a pipeline, a reference and a manifest of their hashes;
    unsigned (tests that use it run without a signing key). Returns its tag: the caller loads
    it with `get_bundle`, as the service and the monitor do."""
    import io

    import bentoml
    import joblib

    X = pd.DataFrame({"x": np.arange(20.0)})
    pipeline = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(X, ["a", "b"] * 10)
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    reference = io.BytesIO()
    X.assign(proba_a=0.5, proba_b=0.5).to_csv(reference, index=False, compression="gzip")
    files = {
        "pipeline.joblib": buffer.getvalue(),
        "metadata.json": json.dumps(metadata_json, indent=2).encode(),
        "reference.csv.gz": reference.getvalue(),
    }
    manifest = {"sha256": {f: hashlib.sha256(d).hexdigest() for f, d in files.items()}}
    stage = "production" if promoted else "candidate"
    tag = bentoml.Tag.from_taglike(name).make_new_version()
    with bentoml.models.create(tag, labels={"stage": stage}) as model:
        folder = Path(model.path)
        for filename, data in files.items():
            (folder / filename).write_bytes(data)
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return str(tag)

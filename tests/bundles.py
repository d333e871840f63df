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

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from occam.bundle import MANIFEST_FILE, ONNX_FILE, Bundle, save_bundle
from tests.conftest import ROOT, small_config, write_config


def model_name() -> str:
    """A model name no other test uses."""
    return f"occam-test-{uuid.uuid4().hex[:10]}"


def make_bundle(name: str, *, promoted: bool, onnx: bool = True) -> Bundle:
    """Save a bundle of `name` (stage production or candidate), signed when a key is set."""
    X = pd.DataFrame({"x": np.arange(20.0)})
    y = np.array(["a", "b"] * 10)
    pipeline = Pipeline([("model", DummyClassifier(strategy="prior"))]).fit(X, y)
    return save_bundle(
        name,
        pipeline=pipeline,
        metadata={"project": "test", "classes": ["a", "b"], "gate": {"passed": promoted}},
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

"""The model bundle: what training leaves in the BentoML model store for serving and monitoring.

A bundle is one BentoML model (``<name>:<version>``) whose folder holds:

- ``pipeline.joblib``: the fitted scikit-learn Pipeline (preprocessing + forest);
- ``model.onnx`` (optional): the same pipeline converted for ONNX Runtime, checked at training;
- ``metadata.json``: feature schema, classes, goals and results, metrics, fingerprint, seed, ...;
- ``reference.csv.gz``: a sample of training inputs (in time order, with the time column) and
  the model's outputs on them: ``prediction``/``proba_<class>`` out-of-fold (what the model says
  on unseen rows: the drift reference) and ``model_prediction``/``model_proba_<class>`` from the
  fitted model itself (what a served copy must reproduce exactly: the self-test), and ``label``
  (the true label, as str); all probabilities are calibrated;
- ``holdout.csv.gz`` (optional, absent in older bundles): the held-out test period in time order:
  features, the final model's calibrated ``proba_<class>`` and the true ``label``;
- ``manifest.json``: the SHA-256 of every file above, checked before a bundle is served.

The BentoML label ``stage`` is ``production`` only when every training gate passed, else
``candidate``. BentoML writes the folder to a temporary place and moves it into the store when
the ``with`` block ends, so a failed save never leaves a half-written bundle.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from occam.schema import FeatureSchema

PIPELINE_FILE = "pipeline.joblib"
ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.csv.gz"
HOLDOUT_FILE = "holdout.csv.gz"
MANIFEST_FILE = "manifest.json"
STAGE_LABEL = "stage"
PRODUCTION = "production"
CANDIDATE = "candidate"


class BundleError(RuntimeError):
    """A bundle that is missing, not promoted, or whose files do not match their hashes."""


@dataclass(frozen=True)
class Bundle:
    """A bundle found in the model store. Loading the pipeline or reference is explicit."""

    tag: str
    path: Path
    stage: str
    metadata: dict[str, Any]

    @property
    def schema(self) -> FeatureSchema:
        return FeatureSchema.from_dict(self.metadata["schema"])

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]

    @property
    def onnx_path(self) -> Path | None:
        path = self.path / ONNX_FILE
        return path if path.is_file() else None

    def load_pipeline(self) -> Any:
        return joblib.load(self.path / PIPELINE_FILE)

    def load_reference(self) -> pd.DataFrame:
        """Reference inputs plus out-of-fold `prediction`/`proba_<class>` columns and the
        fitted model's own `model_prediction`/`model_proba_<class>` columns."""
        frame = pd.read_csv(self.path / REFERENCE_FILE, keep_default_na=True, dtype={"label": str})
        return frame

    def load_holdout(self) -> pd.DataFrame | None:
        """The held-out test period in time order: features, calibrated `proba_<class>` from
        the final model and the true `label` (str); None for bundles saved without it."""
        path = self.path / HOLDOUT_FILE
        if not path.is_file():
            return None
        return pd.read_csv(path, keep_default_na=True, dtype={"label": str})

    @property
    def feature_importance(self) -> dict[str, float]:
        """Feature name -> permutation importance on held-out rows (mean drop of the first goal
        metric when the feature is shuffled), most important first; empty for bundles saved
        without it."""
        stored = self.metadata.get("feature_importance", {})
        return {k: float(v) for k, v in sorted(stored.items(), key=lambda kv: -float(kv[1]))}

    @property
    def decision_weights(self) -> dict[str, float] | None:
        """Class -> weight that turns calibrated probabilities into the answered label
        (`occam.metrics.predicted_labels`); None: the most likely class (and older bundles)."""
        weights = self.metadata.get("decision_weights")
        return {k: float(v) for k, v in weights.items()} if weights else None

    def verify(self) -> None:
        """Raise `BundleError` naming each file that is missing or whose hash changed."""
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise BundleError(
                f"bundle {self.tag}: {MANIFEST_FILE} is missing; retrain with `occam train`"
            )
        manifest = json.loads(manifest_path.read_text())
        problems = []
        for name, expected in manifest["sha256"].items():
            file = self.path / name
            if not file.is_file():
                problems.append(f"{name} is missing")
            elif _sha256(file.read_bytes()) != expected:
                problems.append(f"{name} does not match its recorded SHA-256")
        if problems:
            raise BundleError(
                f"bundle {self.tag} failed its integrity check: {'; '.join(problems)}; "
                "the files were changed after training: retrain with `occam train`"
            )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_bundle(
    name: str,
    *,
    pipeline: Any,
    metadata: dict[str, Any],
    reference: pd.DataFrame,
    promoted: bool,
    extra_files: dict[str, bytes] | None = None,
    holdout: pd.DataFrame | None = None,
) -> Bundle:
    """Write a new bundle to the BentoML model store (``BENTOML_HOME``) and return it."""
    import bentoml

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer, compress=3)
    files: dict[str, bytes] = {
        PIPELINE_FILE: buffer.getvalue(),
        METADATA_FILE: json.dumps(metadata, indent=2, sort_keys=True, default=str).encode(),
        REFERENCE_FILE: _gzip_csv(reference),
        **(extra_files or {}),
    }
    if holdout is not None:
        files[HOLDOUT_FILE] = _gzip_csv(holdout)
    stage = PRODUCTION if promoted else CANDIDATE
    summary = {
        "project": metadata.get("project", ""),
        "goals_passed": bool(metadata.get("gate", {}).get("passed", False)),
        "created_at": str(metadata.get("created_at", "")),
    }
    with bentoml.models.create(name, labels={STAGE_LABEL: stage}, metadata=summary) as model:
        folder = Path(model.path)
        for filename, data in files.items():
            (folder / filename).write_bytes(data)
        manifest = {"sha256": {f: _sha256(d) for f, d in files.items()}}
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        tag = str(model.tag)
    return get_bundle(tag)


def _gzip_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_csv(buffer, index=False, compression={"method": "gzip", "mtime": 0})
    return buffer.getvalue()


def get_bundle(tag: str) -> Bundle:
    """The bundle with this tag (``name:version``, or ``name`` for the newest of any stage)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise BundleError(f"no model {tag!r} in the model store; run `occam train` first") from None
    folder = Path(model.path)
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file():
        raise BundleError(f"model {model.tag} is not an Occam bundle ({METADATA_FILE} missing)")
    return Bundle(
        tag=str(model.tag),
        path=folder,
        stage=str(model.info.labels.get(STAGE_LABEL, CANDIDATE)),
        metadata=json.loads(metadata_path.read_text()),
    )


def list_bundles(name: str) -> list[Bundle]:
    """All bundles of this model name, newest first."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.models.list(name)
    except NotFound:  # BentoML raises, rather than returning [], for a name it never saw
        return []
    models = [m for m in found if (Path(m.path) / METADATA_FILE).is_file()]
    models.sort(key=lambda m: m.info.creation_time, reverse=True)
    return [get_bundle(str(m.tag)) for m in models]


def latest_production(name: str) -> Bundle | None:
    """The newest bundle of `name` labelled ``stage=production``, or None."""
    for bundle in list_bundles(name):
        if bundle.stage == PRODUCTION:
            return bundle
    return None


def resolve_serving_bundle(name: str, pinned: str | None) -> Bundle:
    """The bundle to serve: the pinned tag, else the newest production one; verified.

    Raises `BundleError` with the reason when none qualifies, when the pinned bundle was not
    promoted, or when its files do not match their hashes.
    """
    if pinned:
        bundle = get_bundle(pinned)
        if bundle.stage != PRODUCTION:
            raise BundleError(
                f"model {bundle.tag} is labelled stage={bundle.stage}: it did not pass the "
                "training gates, so it is not served; pin a promoted tag or retrain"
            )
    else:
        found = latest_production(name)
        if found is None:
            raise BundleError(
                f"no model {name!r} labelled stage=production in the model store; run "
                "`occam train` until a model passes its goals"
            )
        bundle = found
    bundle.verify()
    return bundle

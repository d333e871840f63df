"""The model bundle: what training leaves in the BentoML model store for serving and monitoring.

A bundle is one BentoML model (``<name>:<version>``) whose folder holds:

- ``pipeline.joblib``: the fitted scikit-learn Pipeline (preprocessing + forest);
- ``model.onnx`` (optional): the same pipeline converted for ONNX Runtime, checked at training;
- ``metadata.json``: `BundleMetadata` (`occam.metadata`) as JSON: feature schema, classes, goals
  and results, metrics, fingerprint, seed, ...
- ``reference.csv.gz``: a sample of training inputs (in time order, with the time column) and
  the model's outputs on them: ``prediction``/``proba_<class>`` out-of-fold (what the model says
  on unseen rows: the drift reference) and ``model_prediction``/``model_proba_<class>`` from the
  fitted model itself (what a served copy must reproduce exactly: the self-test), and ``label``
  (the true label, as str); all probabilities are calibrated;
- ``holdout.csv.gz`` (optional, absent in older bundles): the held-out test period in time order:
  features, the final model's calibrated ``proba_<class>`` and the true ``label``;
- ``manifest.json``: the SHA-256 of every file above, checked before a bundle is served.

The BentoML label ``stage`` is ``production`` only when every training gate passed, else
``candidate``; a promotion (`occam.registry`) moves it, and the bundle it replaces becomes
``retired``. BentoML writes the folder to a temporary place and moves it into the store when
the ``with`` block ends, so a failed save never leaves a half-written bundle.

**Loading a scikit-learn pipeline runs code**: ``pipeline.joblib`` is a pickle, and unpickling
executes whatever the file says. So `Bundle.load_pipeline` first checks the manifest (every file
listed, every hash equal, no unlisted file) and, when a signing key is set (`occam.signing`),
the HMAC signature over the manifest, the tag and the stage label (BentoML label
``signature``). A bundle that fails raises `BundleIntegrityError` naming the file, and nothing
of it is unpickled. Without a key the manifest only catches accidents: anyone who can write the
model store can replace a file together with its hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

# `BundleMetadata` is re-exported: `from occam.bundle import BundleMetadata` (its one
# definition, with the sample column names, lives in occam.metadata).
from occam.metadata import LABEL_COLUMN, MetadataError
from occam.metadata import BundleMetadata as BundleMetadata
from occam.schema import FeatureSchema
from occam.signing import SigningKeyError, matches, sign, signing_key

PIPELINE_FILE = "pipeline.joblib"
ONNX_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
REFERENCE_FILE = "reference.csv.gz"
HOLDOUT_FILE = "holdout.csv.gz"
MANIFEST_FILE = "manifest.json"
STAGE_LABEL = "stage"
SIGNATURE_LABEL = "signature"
PRODUCTION = "production"
CANDIDATE = "candidate"
RETIRED = "retired"
#: Every stage label a bundle can carry: at most one bundle of a name is `production`.
STAGES = (PRODUCTION, CANDIDATE, RETIRED)
#: Files of a bundle folder that are not in its manifest: BentoML's own and the manifest.
_UNLISTED = frozenset({"model.yaml", MANIFEST_FILE})
_LABEL_UPDATE_PREFIX = ".model.yaml."
log = logging.getLogger(__name__)


class BundleError(RuntimeError):
    """A bundle that is missing, not promoted, or whose files do not match their hashes."""


class BundleNotFound(BundleError):
    """No bundle qualifies: none of that tag or name, none promoted, or the pinned one is not."""


class BundleIntegrityError(BundleError):
    """A bundle whose manifest, files or signature do not check out; the message names the
    file. Nothing of such a bundle may be loaded."""


class BundleIncompatible(BundleError):
    """A bundle whose ``metadata.json`` this Occam cannot read (saved by a much older or a newer
    version); the message names what is wrong and the command that rebuilds it."""


@dataclass(frozen=True)
class Bundle:
    """A bundle found in the model store. Loading the pipeline or reference is explicit."""

    tag: str
    path: Path
    stage: str
    metadata: BundleMetadata
    #: The BentoML label `signature` (`occam.signing`), None for an unsigned bundle.
    signature: str | None = None

    @property
    def schema(self) -> FeatureSchema:
        return self.metadata.feature_schema

    @property
    def classes(self) -> list[str]:
        return list(self.metadata.classes)

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]

    @property
    def name(self) -> str:
        """The model name (`output.model_name`), the tag without its version."""
        return self.tag.split(":", 1)[0]

    @property
    def onnx_path(self) -> Path | None:
        path = self.path / ONNX_FILE
        return path if path.is_file() else None

    def load_pipeline(self) -> Any:
        """The fitted scikit-learn Pipeline. Unpickling runs code, so the bundle is verified
        first (`verify`): a bundle that fails raises `BundleIntegrityError`, unloaded."""
        self.verify()
        return joblib.load(self.path / PIPELINE_FILE)

    def load_reference(self) -> pd.DataFrame:
        """Reference inputs plus out-of-fold `prediction`/`proba_<class>` columns and the
        fitted model's own `model_prediction`/`model_proba_<class>` columns."""
        frame = pd.read_csv(
            self.path / REFERENCE_FILE, keep_default_na=True, dtype={LABEL_COLUMN: str}
        )
        return frame

    def load_holdout(self) -> pd.DataFrame | None:
        """The held-out test period in time order: features, calibrated `proba_<class>` from
        the final model and the true `label` (str); None for bundles saved without it."""
        path = self.path / HOLDOUT_FILE
        if not path.is_file():
            return None
        return pd.read_csv(path, keep_default_na=True, dtype={LABEL_COLUMN: str})

    @property
    def feature_importance(self) -> dict[str, float]:
        """Feature name -> permutation importance on held-out rows (mean drop of the first goal
        metric when the feature is shuffled), most important first; empty for bundles saved
        without it."""
        stored = self.metadata.feature_importance
        return dict(sorted(stored.items(), key=lambda kv: -kv[1]))

    @property
    def decision_weights(self) -> dict[str, float] | None:
        """Class -> weight that turns calibrated probabilities into the answered label
        (`occam.metrics.predicted_labels`); None: the most likely class (and older bundles)."""
        weights = self.metadata.decision_weights
        return dict(weights) if weights else None

    def verify(self) -> None:
        """Check the signature (when a key is set) and the manifest; raise
        `BundleIntegrityError` naming each file that is missing, changed or unlisted.

        Reads files and hashes them; unpickles nothing.
        """
        manifest = self._manifest_bytes()
        self._check_signature(manifest)
        recorded = _parse_manifest(self.tag, manifest)
        problems = []
        for name, expected in sorted(recorded.items()):
            file = self.path / name
            if not file.is_file():
                problems.append(f"{name} is missing")
            elif _sha256(file.read_bytes()) != expected:
                problems.append(f"{name} does not match its recorded SHA-256")
        for file in sorted(self.path.iterdir()):
            if file.name in recorded or file.name in _UNLISTED or _is_label_update(file.name):
                continue
            problems.append(f"{file.name} is not listed in {MANIFEST_FILE}")
        if problems:
            raise BundleIntegrityError(
                f"bundle {self.tag} failed its integrity check: {'; '.join(problems)}; "
                "the files were changed after training: retrain with `occam train`"
            )

    def _manifest_bytes(self) -> bytes:
        try:
            return (self.path / MANIFEST_FILE).read_bytes()
        except FileNotFoundError:
            raise BundleIntegrityError(
                f"bundle {self.tag}: {self.path / MANIFEST_FILE} is missing; retrain with "
                "`occam train`"
            ) from None
        except OSError as exc:
            raise BundleIntegrityError(
                f"bundle {self.tag}: cannot read {self.path / MANIFEST_FILE}: {exc}"
            ) from None

    def _check_signature(self, manifest: bytes) -> None:
        key = _key()
        if key is None:
            return
        where = f"(label `{SIGNATURE_LABEL}` in {self.path / 'model.yaml'})"
        if not self.signature:
            raise BundleIntegrityError(
                f"bundle {self.tag} is not signed {where} and a signing key is set: it is "
                "refused; retrain with the key set, or unset the key to serve unsigned bundles"
            )
        if not matches(key, self.signature, tag=self.tag, stage=self.stage, manifest=manifest):
            raise BundleIntegrityError(
                f"bundle {self.tag}: its signature {where} does not match {MANIFEST_FILE} and "
                f"stage={self.stage}: the manifest or the stage label was changed without the "
                "key, or it was signed with another key; it is refused"
            )


def _is_label_update(filename: str) -> bool:
    """A `set_stage` temporary file, there for an instant (or left by a crash)."""
    return filename.startswith(_LABEL_UPDATE_PREFIX) and filename.endswith(".tmp")


def _key() -> bytes | None:
    try:
        return signing_key()
    except SigningKeyError as exc:
        raise BundleIntegrityError(str(exc)) from None


def _parse_manifest(tag: str, data: bytes) -> dict[str, str]:
    """The manifest's {file name: SHA-256 hex}; `BundleIntegrityError` on anything else."""
    where = f"bundle {tag}: {MANIFEST_FILE}"
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(
            f"{where} is not valid JSON ({exc}); retrain with `occam train`"
        ) from None
    recorded = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict) or not all(
        isinstance(name, str)
        and isinstance(digest, str)
        and name == os.path.basename(name)
        and name not in ("", ".", "..")
        for name, digest in recorded.items()
    ):
        raise BundleIntegrityError(
            f'{where} is not a manifest: expected {{"sha256": {{file name: hex digest}}}}; '
            "retrain with `occam train`"
        )
    missing = [name for name in (PIPELINE_FILE, METADATA_FILE) if name not in recorded]
    if missing:
        raise BundleIntegrityError(f"{where} does not list {', '.join(missing)}")
    return recorded


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_bundle(
    name: str,
    *,
    pipeline: Any,
    metadata: BundleMetadata,
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
        METADATA_FILE: metadata.to_json(),
        REFERENCE_FILE: _gzip_csv(reference),
        **(extra_files or {}),
    }
    if holdout is not None:
        files[HOLDOUT_FILE] = _gzip_csv(holdout)
    stage = PRODUCTION if promoted else CANDIDATE
    summary = {
        "project": metadata.project,
        "goals_passed": metadata.gate.passed,
        "created_at": metadata.created_at,
    }
    manifest = json.dumps(
        {"sha256": {f: _sha256(d) for f, d in files.items()}}, indent=2, sort_keys=True
    ).encode()
    # The version is drawn here, not by BentoML, so that the signature can cover the tag.
    tag = bentoml.Tag.from_taglike(name).make_new_version()
    labels = _labels(str(tag), stage, manifest, _key())
    with bentoml.models.create(tag, labels=labels, metadata=summary) as model:
        folder = Path(model.path)
        for filename, data in files.items():
            (folder / filename).write_bytes(data)
        (folder / MANIFEST_FILE).write_bytes(manifest)
    return get_bundle(str(tag))


def _labels(tag: str, stage: str, manifest: bytes, key: bytes | None) -> dict[str, str]:
    labels = {STAGE_LABEL: stage}
    if key is not None:
        labels[SIGNATURE_LABEL] = sign(key, tag=tag, stage=stage, manifest=manifest)
    return labels


def set_stage(bundle: Bundle, stage: str, *, check: bool = True) -> Bundle:
    """Relabel `bundle` with `stage` (one of `STAGES`), re-signed when a key is set; return it.

    With `check` the bundle is verified first, so that a tampered bundle is never blessed with a
    fresh signature. Without it (demoting a bundle that may be broken) an unverifiable bundle
    loses its signature, so it can never be served while a key is set. Rewrites ``model.yaml``
    through a temporary file and an atomic rename: every replica reading the store sees the old
    labels or the new ones, never a mix. Callers serialise changes (`occam.registry`).
    """
    import bentoml

    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    key = _key()
    trusted = True
    try:
        bundle.verify()
    except BundleIntegrityError:
        if check:
            raise
        trusted = False
    if key is None and bundle.signature:
        raise BundleIntegrityError(
            f"bundle {bundle.tag} is signed: set the signing key ({_KEY_VARS}) to change its "
            "stage, or its signature would no longer match"
        )
    manifest = (bundle.path / MANIFEST_FILE).read_bytes() if trusted else b""
    labels = _labels(bundle.tag, stage, manifest, key if trusted else None)
    model = bentoml.models.get(bundle.tag)
    others = {k: v for k, v in model.info.labels.items() if k not in (STAGE_LABEL, SIGNATURE_LABEL)}
    _write_model_yaml(model, {**others, **labels})
    return get_bundle(bundle.tag)


_KEY_VARS = "OCCAM_SIGNING_KEY, OCCAM_SIGNING_KEY_FILE or output.signing_key_file"


def _write_model_yaml(model: Any, labels: dict[str, str]) -> None:
    """Replace the labels in BentoML's ``model.yaml``, written by BentoML's own dumper."""
    from bentoml._internal.models.model import ModelInfo

    info = model.info
    new = ModelInfo(  # as `ModelInfo.with_options`, which cannot change labels
        tag=info.tag,
        module=info.module,
        labels=labels,
        options=info.options,
        metadata=info.metadata,
        context=info.context,
        signatures=info.signatures,
        api_version=info.api_version,
        creation_time=info.creation_time,
    )
    target = Path(model.path) / "model.yaml"
    temporary = target.with_name(f"{_LABEL_UPDATE_PREFIX}{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf8") as stream:
        new.dump(stream)
        stream.flush()
        os.fsync(stream.fileno())
    os.replace(temporary, target)


def _gzip_csv(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_csv(buffer, index=False, compression={"method": "gzip", "mtime": 0})
    return buffer.getvalue()


def get_bundle(tag: str) -> Bundle:
    """The bundle with this tag (``name:version``, or ``name`` for the newest of any stage).

    Reads BentoML's ``model.yaml`` and ``metadata.json`` (data only); raises `BundleNotFound`
    when there is no such model, `BundleIntegrityError` naming the file that is unreadable, and
    `BundleIncompatible` (how to rebuild it) when this Occam cannot read its metadata.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.Tag.from_taglike(tag)
    except Exception as exc:  # BentoML's InvalidArgument or ValueError, by version
        raise BundleNotFound(f"{tag!r} is not a model tag (name or name:version): {exc}") from None
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise BundleNotFound(
            f"no model {tag!r} in the model store; run `occam train` first"
        ) from None
    except Exception as exc:  # BentoML, yaml and cattrs each raise their own on a bad model.yaml
        raise BundleIntegrityError(
            f"model {tag}: its model.yaml in the model store cannot be read: {exc}"
        ) from None
    folder = Path(model.path)
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file():
        raise BundleNotFound(f"model {model.tag} is not an Occam bundle ({METADATA_FILE} missing)")
    try:
        raw = json.loads(metadata_path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(
            f"bundle {model.tag}: {metadata_path} is not valid JSON ({exc}); retrain with "
            "`occam train`"
        ) from None
    if not isinstance(raw, dict):
        raise BundleIntegrityError(f"bundle {model.tag}: {metadata_path} is not a JSON object")
    try:
        metadata = BundleMetadata.from_json(raw, f"bundle {model.tag}: {metadata_path}")
    except MetadataError as exc:
        raise BundleIncompatible(str(exc)) from None
    labels = model.info.labels
    return Bundle(
        tag=str(model.tag),
        path=folder,
        stage=str(labels.get(STAGE_LABEL, CANDIDATE)),
        metadata=metadata,
        signature=labels.get(SIGNATURE_LABEL),
    )


def list_bundles(name: str) -> list[Bundle]:
    """All bundles of this model name, newest first; a bundle whose metadata this Occam cannot
    read (`BundleIncompatible`) is left out with a warning that says how to rebuild it."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        found = bentoml.models.list(name)
    except NotFound:  # BentoML raises, rather than returning [], for a name it never saw
        return []
    models = [m for m in found if (Path(m.path) / METADATA_FILE).is_file()]
    models.sort(key=lambda m: m.info.creation_time, reverse=True)
    out = []
    for m in models:
        try:
            out.append(get_bundle(str(m.tag)))
        except BundleIncompatible as exc:
            log.warning("skipping %s: %s", m.tag, exc)
    return out


def latest_production(name: str) -> Bundle | None:
    """The newest bundle of `name` labelled ``stage=production``, or None."""
    for bundle in list_bundles(name):
        if bundle.stage == PRODUCTION:
            return bundle
    return None


def resolve_serving_bundle(name: str, pinned: str | None) -> Bundle:
    """The bundle to serve: the pinned tag, else the newest production one; verified.

    Raises `BundleNotFound` when none qualifies or the pinned bundle is not promoted, and
    `BundleIntegrityError` when its files, manifest or signature do not check out.
    """
    if pinned:
        bundle = get_bundle(pinned)
        if bundle.stage != PRODUCTION:
            raise BundleNotFound(
                f"model {bundle.tag} is labelled stage={bundle.stage}: it did not pass the "
                "training gates, so it is not served; pin a promoted tag or retrain"
            )
    else:
        found = latest_production(name)
        if found is None:
            raise BundleNotFound(
                f"no model {name!r} labelled stage=production in the model store; run "
                "`occam train` until a model passes its goals"
            )
        bundle = found
    bundle.verify()
    return bundle

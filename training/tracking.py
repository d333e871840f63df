"""MLflow tracking: one run per `occam train` and `occam retrain`.

Each run logs the parameters (goals, a `threshold: human` one as the labellers' level measured
at training, baseline, fixed and searched forest parameters, search settings, the retrain
rule), the goal metrics with their bootstrap intervals, the baseline's,
each search round's best cross-validated score (as steps), plots (ROC and precision-recall,
calibration, slices, search path), the model card and metrics JSON, and tags with the data
fingerprint and the BentoML bundle tag. A retrain run adds both models' scores on the gate rows
and the paired intervals of their difference.

The store is `tracking.uri`: a local SQLite file by default (no server, no network); a server's
URL works the same. With `tracking.register_models`, each bundle becomes a version of the registered
model `output.model_name`, with the alias `champion` when it was saved as stage=production and
`challenger` otherwise. The BentoML stage label stays the source of truth (the service follows
it); the aliases mirror it when the run is logged.

Tracking never fails training: any error is logged and returned in `TrackingOutcome`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam.bundle import PRODUCTION, Bundle
from occam.config import OccamConfig
from occam.metadata import LABEL_COLUMN, BundleMetadata, proba_columns

log = logging.getLogger("occam.training.tracking")
CHAMPION = "champion"
CHALLENGER = "challenger"
BUNDLE_TAG = "occam.bundle_tag"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a parameter value


@dataclass(frozen=True)
class EvalRows:
    """True labels and probabilities (columns in `classes` order) the plots are drawn from."""

    labels: np.ndarray
    proba: np.ndarray
    classes: list[str]
    positive: str
    source: str


@dataclass(frozen=True)
class TrackingOutcome:
    """What tracking did: the run id and model version, or the error that stopped it."""

    run_id: str | None
    model_version: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def holdout_rows(bundle: Bundle) -> EvalRows | None:
    """The bundle's held-out test rows with the final model's probabilities
    (`Bundle.load_holdout`, written by bundles that have it), else None."""
    loader = getattr(bundle, "load_holdout", None)
    frame = loader() if loader is not None else None
    if frame is None or LABEL_COLUMN not in frame.columns:
        return None
    classes = bundle.classes
    proba = frame[proba_columns(classes)].to_numpy(dtype=float)
    positive = bundle.metadata.positive_label
    labels = frame[LABEL_COLUMN].astype(str).to_numpy()
    return EvalRows(labels, proba, classes, positive, "held-out")


def _client(config: OccamConfig) -> Any:
    # MLflow reports usage unless told not to; Occam never calls out.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    from mlflow.tracking import MlflowClient

    uri = config.tracking.uri
    if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, config: OccamConfig) -> str:
    name = config.tracking.experiment or config.project
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = config.tracking.artifacts_dir
    if "://" not in config.tracking.uri or config.tracking.uri.startswith("sqlite:"):
        location.mkdir(parents=True, exist_ok=True)
        return str(client.create_experiment(name, artifact_location=location.as_uri()))
    return str(client.create_experiment(name))  # a server decides where artifacts go


def flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    """Dotted keys and string values of a nested mapping (lists as JSON), for parameters."""
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        yield prefix, text[:MAX_PARAM_CHARS]


def run_params(config: OccamConfig, metadata: BundleMetadata, kind: str) -> dict[str, str]:
    """The run's parameters: what was asked (config) and what the search chose.

    Goal thresholds come from the bundle (`metadata.goals`), not the config: a `threshold:
    human` goal is logged as the average labeller's level measured at training (the config
    holds a placeholder 0 for it), and `goals.human` lists the metrics whose goal is human."""
    raw: dict[str, Any] = {
        "kind": kind,
        "seed": config.seed,
        "goals": {g.metric: g.threshold for g in metadata.goals},
        "baseline": config.baseline.model_dump(),
        "model.fixed": config.model.params,
        "model.best": metadata.model.best_params,
        "search": config.search.model_dump(exclude={"space"}),
        "search.space": config.search.space,
        "split": config.data.split.model_dump(),
        "evaluation": config.evaluation.model_dump(include={"bootstrap", "confidence"}),
    }
    human = [g.metric for g in metadata.goals if g.human]
    if human:
        raw["goals.human"] = human
    if kind == "retrain":
        raw["retrain"] = config.retrain.model_dump()
        raw["evaluation.slice_floors"] = config.evaluation.slice_floors
    return dict(flatten("", raw))


def run_metrics(metadata: BundleMetadata, gate: dict[str, Any] | None) -> dict[str, float]:
    """Goal metrics with intervals, the baseline's, and the champion gate's table."""
    out: dict[str, float] = {}
    for goal in metadata.gate.goals:
        m = goal.metric
        out |= {
            f"test.{m}": goal.model,
            f"test.{m}.ci_low": goal.ci_low,
            f"test.{m}.ci_high": goal.ci_high,
            f"baseline.{m}": goal.baseline,
            f"baseline.{m}.ci_low": goal.baseline_ci_low,
            f"baseline.{m}.ci_high": goal.baseline_ci_high,
        }
    out["gate.training_passed"] = float(metadata.gate.passed)
    out["search.best_cv_score"] = metadata.model.cv_score
    out["test.brier"] = metadata.model.brier
    if gate is not None:
        for c in gate["comparisons"]:
            m = c["metric"]
            out |= {
                f"gate.champion.{m}": c["champion"],
                f"gate.challenger.{m}": c["challenger"],
                f"gate.difference.{m}": c["difference"],
                f"gate.difference.{m}.ci_low": c["difference_low"],
                f"gate.difference.{m}.ci_high": c["difference_high"],
            }
        out["gate.rows"] = float(gate["rows"])
        out["gate.passed"] = float(gate["passed"])
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def log_run(
    config: OccamConfig,
    metadata: BundleMetadata,
    card_path: Path,
    bundle: Bundle,
    *,
    kind: str = "train",
    eval_rows: EvalRows | None = None,
    gate: dict[str, Any] | None = None,
) -> TrackingOutcome:
    """Log one run to `tracking.uri` (see the module docstring); never raises.

    `metadata` is what training recorded (`TrainResult.metadata`), `gate` the champion-vs-challenger
    gate (`ChallengerGate.to_dict()`) of a retrain, `eval_rows` what ROC, precision-recall and
    calibration plots are drawn from (the gate rows for a retrain, the held-out rows otherwise).
    """
    if not config.tracking.enabled:
        return TrackingOutcome(None, None, None)
    try:
        return _log_run(config, metadata, card_path, bundle, kind, eval_rows, gate)
    except Exception as exc:  # tracking is a record of training, never a reason to fail it
        log.warning("MLflow tracking failed (%s): %s", config.tracking.uri, exc, exc_info=True)
        return TrackingOutcome(None, None, f"{type(exc).__name__}: {exc}")


def _log_run(
    config: OccamConfig,
    metadata: BundleMetadata,
    card_path: Path,
    bundle: Bundle,
    kind: str,
    eval_rows: EvalRows | None,
    gate: dict[str, Any] | None,
) -> TrackingOutcome:
    from mlflow.entities import Metric, Param, RunTag

    from training import plots

    client = _client(config)
    experiment = _experiment_id(client, config)
    tags = {
        "occam.kind": kind,
        BUNDLE_TAG: bundle.tag,
        "occam.stage": bundle.stage,
        "occam.data_fingerprint": metadata.data.fingerprint,
        "occam.project": config.project,
    }
    if gate is not None:
        tags["occam.champion"] = str(gate["champion"])
    run = client.create_run(experiment, tags=tags, run_name=f"{kind} {bundle.version}")
    run_id = run.info.run_id
    try:
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        params = [Param(k, v) for k, v in run_params(config, metadata, kind).items()]
        metrics = [Metric(k, v, now, 0) for k, v in run_metrics(metadata, gate).items()]
        rounds = metadata.model.search.round_best_scores
        metrics += [
            Metric("search.round_best_score", float(s), now, i) for i, s in enumerate(rounds, 1)
        ]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=params[start : start + 100])
        client.log_batch(run_id, metrics=metrics, tags=[RunTag("occam.plots", "1")])
        client.log_text(run_id, card_path.read_text(), "model_card.md")
        record = {**metadata.to_json_dict(), "tag": bundle.tag, "stage": bundle.stage}
        client.log_dict(run_id, record, "metrics.json")
        if gate is not None:
            client.log_dict(run_id, gate, "champion_gate.json")
        for name, figure in plots.figures(metadata, eval_rows):
            client.log_figure(run_id, figure, f"plots/{name}.png")
            plots.close(figure)
        version = (
            _register(client, config, bundle, run) if config.tracking.register_models else None
        )
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return TrackingOutcome(run_id, version, None)


def _register(client: Any, config: OccamConfig, bundle: Bundle, run: Any) -> str:
    """A registered-model version pointing at the run's bundle note, with the alias that
    mirrors the bundle's BentoML stage."""
    from mlflow.exceptions import MlflowException

    name = config.output.model_name
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Occam bundles; the BentoML stage label is the source of truth"
        )
    with tempfile.TemporaryDirectory() as folder:
        note = Path(folder) / "bundle.json"
        note.write_text(json.dumps({"tag": bundle.tag, "stage": bundle.stage}))
        client.log_artifact(run.info.run_id, str(note), "bundle")
    version = client.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/bundle",
        run_id=run.info.run_id,
        tags={BUNDLE_TAG: bundle.tag, "occam.stage": bundle.stage},
    )
    alias = CHAMPION if bundle.stage == PRODUCTION else CHALLENGER
    client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def mirror_alias(config: OccamConfig, bundle_tag: str, alias: str) -> TrackingOutcome:
    """Point `alias` (champion or challenger) at the registered version of `bundle_tag`: the
    call for `occam promote`/`occam rollback` to keep MLflow in step with the BentoML label.
    Never raises."""
    try:
        client = _client(config)
        name = config.output.model_name
        found = client.search_model_versions(
            f"name = '{name}' and tag.`{BUNDLE_TAG}` = '{bundle_tag}'"
        )
        if not found:
            return TrackingOutcome(None, None, f"no MLflow model version for {bundle_tag}")
        client.set_registered_model_alias(name, alias, found[0].version)
        return TrackingOutcome(found[0].run_id, str(found[0].version), None)
    except Exception as exc:
        log.warning("MLflow alias %s -> %s failed: %s", alias, bundle_tag, exc)
        return TrackingOutcome(None, None, f"{type(exc).__name__}: {exc}")

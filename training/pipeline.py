"""The training story, start to end: data -> checks -> labels -> baseline -> search ->
evaluation -> gate -> bundle and model card."""

from __future__ import annotations

import datetime as dt
import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

from occam.bundle import ONNX_FILE, PRODUCTION, Bundle, save_bundle
from occam.config import OccamConfig
from occam.metadata import (
    LABEL_COLUMN,
    MODEL_PREDICTION_COLUMN,
    PREDICTION_COLUMN,
    AbstainRecord,
    BaselineRecord,
    BundleMetadata,
    ChallengeRecord,
    DataRecord,
    FindingRecord,
    GoalSpec,
    ImportanceMethod,
    InferenceRecord,
    ModelRecord,
    SampleRecord,
    SliceReport,
    StalenessRecord,
    model_proba_column,
    proba_column,
)
from occam.metrics import predicted_labels
from occam.schema import FeatureSchema
from training import calibration, card, checks, evaluate, facts, labels
from training.baseline import make_baseline
from training.data import (
    DataError,
    Split,
    choose_features,
    fingerprint,
    load_frame,
    split_frame,
)
from training.export import export_onnx
from training.importance import permutation_scores
from training.model import FOREST, forest_space, make_pipeline
from training.plots import reliability_png
from training.search import ConvergingSearchCV
from training.staleness import staleness

StageCallback = Callable[[str], None]
RoundCallback = Callable[[int, int, float], None]
#: Called before the bundle is saved with the fitted model, its schema, its training gate and
#: the positive class; a verdict that did not pass keeps the bundle from production.
ChallengeCallback = Callable[
    [Any, FeatureSchema, evaluate.GateResult, str, evaluate.Weights], "Verdict"
]
#: Given the training rows (the frame's own index kept), their sample weights (one per row).
SampleWeights = Callable[[pd.DataFrame], np.ndarray]
PACKAGES = ("scikit-learn", "numpy", "pandas", "bentoml", "skl2onnx", "onnxruntime", "cleanlab")


class Verdict(Protocol):
    """A decision beside the training gate (e.g. `training.challenger.ChallengerGate`)."""

    @property
    def passed(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainResult:
    bundle: Bundle
    gate: evaluate.GateResult
    #: What the bundle records (`Bundle.metadata`); `card_path` renders it, `metrics_path` is
    #: its JSON with the bundle's tag and stage.
    metadata: BundleMetadata
    card_path: Path
    metrics_path: Path

    @property
    def promoted(self) -> bool:
        return self.bundle.stage == PRODUCTION


def _raise_on_errors(report: checks.CheckReport) -> None:
    if report.errors:
        lines = "\n".join(f"  - {finding}" for finding in report.errors)
        raise DataError(f"the data failed {len(report.errors)} check(s):\n{lines}")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def train(
    config: OccamConfig,
    on_stage: StageCallback = lambda message: None,
    on_round: RoundCallback | None = None,
    *,
    frame: pd.DataFrame | None = None,
    challenge: ChallengeCallback | None = None,
    sample_weight: SampleWeights | None = None,
) -> TrainResult:
    """Run the whole pipeline; raise `DataError`/`LabelQualityError` on bad data.

    Saves a bundle whatever the gate says (labelled `production` only when it passed, and the
    `challenge` verdict too when given) so a failed model can still be inspected, and writes
    the model card and metrics JSON into `output.reports_dir`. `frame` replaces the file at
    `data.path`: `occam retrain` passes its retrain set, and a `challenge` that scores the
    fitted model against the champion (`training.retrain`), and a `sample_weight` rule that
    weighs each training row (recent rows more) in the search, the calibration folds and the
    final fit.
    """
    seed = config.seed
    reports_dir = config.output.reports_dir
    reports_dir.mkdir(parents=True, exist_ok=True)
    target = config.data.target

    on_stage(f"loading {config.data.path}")
    raw = load_frame(config.data.path) if frame is None else frame
    features = choose_features(raw, config)
    column_report = checks.check_columns(raw, features, config)
    _raise_on_errors(column_report)

    on_stage("checking labels")
    known, label_report = labels.resolve_labels(raw, config, reports_dir)
    split = split_frame(known, config)
    period = pd.concat([split.train, split.test])

    on_stage("checking data")
    held_out = np.arange(len(period)) >= len(split.train)
    check_report = checks.check_values(period, features, config, held_out)
    check_report.findings[:0] = column_report.findings
    _raise_on_errors(check_report)
    numeric = [c for c in features.numeric if c not in check_report.dropped_features]
    categorical = [c for c in features.categorical if c not in check_report.dropped_features]
    schema = FeatureSchema.from_frame(split.train, numeric, categorical)
    x_train, x_test = schema.coerce(split.train), schema.coerce(split.test)
    y_train = split.train[target].astype(str).to_numpy()
    y_test = split.test[target].astype(str).to_numpy()
    classes = sorted(np.unique(y_train).tolist())
    positive = _positive_label(config, y_train, classes)
    labellers = labels.labeller_scores(period, split.test, config, classes, positive)
    config, human = facts.human_goals(config, labellers)

    on_stage(f"scoring the baseline ({config.baseline.strategy})")
    baseline = make_baseline(config.baseline, seed).fit(x_train, y_train)
    baseline_proba = evaluate.aligned_proba(baseline, x_test, classes)

    on_stage("searching the forest's hyperparameters")
    scoring = config.scoring
    cv = (
        KFold(config.search.cv, shuffle=False)
        if config.data.split.test_strategy == "time"
        else StratifiedKFold(config.search.cv, shuffle=True, random_state=seed)
    )
    folds = list(cv.split(x_train, y_train))
    forest_pipeline = make_pipeline(numeric, categorical, config.model.params, seed)
    search = ConvergingSearchCV(
        forest_pipeline,
        forest_space(config.search.space),
        n_candidates=config.search.n_candidates,
        max_rounds=config.search.max_rounds,
        min_rounds=config.search.min_rounds,
        tol=config.search.tol,
        shrink=config.search.shrink,
        scoring=evaluate.make_scorer(scoring, positive),
        cv=cv,
        n_jobs=config.search.n_jobs,
        random_state=seed,
        progress=on_round,
        refit=False,  # the served model is the calibrated one fitted below
    )
    # Weights reach the forest's fit (and, in the final model, the calibration map's) by the
    # pipeline step's name; the search and cross_val_predict split them with the folds.
    weights_of_rows = None if sample_weight is None else sample_weight(split.train)
    forest_fit = {} if weights_of_rows is None else {f"{FOREST}__sample_weight": weights_of_rows}
    search.fit(x_train, y_train, **forest_fit)
    best = clone(forest_pipeline).set_params(**search.best_params_)

    # Out-of-fold outputs are what the model says on rows it has not seen: the honest basis for
    # the calibration map, the abstain threshold, the label review and the monitor's reference.
    on_stage("calibrating the forest's probabilities on out-of-fold predictions")
    raw_oof = cross_val_predict(
        best,
        x_train,
        y_train,
        cv=cv,
        method="predict_proba",
        n_jobs=config.search.n_jobs,
        params=forest_fit,
    )
    choice = calibration.choose_method(
        raw_oof, y_train, classes, [test for _, test in folds], config.evaluation.calibration
    )
    oof = choice.calibrated_oof
    model = calibration.calibrated_pipeline(best, choice.method, cv)
    final_fit = (
        {} if weights_of_rows is None else {f"{model.steps[-1][0]}__sample_weight": weights_of_rows}
    )
    model.fit(x_train, y_train, **final_fit)
    model_proba = evaluate.aligned_proba(model, x_test, classes)
    weights = calibration.decision_weights(
        model.steps[-1][1].estimator.class_weight, y_train, classes
    )

    on_stage("evaluating on the held-out test set")
    gate_result = evaluate.gate(
        config.goals,
        y_test,
        model_proba,
        baseline_proba,
        classes,
        positive,
        config.baseline.margin,
        config.evaluation.bootstrap,
        config.evaluation.confidence,
        seed,
        weights,
    )
    quality = evaluate.per_class_report(y_test, model_proba, classes, weights)
    baseline_quality = evaluate.per_class_report(y_test, baseline_proba, classes)
    slices = evaluate.slice_report(
        split.test,
        y_test,
        model_proba,
        classes,
        positive,
        config.evaluation.slices,
        config.goals[0].metric,
        config.evaluation.min_slice_rows,
        weights,
    )

    bins = config.evaluation.calibration_bins
    reliability = {
        "calibrated": calibration.reliability(y_test, model_proba, classes, positive, bins),
        "uncalibrated": calibration.reliability(
            y_test, calibration.bare_forest_proba(model, x_test, classes), classes, positive, bins
        ),
    }
    reliability_path = reliability_png(
        {f"{choice.method} calibrated forest": reliability["calibrated"]}
        | {"forest before calibration": reliability["uncalibrated"]},
        reports_dir / "reliability.png",
        f"Reliability on the held-out test set ({len(y_test)} rows)",
    )

    abstain = None
    if config.evaluation.abstain is not None:
        chosen = evaluate.abstain_threshold(
            y_train, oof, classes, config.evaluation.abstain.target_precision, weights
        )
        abstain = {
            **chosen,
            "label": config.evaluation.abstain.label,
            "target_precision": config.evaluation.abstain.target_precision,
            "chosen_on": "calibrated out-of-fold predictions on the training rows",
            "test": evaluate.abstain_effect(
                y_test, model_proba, classes, chosen["threshold"], weights
            ),
        }
    if config.labels.find_label_issues:
        label_report = _review_label_issues(
            label_report, split.train, y_train, oof, classes, config, reports_dir
        )

    on_stage("converting the forest for fast inference (ONNX) and checking it")
    onnx_bytes, inference = export_onnx(model, schema, x_test)
    on_stage(
        f"serving form: {inference['format']}"
        + (f" ({inference['reason']})" if "reason" in inference else "")
    )

    first_goal = config.goals[0].metric
    on_stage(f"permutation importance of each feature on held-out rows ({first_goal})")
    scores = permutation_scores(
        model,
        x_test,
        y_test,
        first_goal,
        positive,
        weights,
        repeats=config.evaluation.importance_repeats,
        max_rows=config.evaluation.importance_rows,
        seed=seed,
        n_jobs=config.search.n_jobs,
    )
    importance = {name: value.mean for name, value in scores.items()}
    facts.warn_useless(check_report, scores, first_goal)
    dated = split.axis is not None and split.axis.is_datetime
    stale = staleness(
        split.test_times if dated else None,
        split.train_times.max() if dated and split.train_times is not None else None,
        y_test,
        model_proba,
        classes,
        positive,
        config.goals,
        config.evaluation.staleness_chunks,
        weights,
    )

    verdict = (
        None if challenge is None else challenge(model, schema, gate_result, positive, weights)
    )
    on_stage("saving the bundle")
    reference = _reference_sample(
        split.train.assign(**_stored_times(split, "train")),
        x_train,
        y_train,
        oof,
        model,
        schema,
        classes,
        weights,
        config,
    )
    holdout = _holdout_sample(split, y_test, model_proba, schema, classes, config)
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    metadata = BundleMetadata(
        project=config.project,
        created_at=created,
        seed=seed,
        target=target,
        time_column=config.data.time_column,
        classes=tuple(classes),
        positive_label=positive,
        feature_schema=schema,
        goals=tuple(
            GoalSpec(metric=g.metric, threshold=float(g.threshold), human=g.human)
            for g in config.goals
        ),
        gate=gate_result,
        baseline=BaselineRecord.model_validate(
            {"strategy": config.baseline.strategy, **baseline_quality}
        ),
        model=ModelRecord.model_validate(
            {
                **quality,
                "calibration": {
                    **choice.to_dict(),
                    "brier_test": quality["brier"],  # the Brier gate's scores
                    "brier_test_baseline": baseline_quality["brier"],
                    "ece_test": reliability["calibrated"]["ece"],
                    "ece_test_uncalibrated": reliability["uncalibrated"]["ece"],
                    "reliability": reliability,
                    "plot": str(reliability_path),
                },
                "best_params": {
                    k.removeprefix(f"{FOREST}__"): v for k, v in search.best_params_.items()
                },
                "fixed_params": config.model.params,
                "cv_score": float(search.best_score_),
                "scoring": scoring,
                "search": {
                    "rounds": int(search.n_rounds_),
                    "fits": int(len(search.cv_results_["params"]) * config.search.cv),
                    "round_best_scores": [float(s) for s in search.round_best_scores_],
                },
            }
        ),
        slices=SliceReport.model_validate(slices),
        abstain=None if abstain is None else AbstainRecord.model_validate(abstain),
        data=DataRecord(
            path=str(config.data.path),
            fingerprint=fingerprint(raw),
            rows=len(raw),
            train_rows=len(split.train),
            test_rows=len(split.test),
            production_rows=len(split.production),
            production_start=_text(config.data.split.production_start),
            test_strategy=config.data.split.test_strategy,
            train_period=_pair(split.period("train")),
            test_period=_pair(split.period("test")),
            missing_share=checks.missing_rows_summary(period[features.names]),
            findings=tuple(FindingRecord.model_validate(asdict(f)) for f in check_report.findings),
            dropped_features=tuple(check_report.dropped_features),
        ),
        labels=label_report,
        inference=InferenceRecord.model_validate(inference),
        reference=SampleRecord(
            rows=len(reference), outputs="out-of-fold (cross_val_predict), calibrated fold by fold"
        ),
        holdout=SampleRecord(rows=len(holdout), outputs="final calibrated model"),
        feature_importance=importance,
        decision_weights=weights,
        feature_importance_method=ImportanceMethod(
            metric=first_goal,
            rows=min(len(x_test), config.evaluation.importance_rows),
            repeats=config.evaluation.importance_repeats,
            on="held-out test rows",
        ),
        staleness=StalenessRecord.model_validate(stale),
        monitoring=config.monitoring,
        packages=package_versions(),
        challenge=None if verdict is None else ChallengeRecord.model_validate(verdict.to_dict()),
    )
    bundle = save_bundle(
        config.output.model_name,
        pipeline=model,
        metadata=metadata,
        reference=reference,
        promoted=gate_result.passed and (verdict is None or verdict.passed),
        extra_files={ONNX_FILE: onnx_bytes} if onnx_bytes is not None else None,
        holdout=holdout,
    )
    card_path = reports_dir / "model_card.md"
    # Facts for the reader (card, metrics.json) that nothing downstream reads from the bundle.
    read = facts.reader_facts(config, split, schema, check_report, scores, labellers, human)
    card_path.write_text(card.render(metadata, tag=bundle.tag, stage=bundle.stage, facts=read))
    metrics_path = reports_dir / "metrics.json"
    metrics_path.write_text(
        json.dumps(
            {**metadata.to_json_dict(), "tag": bundle.tag, "stage": bundle.stage, **read},
            indent=2,
            default=str,
        )
    )
    return TrainResult(bundle, gate_result, metadata, card_path, metrics_path)


def _positive_label(config: OccamConfig, y: np.ndarray, classes: list[str]) -> str:
    if config.goals_positive_label is not None:
        if config.goals_positive_label not in classes:
            raise DataError(
                f"goals_positive_label={config.goals_positive_label!r} is not a class of "
                f"`{config.data.target}`; classes are {classes}"
            )
        return config.goals_positive_label
    values, counts = np.unique(y, return_counts=True)
    return str(values[np.argmin(counts)])  # the rarer class is usually the one that matters


def _reference_sample(
    train: pd.DataFrame,
    x_train: pd.DataFrame,
    y_train: np.ndarray,
    oof: np.ndarray,
    model: Any,
    schema: FeatureSchema,
    classes: list[str],
    weights: dict[str, float] | None,
    config: OccamConfig,
) -> pd.DataFrame:
    """A random sample of training inputs, kept in time order, with the model's calibrated
    out-of-fold outputs on them (a forest's in-sample outputs are overconfident, so live
    confidence would look drifted against them) and their true `label`. `model_prediction` and
    `model_proba_<class>` are the fitted model's own outputs on the same rows: what a served copy
    must reproduce exactly."""
    n = min(config.output.reference_rows, len(train))
    positions = np.sort(np.random.default_rng(config.seed).choice(len(train), n, replace=False))
    sample = train.iloc[positions]
    proba = oof[positions]
    out = sample[schema.names].copy()
    if config.data.time_column:
        out.insert(0, config.data.time_column, sample[config.data.time_column].to_numpy())
    out[PREDICTION_COLUMN] = predicted_labels(proba, classes, weights)
    for i, c in enumerate(classes):
        out[proba_column(c)] = proba[:, i]
    own = evaluate.aligned_proba(model, x_train.iloc[positions], classes)
    out[MODEL_PREDICTION_COLUMN] = predicted_labels(own, classes, weights)
    for i, c in enumerate(classes):
        out[model_proba_column(c)] = own[:, i]
    out[LABEL_COLUMN] = np.asarray(y_train)[positions]
    return out.reset_index(drop=True)


def _holdout_sample(
    split: Split,
    y_test: np.ndarray,
    proba: np.ndarray,
    schema: FeatureSchema,
    classes: list[str],
    config: OccamConfig,
) -> pd.DataFrame:
    """The held-out test period in time order: inputs (with the time column), the final
    calibrated model's `proba_<class>` and the true `label`: what the monitor calibrates its
    label-free estimates and their bands on."""
    test = split.test.assign(**_stored_times(split, "test"))
    out = test[schema.names].copy()
    time_column = config.data.time_column
    if time_column:
        out.insert(0, time_column, test[time_column].to_numpy())
    for i, c in enumerate(classes):
        out[proba_column(c)] = proba[:, i]
    out[LABEL_COLUMN] = np.asarray(y_test).astype(str)
    if split.test_times is not None:
        order = np.argsort(split.test_times.to_numpy(), kind="stable")
        out = out.iloc[order]
    return out.reset_index(drop=True)


def _stored_times(split: Split, part: str) -> dict[str, Any]:
    """The time column as the bundle's samples store it: years and Unix times become ISO
    datetimes (what every reader's `pd.to_datetime` parses right, never as nanoseconds); dates
    and period numbers stay as they are."""
    axis, times = split.axis, getattr(split, f"{part}_times")
    if axis is None or times is None or axis.format in ("datetime", "period"):
        return {}
    return {axis.column: times.dt.strftime("%Y-%m-%dT%H:%M:%S").to_numpy()}


def _text(value: object) -> str | None:
    """A split point as recorded in the bundle (a string, as before numbers were allowed)."""
    return None if value is None else str(value)


def _pair(period: list[str] | None) -> tuple[str, str] | None:
    return None if period is None else (period[0], period[1])


def _review_label_issues(
    report: labels.LabelReport,
    train: pd.DataFrame,
    y: np.ndarray,
    oof: np.ndarray,
    classes: list[str],
    config: OccamConfig,
    reports_dir: Path,
) -> labels.LabelReport:
    found = labels.find_label_issues(pd.Series(y), oof, classes)
    if found.empty:
        return report
    positions = found.iloc[: config.labels.max_review_rows]
    rows = train.iloc[positions.to_numpy()].copy()
    for i, c in enumerate(classes):
        rows[f"oof_proba_{c}"] = oof[positions.to_numpy(), i]
    path = reports_dir / "label_issues.csv"
    rows.to_csv(path, index_label="row")
    return report.model_copy(update={"label_issue_rows": len(found), "label_issue_file": str(path)})

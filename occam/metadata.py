"""The bundle's metadata: one typed, frozen definition of what training records in a bundle.

Training builds a `BundleMetadata`; the bundle stores it as ``metadata.json`` (`to_json`) and
`occam.bundle.get_bundle` reads it back (`from_json`); the model card, the service, the sidecar,
the demo and the retrain loop read its attributes. The JSON layout is the one bundles have
always had, so a bundle saved by an older Occam loads: parts added later (calibration, Brier
gate, feature importance, decision weights, staleness, samples, challenger verdict) are optional
and None (or empty) there. A file that lacks what serving needs, or was written by a newer
Occam, raises `MetadataError` with the command that rebuilds the bundle.

The column names of the bundle's reference and holdout samples are defined here too
(`proba_column`, `LABEL_COLUMN`, ...): training writes them, the service and the monitor read
them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    computed_field,
    field_validator,
    model_validator,
)

from occam.config import MonitoringConfig
from occam.schema import FeatureSchema

#: Written into every new ``metadata.json``; files without it are version 0 (older Occam).
METADATA_VERSION = 1
#: The command that rebuilds a bundle whose metadata cannot be read.
REBUILD = "occam train --config occam.yaml"

# Column names of the reference (`Bundle.load_reference`) and holdout (`Bundle.load_holdout`)
# samples, besides the feature columns (and the time column, first, when the config has one).
#: The true label, as str.
LABEL_COLUMN = "label"
#: The answered label from the out-of-fold probabilities (reference sample).
PREDICTION_COLUMN = "prediction"
#: The answered label from the fitted model's own probabilities (reference sample).
MODEL_PREDICTION_COLUMN = "model_prediction"
_PROBA, _MODEL_PROBA = "proba_", "model_proba_"


def proba_column(label: str) -> str:
    """The column of the calibrated probability of class `label` (out-of-fold in the
    reference sample, from the final model in the holdout sample)."""
    return f"{_PROBA}{label}"


def model_proba_column(label: str) -> str:
    """The reference sample's column of the fitted model's own probability of `label`: what a
    served copy of the model must reproduce exactly."""
    return f"{_MODEL_PROBA}{label}"


def proba_columns(classes: Iterable[str], *, own: bool = False) -> list[str]:
    """The probability columns of `classes`, in order (`own`: the fitted model's own ones)."""
    name = model_proba_column if own else proba_column
    return [name(c) for c in classes]


class MetadataError(ValueError):
    """A ``metadata.json`` that this Occam cannot read; the message says how to rebuild."""


class Record(BaseModel):
    """A frozen part of the metadata. Unknown keys are ignored so that a newer bundle's extra
    parts do not stop an older reader."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class GoalSpec(Record):
    """A goal as configured: the metric (`occam.metrics.GOAL_METRICS`) must reach
    `threshold` (for a `threshold: human` goal, the average labeller's level measured at
    training, and `human` is true)."""

    metric: str
    threshold: float
    human: bool = False


class GoalResult(Record):
    """One goal on the held-out rows (`training.evaluate.gate`): model and baseline scores with
    their bootstrap intervals; `passed` = `met` (score >= threshold) and `beats_baseline` (by
    the margin). Computed parts (`passed`, ...) are written to the JSON and recomputed when
    read."""

    metric: str
    threshold: float
    baseline: float
    model: float
    ci_low: float
    ci_high: float
    baseline_ci_low: float = float("nan")
    baseline_ci_high: float = float("nan")
    met: bool
    beats_baseline: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.met and self.beats_baseline


class BrierGate(Record):
    """The calibration gate: the model's Brier score on the held-out rows (lower is better)
    must be under the baseline's, or its probabilities are worse risks than the class shares."""

    model: float
    baseline: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.model < self.baseline


class GateRecord(Record):
    """The training gate: every goal met, the baseline beaten by `margin` on every goal, and
    the model's Brier score under the baseline's (no Brier gate in old bundles)."""

    margin: float
    goals: tuple[GoalResult, ...]
    brier: BrierGate | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.goals) and (self.brier is None or self.brier.passed)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def baseline_meets_goals(self) -> bool:
        """The trivial baseline alone meets every goal."""
        return all(g.baseline >= g.threshold for g in self.goals)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as in ``metadata.json``)."""
        return self.model_dump()


class ClassQuality(Record):
    precision: float
    recall: float
    f1: float
    support: int


class ConfusionMatrix(Record):
    """Counts with rows = truth and columns = predicted, both in `labels` order."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[int, ...], ...]


class ReliabilityBin(Record):
    bin: int
    rows: int
    predicted: float
    observed: float


class Reliability(Record):
    """A reliability curve: mean predicted probability vs observed frequency per bin of
    `kind` (P(positive), or the top-class probability), and its expected calibration error."""

    kind: str
    bins: int
    ece: float
    curve: tuple[ReliabilityBin, ...]


class ReliabilityPair(Record):
    calibrated: Reliability
    uncalibrated: Reliability


class CalibrationRecord(Record):
    """The calibration method chosen on out-of-fold Brier scores, and its effect on the
    held-out rows; `plot` is the reliability picture's path."""

    method: str
    oof_brier: dict[str, float]
    oof_brier_uncalibrated: float
    chosen_on: str
    brier_test: float
    brier_test_baseline: float
    ece_test: float
    ece_test_uncalibrated: float
    reliability: ReliabilityPair
    plot: str


class SearchRecord(Record):
    rounds: int
    fits: int
    round_best_scores: tuple[float, ...]


class BaselineRecord(Record):
    """The baseline's quality on the held-out rows."""

    strategy: str
    per_class: dict[str, ClassQuality]
    confusion_matrix: ConfusionMatrix
    brier: float


class ModelRecord(Record):
    """The model's quality on the held-out rows and how it was found."""

    per_class: dict[str, ClassQuality]
    confusion_matrix: ConfusionMatrix
    brier: float
    calibration: CalibrationRecord | None = None
    best_params: dict[str, Any]
    fixed_params: dict[str, Any]
    cv_score: float
    scoring: str
    search: SearchRecord


class SliceRow(Record):
    """One value of a slice column: its rows, the slice metric's `score` and accuracy."""

    value: str
    rows: int
    score: float
    accuracy: float


class WorstSlice(Record):
    column: str
    value: str
    rows: int
    score: float


class SliceReport(Record):
    """`metric` per value of each slice column (values with enough rows, worst first)."""

    metric: str
    columns: dict[str, tuple[SliceRow, ...]]
    worst: WorstSlice | None = None

    @model_validator(mode="before")
    @classmethod
    def _scores_keyed_by_metric(cls, raw: Any) -> Any:
        """The stored rows carry the score under the metric's name (e.g. ``roc_auc``)."""
        if not isinstance(raw, Mapping) or "metric" not in raw:
            return raw
        metric = raw["metric"]

        def row(item: Any) -> Any:
            if isinstance(item, Mapping) and "score" not in item and metric in item:
                return {**item, "score": item[metric]}
            return item

        columns = {k: [row(r) for r in v] for k, v in dict(raw.get("columns") or {}).items()}
        return {**raw, "columns": columns, "worst": row(raw.get("worst"))}

    def to_json_dict(self) -> dict[str, Any]:
        def row(item: SliceRow | WorstSlice) -> dict[str, Any]:
            out = item.model_dump()
            out[self.metric] = out.pop("score")
            return out

        return {
            "metric": self.metric,
            "columns": {k: [row(r) for r in v] for k, v in self.columns.items()},
            "worst": None if self.worst is None else row(self.worst),
        }


class AbstainEffect(Record):
    precision: float
    coverage: float


class AbstainRecord(Record):
    """Rows whose top probability is under `threshold` are answered `label` ("I don't know");
    chosen on `chosen_on` for `target_precision` (`reached` says whether it was)."""

    threshold: float
    precision: float
    coverage: float
    reached: bool
    label: str
    target_precision: float
    chosen_on: str
    test: AbstainEffect


class FindingRecord(Record):
    """One data check result (`training.checks.Finding`)."""

    level: str
    check: str
    column: str | None
    rows: int
    message: str


class DataRecord(Record):
    """What the model was trained and tested on. Periods are [first, last] times, None
    without a time column; `fingerprint` is the SHA-256 of the data as read."""

    path: str
    fingerprint: str
    rows: int
    train_rows: int
    test_rows: int
    production_rows: int
    production_start: Any = None
    test_strategy: str
    train_period: tuple[str, str] | None = None
    test_period: tuple[str, str] | None = None
    missing_share: dict[str, float] = Field(default_factory=dict)
    findings: tuple[FindingRecord, ...] = ()
    dropped_features: tuple[str, ...] = ()


class LabelsRecord(Record):
    """What happened to the labels (`training.labels.resolve_labels`). `kappa` is Fleiss'
    kappa (None with fewer than 2 labellers)."""

    rows: int
    unknown_rows: int
    unknown_share: float
    annotators: tuple[str, ...] = ()
    kappa: float | None = None
    disagreeing_rows: int = 0
    disagreement_file: str | None = None
    label_issue_rows: int = 0
    label_issue_file: str | None = None


class InferenceRecord(Record):
    """The serving form: `onnx` (checked against scikit-learn on `rows_checked` rows) or
    `sklearn`, with the `reason` ONNX is not used."""

    format: str
    reason: str | None = None
    rows_checked: int | None = None
    labels_match: bool | None = None
    max_abs_proba_diff: float | None = None
    tolerance: float | None = None


class SampleRecord(Record):
    """A sample stored in the bundle: its rows and where its probabilities come from."""

    rows: int
    outputs: str


class ImportanceMethod(Record):
    """How `BundleMetadata.feature_importance` was measured."""

    metric: str
    rows: int
    repeats: int
    on: str


class StalenessChunk(Record):
    """One time-ordered chunk of the held-out period: each goal metric on its rows."""

    rows: int
    rows_since_train_end: int
    start: str | None = Field(default=None, alias="from")
    to: str | None = None
    days_since_train_end: float | None = None
    metrics: dict[str, float]


class StalenessRecord(Record):
    """The goal metrics against the time since the end of the training data."""

    train_end: str | None = None
    thresholds: dict[str, float]
    chunks: tuple[StalenessChunk, ...]


class MetricComparisonRecord(Record):
    """One goal metric of the champion-vs-challenger gate (`training.challenger`) on the gate
    rows: scores, difference and its paired interval."""

    metric: str
    threshold: float
    champion: float
    challenger: float
    difference: float
    difference_low: float
    difference_high: float
    meets_goal: bool
    within_tolerance: bool
    interval_ok: bool

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return self.meets_goal and self.within_tolerance and self.interval_ok


class SliceFloorRecord(Record):
    """The challenger's score on one slice of the gate rows against its floor (a NaN score,
    e.g. one class only, does not fail it)."""

    column: str
    value: str
    rows: int
    metric: str
    score: float
    floor: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return bool(math.isnan(self.score) or self.score >= self.floor)


class ChallengeRecord(Record):
    """The decision of the champion-vs-challenger gate of a retrain
    (`training.challenger.ChallengerGate`) and the table behind it; the JSON keeps `passed`
    and the `reasons` (`why_not`) beside the table."""

    champion: str
    challenger: str
    rows: int
    tolerance: float
    require_interval: bool
    confidence: float
    training_gate_passed: bool
    comparisons: tuple[MetricComparisonRecord, ...] = ()
    slices: tuple[SliceFloorRecord, ...] = ()
    #: The gate passed but `retrain.promote` is false: saved stage=candidate for a shadow run.
    held_for_shadow: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return (
            self.training_gate_passed
            and all(c.passed for c in self.comparisons)
            and all(s.passed for s in self.slices)
        )

    def reasons(self) -> list[str]:
        """Why the challenger is not promoted (empty when it is)."""
        out = []
        if not self.training_gate_passed:
            out.append("its own training gate failed (goals or baseline on its held-out rows)")
        for c in self.comparisons:
            if not c.meets_goal:
                out.append(f"{c.metric} {c.challenger:.4f} misses the goal {c.threshold}")
            if not c.within_tolerance:
                out.append(
                    f"{c.metric} {c.challenger:.4f} is more than {self.tolerance} under the "
                    f"champion's {c.champion:.4f}"
                )
            if not c.interval_ok:
                out.append(
                    f"{c.metric}: the interval of the difference starts at "
                    f"{c.difference_low:+.4f}, under -{self.tolerance}"
                )
        for s in self.slices:
            if not s.passed:
                out.append(
                    f"slice {s.column}={s.value} ({s.rows} rows) scores {s.metric} "
                    f"{s.score:.4f}, under its floor {s.floor}"
                )
        return out

    @computed_field(alias="reasons")  # type: ignore[prop-decorator]
    @property
    def why_not(self) -> list[str]:
        return self.reasons()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (as in ``metadata.json``)."""
        return self.model_dump(by_alias=True)


def _schema_in(raw: Any) -> Any:
    return FeatureSchema.from_dict(dict(raw)) if isinstance(raw, Mapping) else raw


def _monitoring_in(raw: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """The config's monitoring section as it was at training. Keys this Occam's
    `MonitoringConfig` does not know, or whose values it no longer accepts, take their
    defaults; None when it still cannot read it (only the model card uses it)."""
    if not isinstance(raw, Mapping):
        return handler(raw)
    known = {k: v for k, v in raw.items() if k in MonitoringConfig.model_fields}
    for _ in range(3):
        try:
            return handler(known)
        except ValidationError as exc:
            for error in exc.errors():
                known.pop(str(error["loc"][0]) if error["loc"] else "", None)
    return None


Schema = Annotated[
    FeatureSchema, BeforeValidator(_schema_in), PlainSerializer(lambda s: s.to_dict())
]
Monitoring = Annotated[MonitoringConfig | None, WrapValidator(_monitoring_in)]


class BundleMetadata(Record):
    """Everything training records about a bundle (``metadata.json``).

    `feature_schema` is stored under the key ``schema``; probabilities are calibrated;
    `feature_importance` maps feature -> permutation importance on held-out rows (mean drop of
    the first goal metric); `decision_weights` maps class -> weight that turns calibrated
    probabilities into the answered label (`occam.metrics.predicted_labels`), None: the most
    likely class.
    """

    metadata_version: int = 0
    project: str
    created_at: str
    seed: int
    target: str
    time_column: str | None = None
    classes: tuple[str, ...]
    positive_label: str
    feature_schema: Schema = Field(validation_alias=AliasChoices("schema", "feature_schema"))
    goals: tuple[GoalSpec, ...]
    gate: GateRecord
    baseline: BaselineRecord
    model: ModelRecord
    slices: SliceReport
    abstain: AbstainRecord | None = None
    data: DataRecord
    labels: LabelsRecord
    inference: InferenceRecord
    reference: SampleRecord | None = None
    holdout: SampleRecord | None = None
    feature_importance: dict[str, float] = Field(default_factory=dict)
    feature_importance_method: ImportanceMethod | None = None
    decision_weights: dict[str, float] | None = None
    staleness: StalenessRecord | None = None
    monitoring: Monitoring = None
    packages: dict[str, str] = Field(default_factory=dict)
    challenge: ChallengeRecord | None = None

    @field_validator("decision_weights", mode="before")
    @classmethod
    def _no_weights(cls, raw: Any) -> Any:
        return raw or None  # older bundles wrote {} for "most likely class"

    @property
    def created(self) -> dt.datetime | None:
        """`created_at` as an aware datetime (UTC when it names no zone), None if unreadable."""
        try:
            stamp = dt.datetime.fromisoformat(self.created_at)
        except ValueError:
            return None
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)

    @property
    def goal_thresholds(self) -> dict[str, float]:
        """Goal metric -> threshold, in the configured order."""
        return {g.metric: g.threshold for g in self.goals}

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form (the layout of ``metadata.json``), with plain Python values."""
        out = self.model_dump(by_alias=True, exclude={"feature_schema", "slices"})
        out["schema"] = self.feature_schema.to_dict()
        out["slices"] = self.slices.to_json_dict()
        out["metadata_version"] = METADATA_VERSION
        result: dict[str, Any] = json.loads(json.dumps(out, default=_plain))
        return result

    def to_json(self) -> bytes:
        """The bytes of ``metadata.json``."""
        return json.dumps(self.to_json_dict(), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(
        cls, raw: bytes | Mapping[str, Any], where: str = "metadata.json"
    ) -> BundleMetadata:
        """Read ``metadata.json`` (its bytes, or the parsed object); `MetadataError` names
        `where`, what is wrong and how to rebuild the bundle."""
        try:
            data = json.loads(raw) if isinstance(raw, bytes | bytearray) else raw
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(
                f"{where} is not valid JSON ({exc}); rebuild with `{REBUILD}`"
            ) from None
        if not isinstance(data, Mapping):
            raise MetadataError(f"{where} is not a JSON object; rebuild with `{REBUILD}`")
        version = data.get("metadata_version", 0)
        if isinstance(version, int) and version > METADATA_VERSION:
            raise MetadataError(
                f"{where} has metadata_version {version}, newer than this Occam reads "
                f"({METADATA_VERSION}): upgrade Occam, or rebuild with `{REBUILD}`"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            raise MetadataError(
                f"{where} was saved by an older or different Occam and cannot be read "
                f"({problems}): rebuild the bundle with `{REBUILD}` (or `occam retrain`)"
            ) from None


def _plain(value: Any) -> Any:
    """JSON form of values pydantic leaves as they are (numpy scalars, paths)."""
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    return str(value)

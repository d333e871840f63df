"""The project config (`occam.yaml`) as one typed, strict model.

Every section forbids unknown keys so that a misspelled key is an error, not a silent default.
`load_config` turns pydantic's errors into `ConfigError` messages that name the key, what arrived
and what is allowed. Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from occam.metrics import get_metric
from occam.schema import canonical_text
from occam.timecol import SplitValue, TimeFormat, check_split_value


def _registered_metric(name: str) -> str:
    """A goal metric name from `occam.metrics.GOAL_METRICS`; the error lists every name."""
    return get_metric(name).name


#: A goal metric name, checked against the registry (all metrics are "higher is better").
MetricName = Annotated[str, AfterValidator(_registered_metric)]


def _label_text(value: object) -> object:
    """A label written as a YAML number or boolean (`1`, `true`) -> its text form, as the target
    column's values are coerced (`occam.schema.canonical_text`); other types fail later."""
    if isinstance(value, (bool, int, float)):
        text = canonical_text(value)
        if text is None:
            raise ValueError("a label cannot be missing (NaN); write the label's value")
        return text
    return value


#: A class label: a string, or a YAML number/boolean read as its canonical text (1 -> "1").
LabelText = Annotated[str, BeforeValidator(_label_text)]


def _split_value(value: object) -> object:
    return None if value is None else check_split_value(value)


#: A split point: a date string, a number in the time column's units, or "last 30%".
SplitPoint = Annotated[SplitValue | None, BeforeValidator(_split_value)]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names each bad key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """How rows are split in time: training period, its held-out test part, production period."""

    production_start: SplitPoint = Field(
        default=None,
        description="Rows whose time is >= this form the production period: never trained on, "
        "replayed through the service later. A date ('2015-06-01'), a number in the time "
        "column's units (a year 2015, a period 120, Unix seconds), or a share of the latest "
        "rows ('last 30%'). None: no production period.",
    )
    test_start: SplitPoint = Field(
        default=None,
        description="Rows of the training period whose time is >= this are the held-out test "
        "rows (instead of `test_size`); same forms as production_start, a share counting the "
        "rows before production_start. Needs test_strategy 'time'.",
    )
    test_size: float = Field(default=0.2, gt=0, lt=0.5)
    test_strategy: Literal["time", "random"] = Field(
        default="time",
        description="'time' holds out the last rows of the training period (honest for "
        "time-ordered data); 'random' a stratified random share.",
    )

    @model_validator(mode="after")
    def _test_start_needs_time(self) -> SplitConfig:
        if self.test_start is not None and self.test_strategy != "time":
            raise ValueError(
                "test_start cuts the test rows by time; remove test_start or set "
                "test_strategy: time"
            )
        return self


class DataConfig(_Strict):
    path: Path
    target: str
    time_column: str | None = None
    time_format: TimeFormat = Field(
        default="auto",
        description="How `time_column` is read: 'auto' detects it; 'datetime' (ISO dates or "
        "datetimes), 'year' (integer years), 'period' (integer or float period index), "
        "'unix_s' / 'unix_ms' (Unix seconds / milliseconds). Never read as nanoseconds",
    )
    numeric: list[str] | None = Field(
        default=None, description="Numeric features; inferred from dtypes when both lists are None"
    )
    categorical: list[str] | None = None
    exclude: list[str] = Field(default_factory=list, description="Columns never used as features")
    split: SplitConfig = SplitConfig()
    max_missing_share: float = Field(default=0.5, ge=0, le=1)
    warn_missing_share: float = Field(default=0.05, ge=0, le=1)
    leakage_auc: float = Field(
        default=0.98,
        gt=0.5,
        le=1,
        description="One feature alone scoring this ROC AUC on held-out rows is a strong-feature "
        "warning on the card (training stops only for clear leaks: see docs/data.md)",
    )
    allow_strong_features: list[str] = Field(
        default_factory=list,
        description="Features allowed past the strong-feature warning and the leak stop: you "
        "know they are measured before the label is",
    )

    @model_validator(mode="after")
    def _lists_disjoint(self) -> DataConfig:
        listed = {"data.numeric": self.numeric or [], "data.categorical": self.categorical or []}
        for key, names in listed.items():
            both = sorted(set(names) & set(self.exclude))
            if both:
                raise ValueError(
                    f"{both} listed in `{key}` and in `data.exclude`; a feature is either used "
                    "or excluded: remove it from one of the two"
                )
        twice = sorted(set(listed["data.numeric"]) & set(listed["data.categorical"]))
        if twice:
            raise ValueError(
                f"{twice} listed in both `data.numeric` and `data.categorical`; keep each in one"
            )
        for key, names in listed.items():
            own = sorted({self.target, self.time_column or self.target} & set(names))
            if own:
                raise ValueError(
                    f"{own} listed in `{key}` is the target or the time column; remove it there"
                )
        return self


class LabelsConfig(_Strict):
    unknown_values: list[LabelText] = Field(
        default_factory=list,
        description="Target values meaning 'I don't know' (strings or numbers, e.g. -1)",
    )
    max_unknown_share: float = Field(default=0.2, ge=0, le=1)
    annotators: list[str] = Field(
        default_factory=list,
        description="Columns holding one labeller's label each; when given, the target is their "
        "majority vote and ties become the first unknown value",
    )
    find_label_issues: bool = True
    max_review_rows: int = Field(default=500, ge=0)


#: The `threshold` that means "at least as well as the average labeller".
HUMAN = "human"


class Goal(_Strict):
    """A goal: `metric` at least `threshold` on held-out rows.

    `threshold: human` (needs `labels.annotators`) sets `human: true` and a placeholder threshold
    0; training replaces it by the average labeller's score on the held-out rows, so every
    reader of a trained bundle's goals sees a number.
    """

    metric: MetricName = Field(description="A name from occam.metrics.GOAL_METRICS")
    threshold: float = Field(ge=0, le=1)
    human: bool = Field(
        default=False,
        description="Set by `threshold: human`: the model must do at least as well as the "
        "average labeller (the threshold is measured at training)",
    )

    @model_validator(mode="before")
    @classmethod
    def _human_threshold(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and raw.get("threshold") == HUMAN:
            return {**raw, "threshold": 0.0, "human": True}
        return raw


class RuleConfig(_Strict):
    """A one-line baseline: `if <feature> <op> <value> then <then> else <otherwise>`."""

    feature: str
    op: Literal[">", ">=", "<", "<=", "==", "!="]
    value: float | str
    then: str
    otherwise: str


class BaselineConfig(_Strict):
    strategy: Literal["most_frequent", "prior", "stratified", "rule"] = "prior"
    rule: RuleConfig | None = None
    margin: float = Field(
        default=0.02, ge=0, description="The model must beat the baseline by this on every goal"
    )

    @model_validator(mode="after")
    def _rule_given(self) -> BaselineConfig:
        if self.strategy == "rule" and self.rule is None:
            raise ValueError(
                "strategy 'rule' needs a `rule:` mapping (feature, op, value, then, otherwise)"
            )
        return self


class ModelConfig(_Strict):
    params: dict[str, Any] = Field(
        default_factory=lambda: {"n_estimators": 100},
        description="Fixed RandomForestClassifier parameters (not searched)",
    )


class SearchConfig(_Strict):
    space: dict[str, Any] = Field(
        default_factory=lambda: {
            "min_samples_leaf": {"low": 1, "high": 100, "log": True},
            "max_features": {"low": 0.1, "high": 1.0},
        },
        description="RandomForestClassifier parameter -> {low, high, log} range or list of choices",
    )
    n_candidates: int = Field(default=6, ge=1)
    max_rounds: int = Field(default=4, ge=1)
    min_rounds: int = Field(default=2, ge=1)
    tol: float = Field(default=1e-3, ge=0)
    shrink: float = Field(default=0.5, gt=0, lt=1)
    cv: int = Field(default=3, ge=2)
    n_jobs: int = Field(default=1)
    scoring: MetricName | None = Field(default=None, description="Default: the first goal's metric")


class AbstainConfig(_Strict):
    target_precision: float = Field(gt=0, le=1)
    label: str = "unknown"


class EvaluationConfig(_Strict):
    bootstrap: int = Field(default=500, ge=0)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    slices: list[str] = Field(default_factory=list)
    min_slice_rows: int = Field(default=50, ge=1)
    abstain: AbstainConfig | None = None
    calibration: Literal["auto", "sigmoid", "isotonic"] = Field(
        default="auto",
        description="How the forest's probabilities are calibrated on out-of-fold predictions; "
        "'auto' picks the method with the lower cross-validated Brier score",
    )
    calibration_bins: int = Field(
        default=10, ge=2, le=100, description="Equal-width bins of the reliability curve and ECE"
    )
    importance_repeats: int = Field(
        default=3, ge=1, le=50, description="Shuffles per feature for permutation importance"
    )
    importance_rows: int = Field(
        default=5000,
        ge=100,
        description="Held-out rows (at most) used for permutation importance",
    )
    staleness_chunks: int = Field(
        default=5,
        ge=2,
        le=100,
        description="Time-ordered chunks of the held-out period scored to show how fast the "
        "model goes stale",
    )
    slice_floors: dict[MetricName, float] = Field(
        default_factory=dict,
        description="Goal metric -> the least any slice (a value of an `evaluation.slices` "
        "column with at least `min_slice_rows` rows) may score; checked by the retrain gate",
    )

    @field_validator("slice_floors")
    @classmethod
    def _floors_in_range(cls, floors: dict[str, float]) -> dict[str, float]:
        bad = {m: v for m, v in floors.items() if not 0 <= v <= 1}
        if bad:
            raise ValueError(f"each floor must lie in [0, 1], got {bad}")
        return floors


class OutputConfig(_Strict):
    model_name: str = Field(default="occam", pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    reports_dir: Path = Path("reports")
    reference_rows: int = Field(default=5000, ge=100)
    signing_key_file: Path | None = Field(
        default=None,
        description="File holding the key that signs bundles (HMAC-SHA256, at least 16 bytes); "
        "with a key, unsigned or mis-signed bundles are refused. The environment "
        "(OCCAM_SIGNING_KEY, OCCAM_SIGNING_KEY_FILE) takes precedence",
    )


class AuthConfig(_Strict):
    """API keys (see occam/auth.py and docs/service.md#authentication)."""

    keys_file: Path | None = Field(
        default=None,
        description="JSON-lines file of hashed keys (`occam keys add` writes it); "
        "$OCCAM_API_KEYS_FILE adds another. None and no env: no keys, anonymous calls",
    )
    allow_anonymous: bool = Field(
        default=False,
        description="Let `occam serve` / `occam monitor` listen on a non-loopback address "
        "without keys (only behind something else that authenticates)",
    )
    metrics_scope: bool = Field(
        default=False,
        description="With keys configured, /metrics of the service and of the monitor needs a "
        "key with scope `metrics` (Prometheus then sends it as a bearer token)",
    )


class LimitsConfig(_Strict):
    """Bounds on every part of a request (see docs/service.md#limits)."""

    max_string_chars: int = Field(
        default=256, ge=1, le=1_000_000, description="Longest string value in a request (chars)"
    )
    max_header_bytes: int = Field(
        default=16_384,
        ge=1024,
        le=1_048_576,
        description="Largest request line plus headers; larger requests are refused (400)",
    )
    header_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=300,
        description="A connection that has not sent a request's full headers in this time is "
        "closed",
    )
    body_timeout_seconds: float = Field(
        default=10,
        gt=0,
        le=300,
        description="A request whose body has not fully arrived in this time gets 408",
    )
    feedback_per_second: float = Field(
        default=50,
        gt=0,
        description="Feedback requests per second per API key and worker (token bucket); "
        "beyond it 429 with Retry-After",
    )
    feedback_burst: int = Field(
        default=200, ge=1, description="Feedback requests a key may send at once (bucket size)"
    )
    feedback_ids: int = Field(
        default=200_000,
        ge=1,
        le=10_000_000,
        description="Prediction ids remembered per worker to refuse a second label (409)",
    )


class ServingConfig(_Strict):
    """Serving settings (used by `occam serve` and the service)."""

    max_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    unseen_category: Literal["reject", "accept"] = "accept"
    out_of_range_factor: float = Field(
        default=0.5,
        ge=0,
        description="A number further than this many training ranges outside [min, max] is marked",
    )
    log_dir: Path = Path("logs")
    log_predictions: bool = True
    model_tag: str | None = Field(
        default=None, description="Pin a model tag instead of newest production"
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address `occam serve` listens on; another than loopback needs API keys "
        "(serving.auth)",
    )
    port: int = Field(default=3000, ge=0, le=65535)
    workers: int = Field(
        default=1, ge=1, description="Server processes; one per CPU core serves the most"
    )
    access_log: bool = Field(
        default=False, description="BentoML's per-request access log (costs 5-14% throughput)"
    )
    fast_path: bool = Field(
        default=True,
        description="Answer POST /predict and /feedback with Occam's own ASGI route inside the "
        "BentoML service (the same checks, answers, error bodies, keys, limits and metrics, "
        "without BentoML's IO descriptors); false: through the @bentoml.api endpoints",
    )
    inference: Literal["auto", "sklearn"] = Field(
        default="auto",
        description="'auto' serves the bundle's ONNX form when it has one, else scikit-learn; "
        "'sklearn' always serves the scikit-learn pipeline (the slow reference)",
    )
    log_segment_bytes: int = Field(
        default=64_000_000, ge=1024, description="A log segment past this size is closed"
    )
    log_queue_records: int = Field(
        default=100_000,
        ge=1,
        description="Records waiting for the disk per worker (log_durability 'queue'); beyond "
        "this they are dropped and counted (occam_service_log_dropped_records_total) instead of "
        "slowing requests",
    )
    log_durability: Literal["queue", "write", "fsync"] = Field(
        default="write",
        description="'write': a request's records are written to the log file (write(2)) before "
        "its answer is sent, so a killed worker loses no answered record; 'fsync': also "
        "fdatasync before answering (survives a power cut, costs a disk flush per request); "
        "'queue': written by a background thread every 50 ms (fastest; a killed worker loses "
        "what was queued)",
    )
    log_format: Literal["compact", "json"] = Field(
        default="compact",
        description="Prediction log segment format: 'compact' (a header line naming the "
        "features and classes, then one JSON array per record, about 150 bytes per prediction) "
        "or 'json' (one JSON object per record, about 540 bytes); the monitor and `occam "
        "retrain` read both",
    )
    log_redact: list[str] = Field(
        default_factory=list,
        description="Feature columns kept out of the prediction log: dropped, or replaced by a "
        "keyed hash (see log_redact_mode); the monitor leaves them out of drift checks",
    )
    log_redact_mode: Literal["hash", "drop"] = Field(
        default="hash",
        description="'hash': the value becomes 'hmac-sha256:<hex>' (HMAC-SHA256 with the key of "
        "log_redact_key_file or env OCCAM_LOG_REDACT_KEY), so equal values stay equal; "
        "'drop': the column is left out",
    )
    log_redact_key_file: Path | None = Field(
        default=None,
        description="File holding the redaction key (default: env OCCAM_LOG_REDACT_KEY)",
    )
    reload_interval_seconds: float = Field(
        default=5,
        ge=0,
        le=3600,
        description="How often each worker looks for a newly promoted bundle (the stage label) "
        "and swaps it in without a restart, verified and self-tested first; 0: only on "
        "POST /admin/reload. A pinned serving.model_tag is never swapped",
    )
    shadow_tag: str | None = Field(
        default=None,
        description="A challenger bundle tag (name:version) scored in shadow beside the served "
        "model: logged with its own version and shadow: true, never answered",
    )
    shadow_rows: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Rows the shadow challenger scores before it stops (per worker)",
    )
    auth: AuthConfig = AuthConfig()
    limits: LimitsConfig = LimitsConfig()


class MonitoringConfig(_Strict):
    """Monitoring sidecar settings (used by `occam monitor`); see docs/metrics.md.

    Windows count prediction rows. The sidecar reads `serving.log_dir` (the service's prediction
    log) and keeps its checkpoint in `state_dir`.
    """

    window_rows: int = Field(
        default=1000, ge=10, description="Rows in the drift window: the last N predictions"
    )
    min_window_rows: int = Field(
        default=200, ge=10, description="No drift verdict on a window with fewer rows"
    )
    p_value: float = Field(
        default=0.05, gt=0, lt=1, description="Significance level of the per-feature tests"
    )
    correction: Literal["bonferroni", "fdr"] = Field(
        default="bonferroni", description="Multiple-testing correction across features"
    )
    drift_margin: float = Field(
        default=1.1,
        ge=0.5,
        description="A feature drifts when its effect size exceeds this times its calibrated "
        "level (the largest difference seen between time-ordered chunks of the reference)",
    )
    min_effect_size: float = Field(
        default=0.05, ge=0, le=1, description="Floor of every feature's alarm level"
    )
    calibration_chunk_rows: int | None = Field(
        default=None,
        ge=10,
        description="Reference rows per calibration chunk. Default: the reference rows that span "
        "the same time as one window at the training period's rate of rows",
    )
    drift_exclude: list[str] = Field(
        default_factory=list, description="Features left out of drift checks"
    )
    exclude_calendar_features: bool = Field(
        default=True,
        description="Leave out features that are a function of the time column's weekday, day, "
        "week, month or quarter (they drift in any window shorter than their cycle)",
    )
    drift_share_threshold: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="A window drifts when at least this share of checked features drifted",
    )
    consecutive_windows: int = Field(
        default=2, ge=1, description="Drifting windows in a row before 'model at risk'"
    )
    drift_backend: Literal["alibi", "scipy"] = Field(
        default="alibi",
        description="Per-feature tests: 'alibi' (alibi-detect's TabularDrift, licence BSL 1.1) "
        "or 'scipy' (the same tests in SciPy; the monitor then never imports alibi-detect)",
    )
    band_level: float = Field(
        default=0.9,
        gt=0,
        lt=1,
        description="Two-sided level of the bands exported around the label-free estimates "
        "and the live metrics",
    )
    risk_enter_confidence: float = Field(
        default=0.8,
        gt=0.5,
        lt=1,
        description="A goal is likely missed when the estimate or the live metric lies under "
        "its threshold with at least this probability",
    )
    risk_exit_confidence: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="The evidence clears when every goal is missed with at most this probability",
    )
    risk_enter_windows: int = Field(
        default=1, ge=1, description="Counted windows in a row that must enter a risk reason"
    )
    risk_exit_windows: int = Field(
        default=2,
        ge=1,
        description="Counted windows in a row whose evidence clears before a risk reason (and "
        "its retrain recommendation) ends",
    )
    weighted_drift_threshold: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Importance-weighted drift at which the model is at risk whatever the "
        "estimates say (the explicit extreme level)",
    )
    weighted_drift_exit: float = Field(
        default=0.3, ge=0, le=1, description="Importance-weighted drift under which it clears"
    )
    live_min_labels: int = Field(
        default=200, ge=1, description="Labelled rows needed before live metrics are judged"
    )
    live_window_labels: int = Field(
        default=1000, ge=1, description="Live metrics use the last N labelled predictions"
    )
    feedback_join_rows: int = Field(
        default=100_000,
        ge=1,
        description="Most recent predictions remembered for joining feedback by id",
    )
    max_model_age_days: float = Field(default=90, gt=0)
    check_interval_seconds: float = Field(
        default=15, gt=0, description="Seconds between checks (drift, quality, policy)"
    )
    check_every_rows: int | None = Field(
        default=None,
        ge=1,
        description="New predictions that make a window count for hysteresis and trigger a "
        "check; default window_rows (consecutive windows do not overlap)",
    )
    poll_interval_seconds: float = Field(
        default=0.5, gt=0, description="Pause between log reads when there is nothing new"
    )
    checkpoint_interval_seconds: float = Field(
        default=5, gt=0, description="Seconds between checkpoints (also written on exit)"
    )
    state_dir: Path = Field(
        default=Path("monitor-state"),
        description="Checkpoint folder (relative to the config file). Must not lie inside "
        "serving.log_dir: the service may write there, the monitor trusts its checkpoint",
    )
    log_retention_bytes: int | None = Field(
        default=None,
        ge=1_000_000,
        description="Keep the log folder under this many bytes: the monitor deletes the oldest "
        "segments it has read; if that is not enough, the oldest unread ones too (their "
        "records are counted in occam_log_lost_records_total). None: no size limit",
    )
    log_retention_hours: float | None = Field(
        default=None,
        gt=0,
        description="Delete log segments last written more than this long ago, read or not "
        "(unread records counted as lost), and forget window and feedback rows as old. None: "
        "no age limit",
    )
    feedback_shift_threshold: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Alarm level on occam_feedback_label_shift: the total variation distance "
        "between the label mix of recent feedback and the mix its predictions expected",
    )
    retrain_command: list[str] | None = Field(
        default=None,
        description="Run once per new retrain recommendation (argv list; environment gets "
        "OCCAM_RETRAIN_REASONS and OCCAM_MODEL_VERSION)",
    )
    retrain_command_timeout_seconds: float = Field(
        default=3600,
        gt=0,
        le=86400,
        description="A retrain_command still running after this long is killed and counted "
        'failed (occam_retrain_runs_total{outcome="failed"})',
    )
    retrain_webhook: str | None = Field(
        default=None,
        max_length=2048,
        description="POST the recommendation as JSON to this http(s) URL",
    )
    retrain_webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=300, description="Time limit of one webhook attempt (seconds)"
    )
    retrain_webhook_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Attempts after the first on a connection error, timeout, 408, 429 or 5xx",
    )
    retrain_webhook_backoff_seconds: float = Field(
        default=1,
        ge=0,
        le=60,
        description="Pause before the first retry; doubled before each next one (at most 60 s)",
    )
    retrain_cooldown_hours: float = Field(
        default=24, ge=0, description="Least time between two retrain notifications"
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address of the metrics endpoint; another than loopback needs API keys "
        "(serving.auth)",
    )
    port: int = Field(default=9108, ge=0, le=65535)

    @field_validator("retrain_webhook")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL with a host (e.g. "
                "https://hooks.example.com/occam); other schemes are refused"
            )
        return url

    @model_validator(mode="after")
    def _window_sizes(self) -> MonitoringConfig:
        if self.min_window_rows > self.window_rows:
            raise ValueError(
                f"min_window_rows ({self.min_window_rows}) must not exceed window_rows "
                f"({self.window_rows})"
            )
        if self.risk_exit_confidence >= self.risk_enter_confidence:
            raise ValueError(
                f"risk_exit_confidence ({self.risk_exit_confidence}) must be under "
                f"risk_enter_confidence ({self.risk_enter_confidence}): the exit level lies "
                "below the enter level"
            )
        if self.weighted_drift_exit >= self.weighted_drift_threshold:
            raise ValueError(
                f"weighted_drift_exit ({self.weighted_drift_exit}) must be under "
                f"weighted_drift_threshold ({self.weighted_drift_threshold})"
            )
        return self

    @property
    def every_rows(self) -> int:
        """New predictions that make a window count for hysteresis: `check_every_rows`, else
        `window_rows`."""
        return self.check_every_rows or self.window_rows


class RetrainConfig(_Strict):
    """`occam retrain`: the challenger's training set and the champion-vs-challenger gate.

    The training set is the original data's training period under the `original` rule plus the
    labelled production rows from the prediction log (features as served, feedback labels),
    except the newest `gate_share` of those rows: both models are scored on these, and neither
    trained on them.
    """

    original: Literal["all", "last_rows", "last_days", "none"] = Field(
        default="all",
        description="Which rows of the original data's training period (before "
        "`data.split.production_start`) join the log rows: all (the default: older periods "
        "the newest rows do not cover stay learnt, see bench/results/retrain_bound.md), the "
        "last `original_rows` rows, the last `original_days` days, or none",
    )
    original_rows: int = Field(default=50_000, ge=1, description="Rows kept by 'last_rows'")
    original_days: float = Field(default=90, gt=0, description="Days kept by 'last_days'")
    gate_share: float = Field(
        default=0.3,
        gt=0,
        lt=1,
        description="Newest share of the labelled log rows held out for the gate",
    )
    min_gate_rows: int = Field(
        default=200,
        ge=10,
        description="Fewer held-out labelled rows than this: no retrain yet (exit 3, try again "
        "as feedback arrives). The gate rows are the challenger's held-out set; the paired "
        "interval of a roc_auc difference spanned 0.18 on 200 flights rows, 0.05 on 1,407",
    )
    max_log_rows: int = Field(
        default=2_000_000, ge=1, description="Most prediction records read from the log"
    )
    log_weight: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Sample weight of each labelled production row relative to an original row "
        "of the same age (production rows are the newest the challenger learns from)",
    )
    original_half_life_days: float | None = Field(
        default=None,
        gt=0,
        description="Sample weight of an original row halves for every this many days it lies "
        "before the newest original row (None: equal weights)",
    )
    promote: bool = Field(
        default=True,
        description="A challenger that passes every gate becomes stage=production at once; "
        "false: it stays stage=candidate for a shadow run, then `occam promote TAG`",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="On every goal metric the challenger may score at most this much below "
        "the champion on the gate rows",
    )
    require_interval: bool = Field(
        default=False,
        description="Also require the lower bound of the paired bootstrap interval of "
        "(challenger - champion) to be at least -tolerance on every goal metric",
    )


class TrackingConfig(_Strict):
    """MLflow experiment tracking of every `occam train` and `occam retrain` run."""

    enabled: bool = True
    uri: str = Field(
        default="sqlite:///mlruns.db",
        description="MLflow tracking URI; a relative sqlite path is taken from the config's "
        "folder. A server: http://host:5000",
    )
    artifacts_dir: Path = Field(
        default=Path("mlartifacts"),
        description="Where a new experiment keeps run artifacts (plots, card) on a local store",
    )
    experiment: str | None = Field(default=None, description="Default: the `project` name")
    register_models: bool = Field(
        default=True,
        description="Register each bundle as a version of the MLflow model `output.model_name` "
        "with aliases mirroring the BentoML stage (champion, challenger)",
    )


class OccamConfig(_Strict):
    project: str
    seed: int = 0
    data: DataConfig
    labels: LabelsConfig = LabelsConfig()
    goals: list[Goal] = Field(min_length=1)
    goals_positive_label: LabelText | None = Field(
        default=None,
        description="The class that f1/precision/recall/average_precision refer to; a number "
        "or boolean is read as its text (1 -> '1', true -> 'True'), as the target column is",
    )
    baseline: BaselineConfig = BaselineConfig()
    model: ModelConfig = ModelConfig()
    search: SearchConfig = SearchConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    output: OutputConfig = OutputConfig()
    serving: ServingConfig = ServingConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    retrain: RetrainConfig = RetrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("goals")
    @classmethod
    def _unique_goals(cls, goals: list[Goal]) -> list[Goal]:
        metrics = [g.metric for g in goals]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"each metric may appear once, got {metrics}")
        return goals

    @model_validator(mode="after")
    def _human_needs_annotators(self) -> OccamConfig:
        human = [g.metric for g in self.goals if g.human]
        if human and not self.labels.annotators:
            raise ValueError(
                f"goal(s) {human} have `threshold: human`, which needs several labellers: list "
                "their columns in `labels.annotators`, or give a number as the threshold"
            )
        return self

    @property
    def scoring(self) -> str:
        """The metric the search optimises: `search.scoring` or the first goal's metric."""
        return self.search.scoring or self.goals[0].metric


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` (the location of an unknown key), for the error message."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return sorted(getattr(current, "model_fields", {}))


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: the dotted key, what was wrong, what arrived, and the fix."""
    lines = [f"{source}: {error.error_count()} problem(s) in the config"]
    for item in error.errors():
        loc = tuple(item["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(OccamConfig, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            lines.append(f"  - `{key}`: unknown key; {hint}allowed here: {', '.join(allowed)}")
        elif item["type"] == "missing":
            lines.append(f"  - `{key}`: required key is missing; add it")
        else:
            got = item.get("input")
            # A whole section's input repeats the file; the message names the keys instead.
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  - `{key}`: {item['msg']}{shown}")
    return "\n".join(lines)


def parse_config(raw: Any, source: str = "config", base_dir: Path | None = None) -> OccamConfig:
    """Validate a mapping (parsed YAML) into an `OccamConfig`; raise `ConfigError` on problems."""
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of keys, got {type(raw).__name__}"
        )
    try:
        config = OccamConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    _check_state_dir(config, source)
    return config


def _resolve_paths(config: OccamConfig, base: Path) -> OccamConfig:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    return config.model_copy(
        update={
            "data": config.data.model_copy(update={"path": resolve(config.data.path)}),
            "output": config.output.model_copy(
                update={
                    "reports_dir": resolve(config.output.reports_dir),
                    "signing_key_file": (
                        None
                        if config.output.signing_key_file is None
                        else resolve(config.output.signing_key_file)
                    ),
                }
            ),
            "serving": config.serving.model_copy(
                update={
                    "log_dir": resolve(config.serving.log_dir),
                    "log_redact_key_file": (
                        resolve(config.serving.log_redact_key_file)
                        if config.serving.log_redact_key_file is not None
                        else None
                    ),
                    "auth": config.serving.auth.model_copy(
                        update={
                            "keys_file": resolve(config.serving.auth.keys_file)
                            if config.serving.auth.keys_file is not None
                            else None
                        }
                    ),
                }
            ),
            "monitoring": config.monitoring.model_copy(
                update={"state_dir": resolve(config.monitoring.state_dir)}
            ),
            "tracking": config.tracking.model_copy(
                update={
                    "uri": _resolve_sqlite(config.tracking.uri, base),
                    "artifacts_dir": resolve(config.tracking.artifacts_dir),
                }
            ),
        }
    )


def _check_state_dir(config: OccamConfig, source: str) -> None:
    """The monitor's checkpoint must not live where the service writes (its log folder)."""
    state = Path(config.monitoring.state_dir)
    logs = Path(config.serving.log_dir)
    if state == logs or logs in state.parents:
        raise ConfigError(
            f"{source}: `monitoring.state_dir` ({state}) lies inside `serving.log_dir` ({logs}); "
            "the service writes there. Point it elsewhere, e.g. `monitor-state`"
        )


def _resolve_sqlite(uri: str, base: Path) -> str:
    """`sqlite:///relative.db` -> `sqlite:////abs/folder/relative.db`; other URIs unchanged."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri.startswith(prefix + "/"):
        return uri
    return prefix + str((base / uri.removeprefix(prefix)).resolve())


def load_config(path: str | Path) -> OccamConfig:
    """Read and validate a YAML config file; relative paths are taken from its folder."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} not found; pass --config PATH to an occam.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    config = parse_config(raw, source=str(path), base_dir=path.parent.resolve())
    key_file = config.output.signing_key_file
    if key_file is not None and not key_file.is_file():
        raise ConfigError(
            f"{path}: `output.signing_key_file`: {key_file} is not a file; make one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))' > KEYFILE` "
            "(readable only by the deploying user), or remove the key to turn signing off"
        )
    return config

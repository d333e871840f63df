"""The retrain set: labelled production rows from the prediction log, plus the original data.

The service logs every prediction with its inputs as served; feedback records bring the true
labels later, by prediction id. Joined, they are the newest labelled rows Occam has. They are
split in time:

- the newest `retrain.gate_share` of them (at least `retrain.min_gate_rows`, and only rows newer
  than the champion's training data) are held out: the champion-vs-challenger gate scores both
  models on them, and neither trained on them;
- the older ones join the original data's training period (kept under the `retrain.original`
  rule) to form the challenger's training set, which goes through the very same data and label
  checks, baseline, search and goals as `occam train` (`training.pipeline.train`).

A log row's time (the config's `data.time_column`) is the time it was served (the record's `ts`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam.bundle import Bundle, latest_production
from occam.config import OccamConfig
from occam.logread import read_all
from occam.records import FeedbackRecord, PredictionRecord, record_of
from occam.schema import FeatureSchema, category_key
from training.challenger import (
    ChallengerGate,
    compare,
    render_markdown,
    slice_floors,
)
from training.data import DataError, cut_point, load_frame, time_axis
from training.evaluate import GateResult, Weights, aligned_proba
from training.pipeline import RoundCallback, StageCallback, TrainResult, train

log = logging.getLogger("occam.training.retrain")
#: Time column of log rows when the config names none (kept only for ordering).
SERVED_AT = "served_at"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"


class RetrainError(DataError):
    """Not enough labelled production rows (or no champion) to retrain and gate honestly."""


@dataclass(frozen=True)
class LogContents:
    """Prediction records (the newest `max_records`) and the last feedback label per id."""

    predictions: list[PredictionRecord]
    feedback: dict[str, FeedbackRecord]
    malformed_lines: int


def read_log(folder: Path, max_records: int) -> LogContents:
    """Read every complete line of every log segment in `folder` (whole-log, stateless, through
    the monitor's reader `occam.logread`).

    A partial last line (a writer mid-append) is left alone; malformed lines are counted and
    skipped; shadow rows are left out. Only the newest `max_records` predictions (by file
    order) are kept in memory; for each id the latest feedback label.
    """
    predictions: deque[dict[str, Any]] = deque(maxlen=max_records)
    feedback: dict[str, FeedbackRecord] = {}
    malformed = 0
    for batch in read_all(folder):
        malformed += batch.malformed
        predictions.extend(batch.predictions)
        for raw in batch.feedback:
            previous = feedback.get(raw["id"])
            if previous is None or raw["ts"] >= previous.ts:
                feedback[raw["id"]] = FeedbackRecord(id=raw["id"], ts=raw["ts"], label=raw["label"])
    if malformed:
        log.warning("skipped %d malformed line(s) in %s", malformed, folder)
    records = [record_of(raw) for raw in predictions]
    return LogContents([r for r in records if isinstance(r, PredictionRecord)], feedback, malformed)


def labelled_rows(contents: LogContents, config: OccamConfig) -> pd.DataFrame:
    """Predictions that received feedback: the features as served, the true label as
    `data.target` and the serving time as `data.time_column`, in time order."""
    target = config.data.target
    time_column = config.data.time_column or SERVED_AT
    joined = [
        (p, contents.feedback[p.id]) for p in contents.predictions if p.id in contents.feedback
    ]
    if not joined:
        return pd.DataFrame(columns=[time_column, target])
    frame = pd.DataFrame.from_records([p.features for p, _ in joined])
    times = [dt.datetime.fromtimestamp(p.ts, dt.UTC).replace(tzinfo=None) for p, _ in joined]
    frame.insert(0, time_column, [t.strftime(TIME_FORMAT) for t in times])
    frame[target] = [f.label for _, f in joined]
    for annotator in config.labels.annotators:  # one labeller: the feedback itself
        frame[annotator] = frame[target]
    order = pd.to_datetime(frame[time_column]).argsort(kind="stable")
    return frame.iloc[order].reset_index(drop=True)


def trained_until(bundle: Bundle) -> pd.Timestamp | None:
    """The time of the newest row the bundle's model could have seen (its training and test
    period's end), None when the bundle does not record one."""
    data = bundle.metadata.data
    ends = [p[1] for p in (data.train_period, data.test_period) if p]
    return max(pd.Timestamp(e) for e in ends) if ends else None


def original_rows(config: OccamConfig) -> pd.DataFrame:
    """The original data's training period (before `data.split.production_start`) cut by the
    `retrain.original` rule, in time order."""
    rule = config.retrain
    if rule.original == "none":
        return pd.DataFrame()
    frame = load_frame(config.data.path)
    time_column = config.data.time_column
    if time_column is None:
        return frame if rule.original != "last_rows" else frame.tail(rule.original_rows)
    axis = time_axis(frame, config)
    if axis is None:  # unreachable: a time column is configured
        return frame
    if not axis.is_datetime:
        raise DataError(
            f"`{time_column}` holds period numbers ({axis.span()}), which cannot be put on one "
            "clock with the serving times of the prediction log; retraining needs a time column "
            "of dates, years or Unix times (`data.time_format`)"
        )
    times = axis.values
    start = config.data.split.production_start
    if start is not None:
        keep = (times < cut_point(axis, start, "data.split.production_start")).to_numpy()
    else:
        keep = times.notna().to_numpy()
    frame, times = frame[keep], times[keep]
    order = times.argsort(kind="stable")
    frame, times = frame.iloc[order], times.iloc[order]
    # One time format for the original and the log rows, so the pair sorts and parses as one.
    frame = frame.assign(**{time_column: times.dt.strftime(TIME_FORMAT)})
    if rule.original == "last_rows":
        return frame.tail(rule.original_rows)
    if rule.original == "last_days" and len(times):
        return frame[times >= times.max() - pd.Timedelta(days=rule.original_days)]
    return frame


@dataclass(frozen=True)
class RetrainSet:
    """The challenger's training rows and the gate rows (newest, trained on by neither)."""

    train: pd.DataFrame
    gate: pd.DataFrame
    original_rows: int
    log_train_rows: int
    predictions: int
    feedback: int
    labelled: int
    time_column: str

    def summary(self) -> dict[str, Any]:
        """Counts and periods for the card, the command's output and the tracking run."""
        times = pd.to_datetime(self.gate[self.time_column]) if len(self.gate) else None
        return {
            "original_rule_rows": self.original_rows,
            "log_train_rows": self.log_train_rows,
            "gate_rows": len(self.gate),
            "predictions_read": self.predictions,
            "feedback_read": self.feedback,
            "labelled_predictions": self.labelled,
            "gate_period": None if times is None else [str(times.min()), str(times.max())],
        }


def row_keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """One text per row of `frame`: its values in `columns`, each as the category it is to a
    model (`occam.schema.category_key`: 1, 1.0 and "1" alike), so a row served from the log and
    the same row read from the data file have the same key."""
    if not len(frame):
        return pd.Series([], index=frame.index, dtype=object)
    blank = pd.Series("", index=frame.index)
    parts = [frame[c].map(category_key) if c in frame else blank for c in columns]
    return pd.Series(["\x1f".join(values) for values in zip(*parts, strict=True)], frame.index)


def build_retrain_set(config: OccamConfig, champion: Bundle | None) -> RetrainSet:
    """Read `serving.log_dir`, join feedback, hold out the gate rows, add the original rows.

    A labelled log row with the very features of a kept original row (the original data's
    rows sent again, as `occam demo` replays its held-out period) is left out of both the gate
    (the challenger trained on it) and the log's training rows (it is there already).

    Raises `RetrainError` when fewer than `retrain.min_gate_rows` labelled rows are newer
    than the champion's training data and not among the original rows.
    """
    rule = config.retrain
    contents = read_log(config.serving.log_dir, rule.max_log_rows)
    labelled = labelled_rows(contents, config)
    time_column = config.data.time_column or SERVED_AT
    newest_seen = trained_until(champion) if champion is not None else None
    times = pd.to_datetime(labelled[time_column])
    original = original_rows(config)
    features = [*(config.data.numeric or []), *(config.data.categorical or [])]
    if not features and champion is not None:
        features = list(champion.schema.names)
    fresh = ~row_keys(labelled, features).isin(set(row_keys(original, features)))
    # Gate rows: known labels only ("I don't know" feedback scores nobody), newer than anything
    # the champion saw, and none the challenger trains on.
    known = ~labelled[config.data.target].astype(str).isin(config.labels.unknown_values)
    known = known & fresh
    candidates = known & (times > newest_seen) if newest_seen is not None else known
    eligible = int(candidates.sum())
    n_gate = min(eligible, max(rule.min_gate_rows, math.ceil(rule.gate_share * int(known.sum()))))
    if n_gate < rule.min_gate_rows:
        raise RetrainError(
            f"{config.serving.log_dir}: {len(labelled)} logged prediction(s) have feedback, "
            f"{eligible} of them newer than the champion's training data and not rows of the "
            f"original data; the gate needs at "
            f"least retrain.min_gate_rows={rule.min_gate_rows}: send more feedback "
            "(POST /feedback) or lower `retrain.min_gate_rows`"
        )
    first = int(np.flatnonzero(candidates.to_numpy())[-n_gate])
    gate = labelled.iloc[first:][candidates.iloc[first:]].reset_index(drop=True)
    from_log = labelled.iloc[:first][fresh.iloc[:first]]
    if config.data.time_column is None:
        original = original.assign(**{SERVED_AT: pd.NaT})
    train = pd.concat([original, from_log], ignore_index=True)
    if config.data.time_column is None:
        train = train.drop(columns=[SERVED_AT])
    return RetrainSet(
        train=train,
        gate=gate,
        original_rows=len(original),
        log_train_rows=len(from_log),
        predictions=len(contents.predictions),
        feedback=len(contents.feedback),
        labelled=len(labelled),
        time_column=time_column,
    )


def challenger_frame(retrain_set: RetrainSet) -> pd.DataFrame:
    """What the challenger's training run reads: its training rows, then the gate rows (the
    newest), which `challenger_config` makes its held-out test set."""
    return pd.concat([retrain_set.train, retrain_set.gate], ignore_index=True)


def challenger_config(config: OccamConfig, retrain_set: RetrainSet | None = None) -> OccamConfig:
    """The config the challenger trains with: the same goals, checks and search, every row of
    `challenger_frame` in the training period, and its reports in `<reports_dir>/retrain`.

    With `retrain_set`, the time-ordered test share is exactly its gate rows: the challenger
    learns from every other labelled production row (a fixed 20% test share would hold out the
    newest production rows, the very ones a retrain is for) and its training gate scores the
    rows the champion-vs-challenger gate scores.
    """
    # Original and log rows carry one datetime format (TIME_FORMAT) in the retrain set.
    split = config.data.split.model_copy(update={"production_start": None, "test_start": None})
    if retrain_set is not None and config.data.time_column is not None:
        frame = challenger_frame(retrain_set)
        unknown = config.labels.unknown_values
        known = int((~frame[config.data.target].astype(str).isin(unknown)).sum())
        # the split keeps round(known * (1 - test_size)) rows for training: exactly the others
        split = split.model_copy(
            update={"test_strategy": "time", "test_size": len(retrain_set.gate) / max(known, 1)}
        )
    data = config.data.model_copy(update={"split": split, "time_format": "datetime"})
    output = config.output.model_copy(update={"reports_dir": config.output.reports_dir / "retrain"})
    return config.model_copy(update={"data": data, "output": output})


@dataclass(frozen=True)
class RecencyWeights:
    """The `retrain` rule for sample weights, applied to rows of `challenger_frame` by index.

    The first `original_rows` rows are the original data's (time column `time_column`): each
    weighs 0.5 ** (age / half_life_days), age in days before the newest original row (1 when
    `half_life_days` is None). The other rows are labelled production rows: each weighs
    `log_weight`. Weights are scaled to mean 1 over the rows asked for.
    """

    original_rows: int
    original_times: pd.Series
    half_life_days: float | None
    log_weight: float

    @classmethod
    def from_config(cls, config: OccamConfig, retrain_set: RetrainSet) -> RecencyWeights:
        n = retrain_set.original_rows
        column = config.data.time_column
        times = (
            pd.to_datetime(retrain_set.train[column].iloc[:n], errors="coerce")
            if column is not None
            else pd.Series(pd.NaT, index=range(n))
        )
        rule = config.retrain
        return cls(n, times.reset_index(drop=True), rule.original_half_life_days, rule.log_weight)

    @property
    def uniform(self) -> bool:
        """True when every row weighs the same (no weights need to reach the fit)."""
        return self.half_life_days is None and self.log_weight == 1.0

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        index = rows.index.to_numpy()
        weights = np.full(len(index), self.log_weight, dtype=float)
        original = index < self.original_rows
        if self.half_life_days is not None and original.any():
            times = self.original_times
            age = (times.max() - times.iloc[index[original]]).dt.total_seconds() / 86_400
            weights[original] = 0.5 ** (age.fillna(0).to_numpy() / self.half_life_days)
        else:
            weights[original] = 1.0
        return weights / weights.mean() if len(weights) else weights


@dataclass(frozen=True)
class HeldForShadow:
    """The verdict `train` sees when `retrain.promote` is false: the gate passed, yet the
    challenger is saved stage=candidate, to be shadowed and then promoted by `occam promote`."""

    gate: ChallengerGate

    @property
    def passed(self) -> bool:
        return False

    def to_dict(self) -> dict[str, Any]:
        return {**self.gate.to_dict(), "held_for_shadow": True}


@dataclass(frozen=True)
class RetrainResult:
    """The challenger's training run, the gate against the champion, and the gate rows'
    labels and both models' probabilities on them (columns in `classes` order)."""

    train: TrainResult
    gate: ChallengerGate
    champion: Bundle
    summary: dict[str, Any]
    labels: np.ndarray
    classes: list[str]
    positive: str
    champion_proba: np.ndarray
    challenger_proba: np.ndarray

    @property
    def promoted(self) -> bool:
        """True when the challenger was saved as stage=production (every gate passed)."""
        return self.train.promoted

    @property
    def held(self) -> bool:
        """True when every gate passed but `retrain.promote` is false: stage=candidate, to be
        run in shadow and promoted with `occam promote`."""
        return self.gate.passed and not self.train.promoted


def retrain(
    config: OccamConfig,
    on_stage: StageCallback = lambda message: None,
    on_round: RoundCallback | None = None,
) -> RetrainResult:
    """Build the retrain set, train a challenger with the same checks, goals and search, gate
    it against the champion (the newest stage=production bundle) on the gate rows, and save it
    (stage=production only when every gate passed and `retrain.promote` is true). Appends the
    gate section to the challenger's model card in `<reports_dir>/retrain`.

    Raises `RetrainError` (no champion, too few labelled rows) and whatever `train` raises on
    bad data.
    """
    champion = latest_production(config.output.model_name)
    if champion is None:
        raise RetrainError(
            f"no bundle of {config.output.model_name!r} is labelled stage=production: there is "
            "no champion to retrain against; run `occam train` first"
        )
    champion.verify()
    on_stage(f"reading the prediction log in {config.serving.log_dir} and joining feedback")
    retrain_set = build_retrain_set(config, champion)
    summary = retrain_set.summary()
    on_stage(
        f"retrain set: {retrain_set.original_rows} original + {retrain_set.log_train_rows} "
        f"production rows; gate on the {len(retrain_set.gate)} newest labelled rows"
    )
    champion_model = champion.load_pipeline()
    gate_rows = retrain_set.gate
    y = gate_rows[config.data.target].astype(str).to_numpy()
    seen: dict[str, Any] = {}

    def challenge(
        model: Any,
        schema: FeatureSchema,
        training_gate: GateResult,
        positive: str,
        weights: Weights,
    ) -> ChallengerGate:
        on_stage(f"gate: champion {champion.tag} against the challenger on the newest rows")
        classes = sorted({*champion.classes, *(str(c) for c in model.classes_)})
        old = aligned_proba(champion_model, champion.schema.coerce(gate_rows), classes)
        new = aligned_proba(model, schema.coerce(gate_rows), classes)
        evaluation = config.evaluation
        seen.update(classes=classes, positive=positive, old=old, new=new)
        seen["gate"] = ChallengerGate(
            champion=champion.tag,
            challenger="(this run)",
            rows=len(gate_rows),
            tolerance=config.retrain.tolerance,
            require_interval=config.retrain.require_interval,
            confidence=evaluation.confidence,
            training_gate_passed=training_gate.passed,
            comparisons=compare(
                config.goals,
                y,
                old,
                new,
                classes,
                positive,
                tolerance=config.retrain.tolerance,
                require_interval=config.retrain.require_interval,
                n_boot=evaluation.bootstrap,
                confidence=evaluation.confidence,
                seed=config.seed,
                champion_weights=champion.decision_weights,  # each answers by its own rule
                challenger_weights=weights,
            ),
            slices=slice_floors(
                gate_rows,
                y,
                new,
                classes,
                positive,
                evaluation.slices,
                {str(metric): floor for metric, floor in evaluation.slice_floors.items()},
                evaluation.min_slice_rows,
                weights,
            ),
        )
        return seen["gate"]

    weights = RecencyWeights.from_config(config, retrain_set)
    if not weights.uniform:
        on_stage(
            f"sample weights: production rows x{weights.log_weight:g}"
            + (
                f", original rows halve every {weights.half_life_days:g} days of age"
                if weights.half_life_days is not None
                else ""
            )
        )

    def verdict(*args: Any) -> ChallengerGate | HeldForShadow:
        gate = challenge(*args)
        return gate if config.retrain.promote or not gate.passed else HeldForShadow(gate)

    result = train(
        challenger_config(config, retrain_set),
        on_stage=on_stage,
        on_round=on_round,
        frame=challenger_frame(retrain_set),
        challenge=verdict,
        sample_weight=None if weights.uniform else weights,
    )
    test_rows = result.metadata.data.test_rows
    if test_rows != len(gate_rows):  # e.g. annotator ties dropped rows: say so, never silently
        log.warning(
            "the challenger's test set has %d rows, the gate %d: its training gate was scored "
            "on other rows than the champion-vs-challenger gate",
            test_rows,
            len(gate_rows),
        )
    gate = seen["gate"].model_copy(update={"challenger": result.bundle.tag})
    held = gate.passed and not result.promoted
    with result.card_path.open("a") as card_file:
        card_file.write("\n" + render_markdown(gate, summary, held=held))
    return RetrainResult(
        train=result,
        gate=gate,
        champion=champion,
        summary=summary,
        labels=y,
        classes=seen["classes"],
        positive=seen["positive"],
        champion_proba=seen["old"],
        challenger_proba=seen["new"],
    )

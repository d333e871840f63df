"""Data checks run before any fit, reported by column and row count.

Each check adds `Finding`s; an `error` stops training (the message says the fix), a `warning`
goes into the report and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from occam.config import OccamConfig
from occam.schema import category_key
from occam.timecol import TimeColumnError, read_time
from training.data import Features

Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Finding:
    """One result of one check. `rows` counts the rows concerned (0 when not row-based)."""

    level: Level
    check: str
    column: str | None
    rows: int
    message: str

    def __str__(self) -> str:
        where = f"[{self.column}] " if self.column else ""
        return f"{self.level.upper()} {self.check}: {where}{self.message}"


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    dropped_features: list[str] = field(default_factory=list)
    strengths: list[FeatureStrength] = field(default_factory=list)

    def add(self, level: Level, check: str, column: str | None, rows: int, message: str) -> None:
        self.findings.append(Finding(level, check, column, rows, message))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]


def check_columns(frame: pd.DataFrame, features: Features, config: OccamConfig) -> CheckReport:
    """Presence and types of the configured columns: a failure here stops the other checks."""
    report = CheckReport()
    data = config.data
    needed = {"target": [data.target]} if not config.labels.annotators else {}
    needed |= {
        "numeric": features.numeric,
        "categorical": features.categorical,
        "annotators": config.labels.annotators,
    }
    if data.time_column:
        needed["time_column"] = [data.time_column]
    available = ", ".join(map(str, frame.columns))
    for key, columns in needed.items():
        for column in columns:
            if column not in frame.columns:
                report.add(
                    "error",
                    "missing column",
                    column,
                    0,
                    f"listed in `data.{key}` (or labels) but not in the file; "
                    f"fix the config or the file (columns present: {available})",
                )
    for column in features.numeric:
        if column in frame.columns and not pd.api.types.is_numeric_dtype(frame[column]):
            parsed = pd.to_numeric(frame[column], errors="coerce")
            bad = frame[column][parsed.isna() & frame[column].notna()]
            if len(bad):
                examples = ", ".join(repr(v) for v in bad.astype(str).unique()[:3])
                report.add(
                    "error",
                    "wrong type",
                    column,
                    len(bad),
                    f"declared numeric but {len(bad)} row(s) are not numbers (e.g. {examples}); "
                    "clean the values or move the column to `data.categorical`",
                )
    if data.time_column and data.time_column in frame.columns:
        raw = frame[data.time_column]
        try:
            axis = read_time(raw, data.time_column, data.time_format)
        except TimeColumnError as exc:
            report.add("error", "wrong type", data.time_column, int(raw.notna().sum()), str(exc))
            return report
        bad = raw[axis.unreadable(raw)]
        if len(bad):
            examples = ", ".join(repr(v) for v in bad.astype(str).unique()[:3])
            report.add(
                "error",
                "wrong type",
                data.time_column,
                len(bad),
                f"{len(bad)} row(s) cannot be read as {axis.format} times (e.g. {examples}); fix "
                "them, set `data.time_format`, or unset `data.time_column`",
            )
        missing = int(raw.isna().sum())
        if missing:
            report.add(
                "warning",
                "missing values",
                data.time_column,
                missing,
                f"{missing} row(s) have no time; they are left out of every period",
            )
        how = "detected; set `data.time_format` if wrong" if axis.detected else "data.time_format"
        report.add(
            "info",
            "time column",
            data.time_column,
            int(axis.values.notna().sum()),
            f"read as {axis.format} ({how}): {axis.span()}",
        )
    return report


def check_values(
    frame: pd.DataFrame,
    features: Features,
    config: OccamConfig,
    held_out: np.ndarray | None = None,
) -> CheckReport:
    """Missing values, constants, duplicates, conflicting labels, balance and leakage.

    `frame` holds the labelled training-period rows (unknown labels already removed);
    `held_out` marks its held-out test rows (default: a seeded random quarter), on which each
    feature alone is scored for the leakage check (`report.strengths`).
    """
    report = CheckReport()
    data = config.data
    target = frame[data.target]
    n = len(frame)
    missing_target = int(target.isna().sum())
    if missing_target:
        report.add(
            "error",
            "missing target",
            data.target,
            missing_target,
            f"{missing_target} row(s) have no label; drop them or label them",
        )
    for column in features.names:
        share = float(frame[column].isna().mean())
        count = int(frame[column].isna().sum())
        if share > data.max_missing_share:
            report.add(
                "error",
                "missing values",
                column,
                count,
                f"{share:.1%} missing (limit data.max_missing_share={data.max_missing_share}); "
                "add it to `data.exclude` or fill it",
            )
        elif share > data.warn_missing_share:
            report.add(
                "warning",
                "missing values",
                column,
                count,
                f"{share:.1%} missing; imputed by the pipeline",
            )
        if frame[column].nunique(dropna=True) <= 1:
            report.add(
                "warning",
                "constant column",
                column,
                n,
                "has a single value; dropped from the features (add it to `data.exclude`)",
            )
            report.dropped_features.append(column)
    columns = [*features.names, data.target]
    duplicates = int(frame.duplicated(subset=columns).sum())
    if duplicates:
        report.add(
            "warning",
            "duplicate rows",
            None,
            duplicates,
            f"{duplicates} row(s) repeat an earlier row exactly ({duplicates / n:.1%})",
        )
    keyed = frame[columns].astype(str)
    labels_per_key = keyed.groupby(features.names, sort=False)[data.target].transform("nunique")
    conflicts = int((labels_per_key > 1).sum())
    if conflicts:
        report.add(
            "warning",
            "conflicting labels",
            None,
            conflicts,
            f"{conflicts} row(s) share their features with a row of another label",
        )
    _check_balance(report, target, data.target)
    if held_out is None:
        held_out = np.random.default_rng(config.seed).random(n) < 0.25
    _check_leakage(report, frame, features, config, np.asarray(held_out, dtype=bool))
    return report


def _check_balance(report: CheckReport, target: pd.Series, name: str) -> None:
    counts = target.value_counts()
    shares = ", ".join(f"{k}: {v} ({v / counts.sum():.1%})" for k, v in counts.items())
    if len(counts) < 2:
        report.add(
            "error",
            "class balance",
            name,
            int(counts.sum()),
            f"only one class ({shares}); a classifier needs at least two",
        )
        return
    report.add("info", "class balance", name, int(counts.sum()), shares)
    minority = counts.min() / counts.sum()
    if minority < 0.01:
        report.add(
            "warning",
            "class balance",
            name,
            int(counts.min()),
            f"smallest class is {minority:.2%} of rows; goals on it will be noisy",
        )


#: Least non-missing rows before "every value distinct" makes a column id-like.
ID_MIN_ROWS = 50
#: "Function of the label": at least this many distinct values that repeat ...
LEAK_MIN_VALUES = 10
#: ... covering at least this share of the rows, each with a single class.
LEAK_MIN_COVERAGE = 0.5
#: Least held-out rows on which a perfect single-feature score counts as a leak.
LEAK_MIN_HELDOUT = 30
#: How far under `data.leakage_auc` a feature counts as "near the leakage level" on the card.
NEAR_LEAKAGE = 0.05


@dataclass(frozen=True)
class FeatureStrength:
    """What one feature alone says about the label, learned on the training rows and scored on
    the held-out rows. `score` is the best one-vs-rest ROC AUC (0.5: useless, 1: separates a
    class perfectly); `accuracy` the share of held-out rows the one-feature rule labels right;
    `leak` the clear-leak rule it breaks (None when none; see `_clear_leak`)."""

    name: str
    score: float
    accuracy: float
    leak: str | None = None


def single_feature_auc(values: pd.Series, target: pd.Series) -> float:
    """How well one feature alone ranks the classes: best one-vs-rest ROC AUC of the class
    rate within its value (categorical) or quantile bin (numeric, 20 bins); 0.5 is useless.
    In-sample: an id scores 1 here, which is why the checks score features on held-out rows
    (`feature_strength`)."""
    if pd.api.types.is_numeric_dtype(values) and values.nunique() > 20:
        keys = pd.qcut(values, 20, duplicates="drop").astype(str)
    else:
        keys = values.astype(str)
    best = 0.5
    for cls in target.unique():
        hit = (target == cls).astype(float)
        if hit.nunique() < 2:
            continue
        rate = hit.groupby(keys).transform("mean")
        auc = float(roc_auc_score(hit, rate))
        best = max(best, auc, 1 - auc)
    return best


def feature_strength(
    name: str,
    train: pd.Series,
    y_train: pd.Series,
    test: pd.Series,
    y_test: pd.Series,
    numeric: bool,
    seed: int = 0,
) -> FeatureStrength:
    """Fit a one-feature rule on the training rows (a small decision tree on a number; the
    class shares of each value of a category, unseen values getting the overall shares) and
    score it on the held-out rows."""
    classes = sorted(pd.unique(y_train.astype(str)))
    y_train, y_test = y_train.astype(str), y_test.astype(str)
    if numeric:
        x_train = pd.to_numeric(train, errors="coerce").astype(float)
        x_test = pd.to_numeric(test, errors="coerce").astype(float)
        # Missing values go below every value seen, so "missing" can be a branch of its own.
        fill = (x_train.min() if x_train.notna().any() else 0.0) - 1.0
        tree = DecisionTreeClassifier(max_leaf_nodes=32, min_samples_leaf=3, random_state=seed)
        tree.fit(x_train.fillna(fill).to_frame(), y_train)
        proba = pd.DataFrame(
            tree.predict_proba(x_test.fillna(fill).to_frame()), columns=tree.classes_
        ).reindex(columns=classes, fill_value=0.0)
    else:
        keys_train = train.map(category_key)
        keys_test = test.map(category_key)
        shares = pd.crosstab(keys_train, y_train, normalize="index").reindex(
            columns=classes, fill_value=0.0
        )
        prior = y_train.value_counts(normalize=True).reindex(classes, fill_value=0.0)
        proba = shares.reindex(keys_test.to_numpy())
        proba = proba.fillna(prior).reset_index(drop=True)
    truth = y_test.to_numpy()
    predicted = np.asarray(classes)[np.argmax(proba.to_numpy(), axis=1)]
    accuracy = float((predicted == truth).mean()) if len(truth) else 0.0
    best = 0.5
    for cls in classes:
        hit = truth == cls
        if 0 < hit.sum() < len(hit):
            auc = float(roc_auc_score(hit, proba[cls].to_numpy()))
            best = max(best, auc, 1 - auc)
    return FeatureStrength(name=name, score=round(best, 6), accuracy=round(accuracy, 6))


def _clear_leak(
    values: pd.Series, target: pd.Series, numeric: bool, strength: FeatureStrength, test_rows: int
) -> str | None:
    """Why `values` (the training period) is a clear leak, or None. The rules (docs/data.md):

    - id-like: at least `ID_MIN_ROWS` values, all distinct, and the column is categorical or
      holds integers spread like a row number (range under twice the row count);
    - function of the label: at least `LEAK_MIN_VALUES` values that repeat, covering at least
      `LEAK_MIN_COVERAGE` of the rows, each with a single class and no exception, and a held-out
      score at `data.leakage_auc` or above (checked by the caller);
    - perfect on held-out rows: the one-feature rule labels every one of at least
      `LEAK_MIN_HELDOUT` held-out rows right.
    """
    seen = values.dropna()
    if len(seen) >= ID_MIN_ROWS and seen.nunique() == len(seen):
        if not numeric:
            return "id-like: every value is distinct, one per row"
        numbers = pd.to_numeric(seen, errors="coerce").to_numpy(dtype=float)
        if np.all(np.mod(numbers, 1) == 0) and numbers.max() - numbers.min() < 2 * len(seen):
            return "id-like: distinct integers, one per row, spread like a row number"
    keys = values.map(category_key) if not numeric else values.astype(str)
    counts = keys.value_counts()
    repeated = counts[counts >= 2].index
    in_repeated = keys.isin(repeated)
    if len(repeated) >= LEAK_MIN_VALUES and in_repeated.mean() >= LEAK_MIN_COVERAGE:
        classes_per_value = target[in_repeated].astype(str).groupby(keys[in_repeated]).nunique()
        if (classes_per_value == 1).all() and target[in_repeated].nunique() >= 2:
            return (
                f"a function of the label: each of its {len(repeated)} repeated values "
                "belongs to a single class, without exception"
            )
    if test_rows >= LEAK_MIN_HELDOUT and strength.accuracy == 1.0:
        return f"perfect on held-out rows: alone it labels all {test_rows} of them right"
    return None


def _check_leakage(
    report: CheckReport,
    frame: pd.DataFrame,
    features: Features,
    config: OccamConfig,
    held_out: np.ndarray,
) -> None:
    """Score every feature alone on the held-out rows; warn on strong ones, stop on clear
    leaks (unless `data.allow_strong_features` names them)."""
    data = config.data
    target = frame[data.target]
    if target.nunique() < 2:
        return
    allowed = set(data.allow_strong_features)
    for name in sorted(allowed - set(features.names)):
        report.add(
            "warning",
            "strong feature",
            name,
            0,
            f"named in `data.allow_strong_features` but not a feature; remove it there "
            f"(features: {', '.join(features.names)})",
        )
    train, test = frame[~held_out], frame[held_out]
    if train[data.target].nunique() < 2 or test.empty:
        return
    for column in features.names:
        if column in report.dropped_features:
            continue
        numeric = column in features.numeric
        strength = feature_strength(
            column,
            train[column],
            train[data.target],
            test[column],
            test[data.target],
            numeric,
            config.seed,
        )
        leak = _clear_leak(frame[column], target, numeric, strength, len(test))
        if leak and leak.startswith("a function") and strength.score < data.leakage_auc:
            leak = None
        strength = replace(strength, leak=leak)
        report.strengths.append(strength)
        said = (
            f"alone predicts the target with ROC AUC {strength.score:.3f} on held-out rows "
            f"(accuracy {strength.accuracy:.3f})"
        )
        if column in allowed:
            if leak or strength.score >= data.leakage_auc:
                report.add(
                    "info",
                    "strong feature",
                    column,
                    len(frame),
                    f"{said}; kept because `data.allow_strong_features` names it"
                    + (f" although it looks {leak}" if leak else ""),
                )
        elif leak:
            report.add(
                "error",
                "leakage",
                column,
                len(frame),
                f"{said} and is a clear leak, {leak}. Add it to `data.exclude`; only if it is "
                "truly known before the label, allow it with "
                f"`data.allow_strong_features: [{column}]`",
            )
        elif strength.score >= data.leakage_auc:
            report.add(
                "warning",
                "strong feature",
                column,
                len(frame),
                f"{said} (>= data.leakage_auc={data.leakage_auc}). If it is known before the "
                f"label, keep it and silence this with `data.allow_strong_features: [{column}]`; "
                "if it is recorded after or from the label, add it to `data.exclude`",
            )


def missing_rows_summary(frame: pd.DataFrame) -> dict[str, float]:
    """Share of missing values per column, for the model card."""
    return {c: round(float(v), 4) for c, v in frame.isna().mean().items() if v > 0}


__all__ = [
    "CheckReport",
    "FeatureStrength",
    "Finding",
    "check_columns",
    "check_values",
    "feature_strength",
    "missing_rows_summary",
    "single_feature_auc",
]

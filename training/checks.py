"""Data checks run before any fit, reported by column and row count.

Each check adds `Finding`s; an `error` stops training (the message says the fix), a `warning`
goes into the report and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from sklearn.metrics import roc_auc_score

from occam.config import OccamConfig
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
        times = pd.to_datetime(frame[data.time_column], errors="coerce")
        bad_times = int((times.isna() & frame[data.time_column].notna()).sum())
        if bad_times:
            report.add(
                "error",
                "wrong type",
                data.time_column,
                bad_times,
                f"{bad_times} row(s) are not dates/times; fix them or unset `data.time_column`",
            )
    return report


def check_values(frame: pd.DataFrame, features: Features, config: OccamConfig) -> CheckReport:
    """Missing values, constants, duplicates, conflicting labels, balance and leakage.

    `frame` holds the labelled training-period rows (unknown labels already removed).
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
    _check_leakage(report, frame, features, config)
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


def single_feature_auc(values: pd.Series, target: pd.Series) -> float:
    """How well one feature alone ranks the classes: best one-vs-rest ROC AUC of the class
    rate within its value (categorical) or quantile bin (numeric, 20 bins); 0.5 is useless."""
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


def _check_leakage(
    report: CheckReport, frame: pd.DataFrame, features: Features, config: OccamConfig
) -> None:
    target = frame[config.data.target]
    if target.nunique() < 2:
        return
    sample = frame.sample(min(len(frame), 20_000), random_state=config.seed)
    for column in features.names:
        if column in report.dropped_features:
            continue
        auc = single_feature_auc(sample[column], sample[config.data.target])
        if auc >= config.data.leakage_auc:
            report.add(
                "error",
                "leakage",
                column,
                len(frame),
                f"alone predicts the target with ROC AUC {auc:.3f} (>= data.leakage_auc="
                f"{config.data.leakage_auc}); it probably leaks the label or is an id: "
                "add it to `data.exclude`",
            )


def missing_rows_summary(frame: pd.DataFrame) -> dict[str, float]:
    """Share of missing values per column, for the model card."""
    return {c: round(float(v), 4) for c, v in frame.isna().mean().items() if v > 0}


__all__ = [
    "CheckReport",
    "Finding",
    "check_columns",
    "check_values",
    "missing_rows_summary",
    "single_feature_auc",
]

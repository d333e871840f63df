"""What the model card and metrics.json say about the data at hand, beyond the bundle's metadata:
the time column as read, each feature's worth (importance and single-feature score), rare
categories, thin slices, and the labellers against their consensus (with `threshold: human`).

Nothing downstream reads these from the bundle; they are for the reader.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from occam.config import OccamConfig
from occam.schema import FeatureSchema, category_text
from training.checks import NEAR_LEAKAGE, CheckReport
from training.data import DataError, Split
from training.importance import Importance
from training.labels import LabellerScore, human_level

#: A category seen in fewer training rows than `RARE_SHARE` of them (at least `RARE_ROWS`, at
#: most `RARE_CAP` rows) is rare.
RARE_ROWS = 5
RARE_SHARE = 0.005
RARE_CAP = 50
#: Most rare categories listed per feature on the card.
RARE_LISTED = 5


def human_goals(
    config: OccamConfig, labellers: list[LabellerScore]
) -> tuple[OccamConfig, dict[str, float]]:
    """Replace each `threshold: human` by the average labeller's score of its metric on the
    held-out rows; returns the config to train with and metric -> that level. Raises
    `DataError` when no labeller can be scored."""
    levels: dict[str, float] = {}
    goals = []
    for goal in config.goals:
        if goal.human:
            level = human_level(labellers, goal.metric)
            if level is None:
                raise DataError(
                    f"goal {goal.metric} has `threshold: human`, but no labeller in "
                    f"`labels.annotators` ({', '.join(config.labels.annotators)}) could be "
                    "scored on the held-out rows against the others' majority; label more "
                    "held-out rows with several labellers, or give a number as the threshold"
                )
            levels[goal.metric] = level
            goal = goal.model_copy(update={"threshold": level})
        goals.append(goal)
    if not levels:
        return config, levels
    return config.model_copy(update={"goals": goals}), levels


def warn_useless(report: CheckReport, scores: dict[str, Importance], metric: str) -> None:
    """A named warning for each feature that adds nothing on held-out rows."""
    for name, value in scores.items():
        if value.adds_nothing:
            report.add(
                "warning",
                "feature adds nothing",
                name,
                0,
                f"shuffling it changes {metric} on held-out rows by {-value.mean:+.4f} "
                f"(noise ± {max(value.se, value.std):.4f}; {value.repeats} shuffles): the model "
                "does not need it. Add it to `data.exclude` unless you expect it to matter later",
            )


def reader_facts(
    config: OccamConfig,
    split: Split,
    schema: FeatureSchema,
    checks: CheckReport,
    scores: dict[str, Importance],
    labellers: list[LabellerScore],
    human: dict[str, float],
) -> dict[str, Any]:
    """The facts the card's feature table and limits are drawn from (see the module doc)."""
    strengths = {s.name: s for s in checks.strengths}
    features: dict[str, Any] = {}
    for spec in schema.features:
        strength = strengths.get(spec.name)
        importance = scores.get(spec.name)
        features[spec.name] = {
            "kind": spec.kind,
            "importance": None if importance is None else round(importance.mean, 6),
            "importance_std": None if importance is None else round(importance.std, 6),
            "importance_se": None if importance is None else round(importance.se, 6),
            "adds_nothing": None if importance is None else importance.adds_nothing,
            "single_feature_score": None if strength is None else strength.score,
            "single_feature_accuracy": None if strength is None else strength.accuracy,
        }
    leakage = config.data.leakage_auc
    near = [
        name
        for name, f in features.items()
        if f["single_feature_score"] is not None
        and f["single_feature_score"] >= leakage - NEAR_LEAKAGE
    ]
    return {
        "time": _time(split),
        "features": features,
        "feature_scores_method": {
            "importance": "permutation importance on held-out rows (mean drop of the first goal "
            "metric; std over shuffles; se over 10 disjoint blocks of the rows)",
            "single_feature_score": "best one-vs-rest ROC AUC of a one-feature rule learned on "
            "the training rows, on the held-out rows",
            "leakage_auc": leakage,
        },
        "near_leakage": near,
        "rare_categories": _rare(split.train, schema),
        "thin_slices": _thin(split.test, schema, config),
        "labellers": [asdict(s) for s in labellers],
        "human_goals": human,
    }


def _time(split: Split) -> dict[str, Any] | None:
    axis = split.axis
    if axis is None:
        return None
    return {
        "column": axis.column,
        "format": axis.format,
        "detected": axis.detected,
        "periods": {part: split.period(part) for part in ("train", "test", "production")},
        "rows": {
            "train": len(split.train),
            "test": len(split.test),
            "production": len(split.production),
        },
    }


def _rare(train: pd.DataFrame, schema: FeatureSchema) -> dict[str, dict[str, int]]:
    """Feature -> its rarest categories and their training rows (see `RARE_SHARE`)."""
    floor = min(RARE_CAP, max(RARE_ROWS, RARE_SHARE * len(train)))
    out = {}
    for name in schema.categorical:
        counts = train[name].map(category_text).dropna().value_counts()
        rare = counts[counts < floor].sort_values()
        if len(rare):
            out[name] = {str(k): int(v) for k, v in rare.head(RARE_LISTED).items()} | (
                {"(more)": int(len(rare) - RARE_LISTED)} if len(rare) > RARE_LISTED else {}
            )
    return out


def _thin(test: pd.DataFrame, schema: FeatureSchema, config: OccamConfig) -> dict[str, Any]:
    """Slice column (or categorical feature) -> how many of its values have fewer held-out
    rows than `evaluation.min_slice_rows` (`min_rows`): their errors are not measured."""
    columns = config.evaluation.slices or schema.categorical
    floor = config.evaluation.min_slice_rows
    out: dict[str, int] = {}
    for name in columns:
        if name not in test:
            continue
        counts = test[name].map(category_text).dropna().value_counts()
        thin = int((counts < floor).sum())
        if thin:
            out[name] = thin
    return {"min_rows": floor, "columns": out}

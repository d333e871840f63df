"""Label quality: "I don't know" labels, agreement between labellers, likely label errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from occam.config import OccamConfig
from occam.metadata import LabelsRecord


class LabelQualityError(ValueError):
    """Too many "I don't know" labels: the information needed may not be in the data."""


#: What happened to the labels: the bundle's record of it (`occam.metadata.LabelsRecord`).
LabelReport = LabelsRecord


def majority_vote(votes: pd.DataFrame, tie_label: str) -> pd.Series:
    """Most frequent label per row (missing votes ignored); ties and no votes give `tie_label`."""

    def vote(row: pd.Series) -> str:
        counts = row.dropna().astype(str).value_counts()
        if counts.empty or (len(counts) > 1 and counts.iloc[0] == counts.iloc[1]):
            return tie_label
        return str(counts.index[0])

    return votes.apply(vote, axis=1)


def fleiss_kappa(votes: pd.DataFrame) -> float | None:
    """Fleiss' kappa over rows where every labeller gave a label (1 = perfect agreement,
    0 = chance level, negative = worse than chance). None when it is undefined."""
    complete = votes.dropna().astype(str)
    n_raters = complete.shape[1]
    if n_raters < 2 or len(complete) == 0:
        return None
    categories = sorted(pd.unique(complete.to_numpy().ravel()))
    counts = np.stack([(complete == c).sum(axis=1).to_numpy() for c in categories], axis=1)
    p_cat = counts.sum(axis=0) / counts.sum()
    p_row = ((counts * (counts - 1)).sum(axis=1)) / (n_raters * (n_raters - 1))
    p_bar, p_e = p_row.mean(), float((p_cat**2).sum())
    if p_e == 1.0:
        return 1.0 if p_bar == 1.0 else None
    return float((p_bar - p_e) / (1 - p_e))


def resolve_labels(
    frame: pd.DataFrame, config: OccamConfig, review_dir: Path
) -> tuple[pd.DataFrame, LabelReport]:
    """Build the target (from annotators when configured), drop "I don't know" rows, and stop
    when their share is above `labels.max_unknown_share`.

    Returns the frame with only known labels and the report. Writes the disagreeing rows to
    `review_dir/label_disagreements.csv` when annotators are configured.
    """
    labels = config.labels
    target = config.data.target
    frame = frame.copy()
    kappa, disagreeing, disagreement_file = None, 0, None
    if labels.annotators:
        votes = frame[labels.annotators]
        tie = labels.unknown_values[0] if labels.unknown_values else "unknown"
        frame[target] = majority_vote(votes, tie)
        kappa = fleiss_kappa(votes)
        differs = votes.astype(str).nunique(axis=1, dropna=True) > 1
        disagreeing = int(differs.sum())
        if disagreeing:
            review_dir.mkdir(parents=True, exist_ok=True)
            path = review_dir / "label_disagreements.csv"
            frame[differs].to_csv(path, index_label="row")
            disagreement_file = str(path)
        unknown_values = {*labels.unknown_values, tie}
    else:
        unknown_values = set(labels.unknown_values)
    is_unknown = frame[target].astype(str).isin(unknown_values)
    unknown_rows = int(is_unknown.sum())
    share = unknown_rows / max(len(frame), 1)
    if share > labels.max_unknown_share:
        raise LabelQualityError(
            f'{unknown_rows} of {len(frame)} labels ({share:.1%}) are "I don\'t know" '
            f"({sorted(unknown_values)}), above labels.max_unknown_share="
            f"{labels.max_unknown_share}: the information needed to decide may not be in the "
            "data. Collect features that let people decide, or relabel, before training."
        )
    report = LabelReport(
        rows=len(frame),
        unknown_rows=unknown_rows,
        unknown_share=round(share, 6),
        annotators=tuple(labels.annotators),
        kappa=None if kappa is None else round(kappa, 6),
        disagreeing_rows=disagreeing,
        disagreement_file=disagreement_file,
    )
    return frame[~is_unknown], report


def find_label_issues(y: pd.Series, oof_proba: np.ndarray, classes: list[str]) -> pd.Series:
    """Positions of rows whose label looks wrong given out-of-fold probabilities (cleanlab's
    confident learning), most suspicious first."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    index = {c: i for i, c in enumerate(classes)}
    codes = y.astype(str).map(index).to_numpy()
    ranked = cleanlab_find(
        labels=codes, pred_probs=oof_proba, return_indices_ranked_by="self_confidence"
    )
    return pd.Series(ranked, dtype=int)

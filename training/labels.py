"""Label quality: "I don't know" labels, agreement between labellers, likely label errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from occam.config import OccamConfig
from occam.metrics import score
from occam.schema import canonical_text


class LabelQualityError(ValueError):
    """Too many "I don't know" labels: the information needed may not be in the data."""


@dataclass(frozen=True)
class LabelReport:
    """What happened to the labels. `kappa` is Fleiss' kappa (None with fewer than 2 labellers)."""

    rows: int
    unknown_rows: int
    unknown_share: float
    annotators: tuple[str, ...] = ()
    kappa: float | None = None
    disagreeing_rows: int = 0
    disagreement_file: str | None = None
    label_issue_rows: int = 0
    label_issue_file: str | None = None


def canonical_labels(values: pd.Series, column: str) -> pd.Series:
    """Each label as its canonical text (`occam.schema.canonical_text`: 1 and 1.0 read "1"),
    None where missing; the same text serving and feedback give the label. Raises
    `LabelQualityError` naming `column` for a value that is no label."""
    try:
        return values.map(canonical_text).astype(object)
    except ValueError as exc:
        raise LabelQualityError(f"label column `{column}`: {exc}") from None


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
        votes = pd.DataFrame({c: canonical_labels(frame[c], c) for c in labels.annotators})
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
        frame[target] = canonical_labels(frame[target], target)
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


@dataclass(frozen=True)
class LabellerScore:
    """One labeller against the consensus of the others (their own vote does not count in
    their favour): on the rows they labelled where the others' majority is a known class.

    `accuracy` is the share of those rows where they agree with it; `kappa` Cohen's kappa
    (agreement beyond chance; None when undefined); `goals` each goal metric of their labels
    as predictions, on the held-out test rows only (as the model is scored).
    """

    name: str
    rows: int
    accuracy: float | None
    kappa: float | None
    goals: dict[str, float]


def labeller_scores(
    frame: pd.DataFrame,
    test: pd.DataFrame,
    config: OccamConfig,
    classes: list[str],
    positive: str,
) -> list[LabellerScore]:
    """Each `labels.annotators` column scored against the majority of the other labellers on
    `frame` (all labelled rows) and, for the goal metrics, on `test` (the held-out rows)."""
    annotators = config.labels.annotators
    if len(annotators) < 2:
        return []
    out = []
    for name in annotators:
        others = [a for a in annotators if a != name]
        agree, kappa, rows = _against_others(frame, name, others, classes)
        goals = {}
        mine, truth = _pairs(test, name, others, classes)
        if len(mine):
            onehot = (np.asarray(mine)[:, None] == np.asarray(classes)[None, :]).astype(float)
            for goal in config.goals:
                value = score(goal.metric, np.asarray(truth), onehot, classes, positive)
                goals[goal.metric] = round(float(value), 6)
        out.append(LabellerScore(name, rows, agree, kappa, goals))
    return out


def human_level(scores: list[LabellerScore], metric: str) -> float | None:
    """The average labeller's `metric` on the held-out rows (labellers without a score left
    out); None when no labeller has one."""
    values = [s.goals[metric] for s in scores if not np.isnan(s.goals.get(metric, np.nan))]
    return round(float(np.mean(values)), 6) if values else None


def _pairs(
    frame: pd.DataFrame, name: str, others: list[str], classes: list[str]
) -> tuple[pd.Series, pd.Series]:
    """(labeller's label, others' majority) on rows where both are known classes."""
    if frame.empty:
        return pd.Series(dtype=object), pd.Series(dtype=object)
    mine = canonical_labels(frame[name], name)
    votes = pd.DataFrame({c: canonical_labels(frame[c], c) for c in others})
    truth = majority_vote(votes, tie_label="\x00tie")
    keep = mine.isin(classes) & truth.isin(classes)
    return mine[keep], truth[keep]


def _against_others(
    frame: pd.DataFrame, name: str, others: list[str], classes: list[str]
) -> tuple[float | None, float | None, int]:
    mine, truth = _pairs(frame, name, others, classes)
    if not len(mine):
        return None, None, 0
    agree = float((mine.to_numpy() == truth.to_numpy()).mean())
    from sklearn.metrics import cohen_kappa_score

    kappa = float(cohen_kappa_score(truth, mine, labels=classes))
    return round(agree, 6), (None if np.isnan(kappa) else round(kappa, 6)), len(mine)


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

"""Pictures of a training run: the model card's reliability PNG (under `output.reports_dir`)
and the tracking store's figures (ROC and precision-recall curves, the calibration curve, the
worst slices, the search path). Matplotlib's Agg backend only: no display, nothing at import
time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from occam.metadata import BundleMetadata
    from training.tracking import EvalRows


def _figure(title: str) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=100)
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    return figure, axes


def close(figure: Figure) -> None:
    """Free a figure (Figure objects are not tracked by pyplot, so this only clears it)."""
    figure.clear()


def curves(rows: EvalRows) -> list[tuple[str, Figure]]:
    """ROC, precision-recall and calibration of the positive class on `rows`."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    y = rows.labels == rows.positive
    if y.all() or not y.any():
        return []
    p = rows.proba[:, rows.classes.index(rows.positive)]
    out = []
    fpr, tpr, _ = roc_curve(y, p)
    figure, axes = _figure(f"ROC, {rows.positive} ({rows.source} rows, n={len(y)})")
    axes.plot(fpr, tpr)
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    out.append(("roc", figure))
    precision, recall, _ = precision_recall_curve(y, p)
    figure, axes = _figure(f"Precision-recall, {rows.positive} ({rows.source} rows)")
    axes.plot(recall, precision)
    axes.axhline(y.mean(), linestyle=":", color="grey")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    out.append(("precision_recall", figure))
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
    figure, axes = _figure(f"Calibration, {rows.positive} ({rows.source} rows)")
    axes.plot(predicted, observed, marker="o")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set_xlabel("mean predicted probability")
    axes.set_ylabel("observed share")
    out.append(("calibration", figure))
    return out


def slices(metadata: BundleMetadata, most: int = 15) -> list[tuple[str, Figure]]:
    """The `most` worst slices (by the slice metric) on the held-out rows, as bars."""
    found = metadata.slices
    metric = found.metric
    bars = [
        (f"{column}={row.value}", row.score)
        for column, rows in found.columns.items()
        for row in rows
        if np.isfinite(row.score)
    ]
    if not bars:
        return []
    bars = sorted(bars, key=lambda b: b[1])[:most]
    figure, axes = _figure(f"Worst slices by {metric} (held-out rows)")
    axes.barh([b[0] for b in bars][::-1], [b[1] for b in bars][::-1])
    axes.set_xlabel(str(metric))
    axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    return [("slices", figure)]


def search_path(metadata: BundleMetadata) -> list[tuple[str, Figure]]:
    """The best cross-validated score after each search round."""
    model = metadata.model
    scores = list(model.search.round_best_scores)
    if not scores:
        return []
    figure, axes = _figure(f"Converging search: best {model.scoring} per round")
    axes.plot(range(1, len(scores) + 1), scores, marker="o")
    axes.set_xlabel("round")
    axes.set_ylabel(f"best cross-validated {model.scoring}")
    return [("search_path", figure)]


def figures(metadata: BundleMetadata, rows: EvalRows | None) -> list[tuple[str, Figure]]:
    """Every plot that the bundle's metadata and the rows allow."""
    return [
        *(curves(rows) if rows is not None else []),
        *slices(metadata),
        *search_path(metadata),
    ]


def reliability_png(curves: dict[str, dict[str, Any]], path: Path, title: str) -> Path:
    """Draw reliability curves (name -> `training.calibration.reliability` result) on one
    chart, with the diagonal of perfect calibration and a histogram of the rows per bin of the
    first curve; write it to `path` and return it."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    first = next(iter(curves.values()))
    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(6, 6.5), height_ratios=[3, 1], sharex=True, constrained_layout=True
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    markers = iter(["o", "s", "^", "D"])
    for name, rel in curves.items():
        xs = [p["predicted"] for p in rel["curve"]]
        ys = [p["observed"] for p in rel["curve"]]
        ax.plot(xs, ys, marker=next(markers), label=f"{name} (ECE {rel['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    width = 1 / first["bins"]
    hist.bar(
        [p["bin"] * width + width / 2 for p in first["curve"]],
        [p["rows"] for p in first["curve"]],
        width=width * 0.9,
        color="tab:blue",
        alpha=0.6,
    )
    hist.set_ylabel("rows per bin")
    hist.set_title(f"rows per bin: {next(iter(curves))}", fontsize=9)
    hist.set_xlabel(f"predicted {first['kind']}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

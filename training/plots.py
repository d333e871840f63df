"""Pictures for the model card (PNG files under `output.reports_dir`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


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

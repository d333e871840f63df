"""Search efficiency: converging random search against grid, random and successive-halving
search at comparable fit budgets, on the bundled flights data and a scikit-learn dataset; then
the full `occam train` wall time and peak memory on the default config.

Run: `.venv/bin/python bench/bench_search.py` (about 10-15 minutes on 2 cores). Figures go to
bench/results/search.json and bench/results/search.md. Scores are cross-validated ROC AUC of
the same forest pipeline; the grid is a discretised version of the same space.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import loguniform, randint, uniform
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingRandomSearchCV,
    KFold,
    RandomizedSearchCV,
    StratifiedKFold,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from occam.config import load_config  # noqa: E402
from occam.schema import FeatureSchema  # noqa: E402
from training.data import load_frame, split_frame  # noqa: E402
from training.model import make_pipeline  # noqa: E402
from training.search import ConvergingSearchCV  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: converging: as configured (stops when a round gains < 1e-3); converging_full: tol=0, so it
#: spends the same 24-candidate budget as the random searches.
METHODS = ("converging", "converging_full", "random", "random_log", "halving")
GRID = {
    "forest__min_samples_leaf": [1, 2, 4, 8, 16, 32, 64, 128],
    "forest__max_features": [0.1, 0.25, 0.4, 0.55, 0.7, 1.0],
    "forest__max_depth": [None, 12, 20],
}
SPACE = {
    "forest__min_samples_leaf": {"low": 1, "high": 128, "log": True},
    "forest__max_features": {"low": 0.1, "high": 1.0},
    "forest__max_depth": [None, 12, 20],
}
DISTRIBUTIONS = {
    "forest__min_samples_leaf": randint(1, 129),
    "forest__max_features": uniform(0.1, 0.9),
    "forest__max_depth": [None, 12, 20],
}


class LogUniformInt:
    """Integers drawn log-uniformly in [low, high] (scipy's loguniform is continuous)."""

    def __init__(self, low: int, high: int) -> None:
        self.dist = loguniform(low, high + 1)

    def rvs(self, random_state: Any = None, size: Any = None) -> int:
        return int(self.dist.rvs(random_state=random_state))


DISTRIBUTIONS_LOG = {**DISTRIBUTIONS, "forest__min_samples_leaf": LogUniformInt(1, 128)}


def flights(rows: int) -> tuple[pd.DataFrame, np.ndarray, Any, Any]:
    config = load_config(ROOT / "occam.yaml")
    frame = load_frame(config.data.path)
    train = split_frame(frame, config).train.tail(rows)
    schema = FeatureSchema.from_frame(
        train, list(config.data.numeric or []), list(config.data.categorical or [])
    )
    pipeline = make_pipeline(
        schema.numeric,
        schema.categorical,
        {"n_estimators": 50, "class_weight": "balanced_subsample"},
        0,
    )
    return schema.coerce(train), train["late"].to_numpy(), pipeline, KFold(3)


def breast_cancer() -> tuple[pd.DataFrame, np.ndarray, Any, Any]:
    data = load_breast_cancer(as_frame=True)
    x = data.data
    pipeline = make_pipeline(list(x.columns), [], {"n_estimators": 50}, 0)
    return x, data.target.to_numpy(), pipeline, StratifiedKFold(3, shuffle=True, random_state=0)


def timed(search: Any, x: pd.DataFrame, y: np.ndarray) -> dict[str, Any]:
    start = time.perf_counter()
    search.fit(x, y)
    seconds = time.perf_counter() - start
    results = search.cv_results_
    n_splits = search.n_splits_
    if "n_resources" in results:  # halving: fits at each iteration's sample size
        fits = len(results["params"]) * n_splits
        resources = float(np.sum(results["n_resources"]) * n_splits)
    else:
        fits = len(results["params"]) * n_splits
        resources = float(fits * len(x))
    return {
        "best": float(search.best_score_),
        "fits": fits,
        "seconds": seconds,
        "sample_fits": resources / len(x),
        "params": str(search.best_params_),
    }


def run_dataset(
    name: str, x: pd.DataFrame, y: np.ndarray, pipeline: Any, cv: Any, seeds: list[int], n_jobs: int
) -> dict[str, Any]:
    common = {"scoring": "roc_auc", "cv": cv, "n_jobs": n_jobs}
    print(f"[{name}] grid: {np.prod([len(v) for v in GRID.values()])} candidates", flush=True)
    out: dict[str, Any] = {
        "rows": len(x),
        "grid": timed(GridSearchCV(pipeline, GRID, **common), x, y),
    }
    budget_candidates = 24  # 6 candidates x 4 rounds at most
    for method in METHODS:
        runs = []
        for seed in seeds:
            if method.startswith("converging"):
                search: Any = ConvergingSearchCV(
                    pipeline,
                    SPACE,
                    n_candidates=6,
                    max_rounds=4,
                    min_rounds=2,
                    tol=0.0 if method == "converging_full" else 1e-3,
                    random_state=seed,
                    **common,
                )
            elif method.startswith("random"):
                dist = DISTRIBUTIONS_LOG if method == "random_log" else DISTRIBUTIONS
                search = RandomizedSearchCV(
                    pipeline, dist, n_iter=budget_candidates, random_state=seed, **common
                )
            else:
                search = HalvingRandomSearchCV(
                    pipeline,
                    DISTRIBUTIONS_LOG,
                    n_candidates=48,
                    factor=2,
                    min_resources=len(x) // 16,
                    random_state=seed,
                    **common,
                )
            runs.append(timed(search, x, y))
            print(
                f"[{name}] {method} seed {seed}: {runs[-1]['best']:.4f} "
                f"in {runs[-1]['fits']} fits, {runs[-1]['seconds']:.0f}s",
                flush=True,
            )
        out[method] = {
            "best_mean": float(np.mean([r["best"] for r in runs])),
            "best_min": float(np.min([r["best"] for r in runs])),
            "fits_mean": float(np.mean([r["fits"] for r in runs])),
            "sample_fits_mean": float(np.mean([r["sample_fits"] for r in runs])),
            "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
            "runs": runs,
        }
    return out


def full_train() -> dict[str, Any]:
    """`occam train` on the default config in a subprocess: wall time and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "BENTOML_HOME": str(Path(tmp) / "store"),
            "BENTOML_DO_NOT_TRACK": "True",
        }
        config = Path(tmp) / "occam.yaml"
        text = (ROOT / "occam.yaml").read_text()
        text = text.replace("path: data/flights.csv.gz", f"path: {ROOT}/data/flights.csv.gz")
        text = text.replace("reports_dir: reports", f"reports_dir: {tmp}/reports")
        config.write_text(text)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "occam.cli", "train", "--config", str(config)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"exit_code": done.returncode, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Search benchmark",
        "",
        f"Command: `{results['command']}`; machine: "
        f"{os.cpu_count()} cores; n_jobs={results['n_jobs']}; seeds {results['seeds']}.",
        "",
    ]
    for name, data in results["datasets"].items():
        grid = data["grid"]
        lines += [
            f"## {name} ({data['rows']} rows)",
            "",
            "| method | best CV ROC AUC (mean / worst seed) | % of grid best | fits | "
            "% of grid fits | full-data fit equivalents | seconds |",
            "|---|---|---|---|---|---|---|",
            f"| grid | {grid['best']:.4f} | 100.0 | {grid['fits']} | 100 | "
            f"{grid['sample_fits']:.0f} | {grid['seconds']:.0f} |",
        ]
        for method in METHODS:
            m = data[method]
            lines.append(
                f"| {method} | {m['best_mean']:.4f} / {m['best_min']:.4f} | "
                f"{100 * m['best_min'] / grid['best']:.2f} (worst seed) | {m['fits_mean']:.0f} | "
                f"{100 * m['fits_mean'] / grid['fits']:.0f} | {m['sample_fits_mean']:.0f} | "
                f"{m['seconds_mean']:.0f} |"
            )
        lines.append("")
    t = results.get("full_train")
    if t:
        lines += [
            "## `occam train` on the default config",
            "",
            f"Exit code {t['exit_code']}, wall time {t['seconds']:.0f} s, peak RSS "
            f"(largest process) {t['peak_rss_mb']:.0f} MB.",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--flights-rows", type=int, default=12_000)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    results: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "seeds": seeds,
        "n_jobs": args.n_jobs,
        "datasets": {},
    }
    for name, loader in (
        ("flights", lambda: flights(args.flights_rows)),
        ("breast_cancer", breast_cancer),
    ):
        x, y, pipeline, cv = loader()
        results["datasets"][name] = run_dataset(name, x, y, pipeline, cv, seeds, args.n_jobs)
    if not args.skip_train:
        results["full_train"] = full_train()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "search.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()

"""Can any retraining rule recover the goals on the later months? An upper-bound study.

On the bundled flights data (default occam.yaml, the quick config of bench/bench_retrain.py):
for each later month M (October, November, December) Occam's own training pipeline
(`training.pipeline.train`: the same checks, search, calibration and decision weights) is run on
one training set per rule, with month M as its held-out test set, and each model is scored on
every row of M (true labels) with the project's bootstrap intervals
(`training.evaluate.bootstrap_ci`) and the paired interval of its difference from the champion
(`training.challenger.paired_bootstrap`), for both goals.

Training sets (rows before M only; "production" rows are July up to M, the served period):

- `champion`: the champion itself, trained on January-June as `occam train` does (its last 20%
  held out);
- `all+30%`: every original row (January-June) and the production rows whose label came back,
  a random 30% of them (the same draw for every M), at weight 1;
- `all+100%`: every original row and every production row (all labels came back);
- `last90+30%`: only the 90 days before M (original rows in that window, labelled production
  rows at 30%): a recent window;
- `rule90+30%`: `occam retrain`'s rule before this study (`retrain.original: last_days`, 90
  days of original data before production_start) and the labelled production rows at 30%;
- `all+30% x3`, `all+30% hl60`: as `all+30%` with `occam retrain`'s recency weights
  (`retrain.log_weight: 3`; `retrain.original_half_life_days: 60`).

Every challenger here trains on ALL labelled production rows before M, while `occam retrain`
holds out its newest labelled rows for the champion-vs-challenger gate: these figures bound
what a retrain can reach from above.

Run: `.venv/bin/python bench/bench_retrain_bound.py` (about 30-40 min on 2 busy cores;
`--months 2013-10` and `--variants` narrow it). Writes bench/results/retrain_bound.json and
retrain_bound.md. Uses a private BentoML store: the developer's store is not touched.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="occam-bench-bound-")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

from bench.bench_retrain import bench_config  # noqa: E402
from occam.bundle import Bundle  # noqa: E402
from occam.config import OccamConfig  # noqa: E402
from training.challenger import paired_bootstrap  # noqa: E402
from training.data import load_frame  # noqa: E402
from training.evaluate import bootstrap_ci, score  # noqa: E402
from training.pipeline import train  # noqa: E402
from training.retrain import RecencyWeights  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MONTHS = ("2013-10", "2013-11", "2013-12")


@dataclass(frozen=True)
class Rule:
    """A training-set rule: which original rows (`all`, a `window` of the `days` before M, or
    `last_days`: `occam retrain`'s rule, the `days` before production_start), the labelled
    share of production rows, and `occam retrain`'s sample weights (`retrain.log_weight`,
    `retrain.original_half_life_days`)."""

    original: str
    share: float
    days: float | None = None
    log_weight: float = 1.0
    half_life_days: float | None = None


VARIANTS: dict[str, Rule] = {
    "all+30%": Rule("all", 0.3),
    "all+100%": Rule("all", 1.0),
    "last90+30%": Rule("window", 0.3, days=90.0),
    "rule90+30%": Rule("last_days", 0.3, days=90.0),
    "all+30% x3": Rule("all", 0.3, log_weight=3.0),
    "all+30% hl60": Rule("all", 0.3, half_life_days=60.0),
}


def training_rows(
    frame: pd.DataFrame,
    times: pd.Series,
    production_start: pd.Timestamp,
    month_start: pd.Timestamp,
    labelled: dict[float, np.ndarray],
    rule: Rule,
) -> np.ndarray:
    """Mask of `frame`'s rows a challenger of `rule` trains on when month M starts at
    `month_start`. `labelled[share]` is the fixed random draw of production rows whose label
    came back at that share."""
    original = (times < production_start).to_numpy()
    production = ((times >= production_start) & (times < month_start)).to_numpy()
    fed = production & labelled[rule.share]
    if rule.original == "all":
        return original | fed
    assert rule.days is not None
    if rule.original == "window":
        recent = (times >= month_start - pd.Timedelta(days=rule.days)).to_numpy()
        return (original | fed) & recent
    # last_days: `occam retrain`'s rule, days counted back from the newest original row
    newest = times[original].max()
    kept = original & (times >= newest - pd.Timedelta(days=rule.days)).to_numpy()
    return kept | fed


def weights_of(
    rule: Rule, times: pd.Series, production_start: pd.Timestamp
) -> RecencyWeights | None:
    """`occam retrain`'s sample-weight rule (`training.retrain.RecencyWeights`) for the rows
    at `times` (time-ordered, index 0..n-1, so the original rows come first), None when every
    row weighs the same."""
    if rule.log_weight == 1.0 and rule.half_life_days is None:
        return None
    original = times < production_start
    return RecencyWeights(
        int(original.sum()),
        times[original].reset_index(drop=True),
        rule.half_life_days,
        rule.log_weight,
    )


def variant_config(config: OccamConfig, month_start: str) -> OccamConfig:
    """The config a bound model trains with: month M (the last rows of the frame it is given)
    is its test set."""
    split = config.data.split.model_copy(
        update={"production_start": None, "test_start": month_start}
    )
    data = config.data.model_copy(update={"split": split})
    return config.model_copy(update={"data": data})


def month_scores(
    config: OccamConfig, month: pd.DataFrame, model: Bundle, champion: Bundle
) -> dict[str, Any]:
    """Each goal metric of `model` on `month` (true labels) with its bootstrap interval, and the
    paired interval of (model - champion); each model answers by its own decision weights."""
    y = month[config.data.target].astype(str).to_numpy()
    known = np.isin(y, champion.classes)
    y = y[known]
    classes = list(champion.classes)
    positive = champion.metadata.positive_label
    ev = config.evaluation
    proba = {
        b.tag: b.load_pipeline().predict_proba(b.schema.coerce(month[known]))
        for b in {model.tag: model, champion.tag: champion}.values()
    }
    out: dict[str, Any] = {"rows": int(known.sum())}
    for goal in config.goals:
        m = goal.metric
        p, c = proba[model.tag], proba[champion.tag]
        value = score(m, y, p, classes, positive, model.decision_weights)
        low, high = bootstrap_ci(
            m,
            y,
            p,
            classes,
            positive,
            ev.bootstrap,
            ev.confidence,
            config.seed,
            model.decision_weights,
        )
        diff = (
            (0.0, 0.0)
            if model.tag == champion.tag
            else paired_bootstrap(
                m,
                y,
                c,
                p,
                classes,
                positive,
                ev.bootstrap,
                ev.confidence,
                config.seed,
                champion_weights=champion.decision_weights,
                challenger_weights=model.decision_weights,
            )
        )
        champion_value = score(m, y, c, classes, positive, champion.decision_weights)
        out[m] = {
            "threshold": goal.threshold,
            "value": value,
            "ci": [low, high],
            "difference": value - champion_value,
            "difference_ci": list(diff),
            "meets": value >= goal.threshold,
            "surely_meets": low >= goal.threshold,
        }
    return out


def render(report: dict[str, Any]) -> str:
    goals = report["goals"]
    lines = [
        "# Upper bound: can any retraining rule recover the goals on the later months?",
        "",
        f"Command: `{report['command']}` ({report['seconds']:.0f} s, quick config of "
        "bench/bench_retrain.py, load average during the run "
        f"{report['load'][0]:.1f}-{report['load'][1]:.1f} on {os.cpu_count()} cores).",
        "",
        "Each row: Occam's training pipeline (`training.pipeline.train`, same checks, search, "
        "calibration and decision weights) on the training set of the rule, scored on every "
        "row of month M (true labels). 95% percentile bootstrap intervals "
        f"({report['bootstrap']} resamples); the difference from the champion is paired (both "
        "models on the same resampled rows). Goals: "
        + ", ".join(f"{m} {t}" for m, t in goals.items())
        + ". `meets`: the value is at or over the goal; `surely`: the interval's lower bound "
        "is too.",
        "",
        "Rules (every challenger trains on all rows before M it may see, so these bound "
        "`occam retrain`, which also holds out its newest labelled rows for the gate):",
        "",
        "- champion: January-June, as `occam train` (the model in production);",
        "- all+30%: every original row + the production rows (July up to M) whose label came "
        "back, a random 30%;",
        "- all+100%: every original row + every production row up to M (all labels);",
        "- last90+30%: only the 90 days before M (original rows there + labelled production "
        "rows at 30%);",
        "- rule90+30%: the former default rule of `occam retrain` (the last 90 days of "
        "original data) + labelled production rows at 30%;",
        "- all+30% x3, all+30% hl60: as all+30% with `occam retrain`'s sample weights "
        "(`retrain.log_weight: 3`: each production row weighs 3; "
        "`retrain.original_half_life_days: 60`: an original row's weight halves every 60 days "
        "before June's end).",
        "",
        "| month M | rule | training rows | "
        + " | ".join(f"{m} [CI] | vs champion [paired CI]" for m in goals)
        + " |",
        "|---|---|---:|" + "---|---|" * len(goals),
    ]
    for month, rows in report["months"].items():
        for name, result in rows.items():
            cells = []
            for m in goals:
                g = result["scores"][m]
                mark = " surely meets" if g["surely_meets"] else (" meets" if g["meets"] else "")
                cells.append(f"{g['value']:.4f} [{g['ci'][0]:.4f}, {g['ci'][1]:.4f}]{mark}")
                d = g["difference_ci"]
                cells.append(
                    "-"
                    if name == "champion"
                    else f"{g['difference']:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}]"
                )
            lines.append(
                f"| {month} | {name} | {result['train_rows']} | " + " | ".join(cells) + " |"
            )
    lines += ["", *report["findings"], ""]
    return "\n".join(lines)


def findings(report: dict[str, Any]) -> list[str]:
    """Plain statements read off the table: per month and goal the best rule and how far it
    is from the goal and from the champion, and which rules meet every goal."""
    out = ["## What the table says", ""]
    goals = report["goals"]
    for month, rows in report["months"].items():
        rules = [n for n in rows if n != "champion"]
        parts = []
        for metric, threshold in goals.items():
            best = max(rules, key=lambda n: rows[n]["scores"][metric]["value"])
            b, c = rows[best]["scores"][metric], rows["champion"]["scores"][metric]
            d = b["difference_ci"]
            parts.append(
                f"{metric}: champion {c['value']:.4f}, best rule {best} {b['value']:.4f} "
                f"({b['value'] - threshold:+.4f} from the goal {threshold}; "
                f"{b['difference']:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}] from the champion)"
            )
        champion_meets = all(rows["champion"]["scores"][m]["meets"] for m in goals)
        meeting = [n for n in rules if all(rows[n]["scores"][m]["meets"] for m in goals)]
        out.append(
            f"- {month}: "
            + "; ".join(parts)
            + ". The champion "
            + ("meets every goal" if champion_meets else "misses a goal")
            + "; rules meeting every goal: "
            + (", ".join(meeting) or "none")
            + "."
        )
    out += ["", "Mean over the months, per rule (each month weighs the same):", ""]
    months = list(report["months"].values())
    for metric in goals:
        means = {
            n: float(np.mean([r[n]["scores"][metric]["value"] for r in months])) for n in months[0]
        }
        ranked = sorted(means, key=lambda n: means[n], reverse=True)
        out.append(f"- {metric}: " + ", ".join(f"{n} {means[n]:.4f}" for n in ranked) + ".")
    return out


def say(message: str) -> None:
    """Progress on stdout, at once."""
    print(message, flush=True)


def say_stage(prefix: str, message: str) -> None:
    say(f"{prefix}: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", nargs="+", default=list(MONTHS), help="YYYY-MM, later months")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="training-set rules besides the champion",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only write retrain_bound.md again from a saved retrain_bound.json (no training)",
    )
    args = parser.parse_args()
    if args.render is not None:
        saved: dict[str, Any] = json.loads(args.render.read_text())
        saved["findings"] = findings(saved)
        args.render.write_text(json.dumps(saved, indent=2, default=str))
        (RESULTS / "retrain_bound.md").write_text(render(saved))
        return
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="occam-bench-bound-work-"))
    config = bench_config(folder, quick=True, original=None)
    labels_cfg = config.labels.model_copy(update={"find_label_issues": False})
    config = config.model_copy(update={"labels": labels_cfg})  # a review file nobody reads here

    champion_run = train(config, on_stage=functools.partial(say_stage, "champion"))
    champion = champion_run.bundle
    time_column = config.data.time_column
    assert time_column is not None and config.data.split.production_start is not None
    frame = load_frame(config.data.path)
    frame = frame.iloc[pd.to_datetime(frame[time_column]).argsort(kind="stable")]
    frame = frame.reset_index(drop=True)
    times = pd.to_datetime(frame[time_column])
    production_start = pd.Timestamp(str(config.data.split.production_start))
    draw = np.random.default_rng(config.seed).random(len(frame))
    labelled = {share: draw < share for share in {v.share for v in VARIANTS.values()}}

    months: dict[str, dict[str, Any]] = {}
    loads = [load_start]
    for month in args.months:
        start = pd.Timestamp(f"{month}-01")
        end = start + pd.offsets.MonthBegin(1)
        in_month = ((times >= start) & (times < end)).to_numpy()
        rows: dict[str, Any] = {
            "champion": {
                "train_rows": champion.metadata.data.train_rows,
                "tag": champion.tag,
                "scores": month_scores(config, frame[in_month], champion, champion),
            }
        }
        for name in args.variants:
            rule = VARIANTS[name]
            keep = training_rows(frame, times, production_start, start, labelled, rule)
            rows_of = frame[keep | in_month].reset_index(drop=True)
            rows_times = times[keep | in_month].reset_index(drop=True)
            result = train(
                variant_config(config, str(start.date())),
                on_stage=functools.partial(say_stage, f"{month} {name}"),
                frame=rows_of,
                sample_weight=weights_of(rule, rows_times, production_start),
            )
            rows[name] = {
                "train_rows": result.metadata.data.train_rows,
                "tag": result.bundle.tag,
                "train_period": result.metadata.data.train_period,
                "scores": month_scores(config, frame[in_month], result.bundle, champion),
            }
            loads.append(os.getloadavg()[0])
            say(f"{month} {name}: {json.dumps(rows[name]['scores'])}")
        months[month] = rows
    report: dict[str, Any] = {
        "command": "python bench/bench_retrain_bound.py"
        + (f" --months {' '.join(args.months)}" if args.months != list(MONTHS) else "")
        + (f" --variants {' '.join(args.variants)}" if args.variants != list(VARIANTS) else ""),
        "seconds": time.monotonic() - started,
        "load": [min(loads), max(loads)],
        "bootstrap": config.evaluation.bootstrap,
        "goals": {g.metric: g.threshold for g in config.goals},
        "champion": champion.tag,
        "champion_period": champion.metadata.data.train_period,
        "months": months,
    }
    report["findings"] = findings(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "retrain_bound.json").write_text(json.dumps(report, indent=2, default=str))
    text = render(report)
    (RESULTS / "retrain_bound.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Does retraining on production feedback help? Champion vs challenger on the later months.

On the bundled flights data (default occam.yaml): the champion is trained on January-June
(`occam train`'s pipeline). The first production months (July-September by default) are logged
as served, with the service's own log writer, each row at its scheduled departure time, and the
true label of a random 30% of them comes back as feedback. `occam retrain`'s pipeline builds the
retrain set, trains the challenger, and gates it against the champion on the newest labelled
rows. Then both models score the later months (October-December, every row, true labels):
each goal metric with its bootstrap interval, the paired interval of the difference, per month.
One challenger per sample-weight rule (`--variant`), all against the same champion.

Run: `.venv/bin/python bench/bench_retrain.py` (about 10-20 minutes on 2 busy cores; `--quick`
uses a smaller forest and search). Writes bench/results/retrain.json and retrain.md. Uses a
private BentoML store and folder: the developer's store and MLflow database are not touched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="occam-bench-retrain-")
os.environ["BENTOML_DO_NOT_TRACK"] = "True"

import yaml  # noqa: E402

from occam.config import OccamConfig, parse_config  # noqa: E402
from occam.loopback import rows_as_instances  # noqa: E402
from occam.records import FeedbackRecord, PredictionRecord, Record  # noqa: E402
from service.log import SegmentWriter  # noqa: E402
from training.challenger import paired_bootstrap  # noqa: E402
from training.data import load_frame  # noqa: E402
from training.evaluate import bootstrap_ci, score  # noqa: E402
from training.pipeline import train  # noqa: E402
from training.retrain import retrain  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: Challengers trained by default: equal weights, and recent rows weighted up.
DEFAULT_VARIANTS = ("equal weights:1:none", "recent weighted:3:30", "production-heavy:10:20")


def parse_variant(text: str) -> tuple[str, float, float | None]:
    """NAME:LOG_WEIGHT:HALF_LIFE_DAYS ('none': no half-life) -> its parts."""
    name, log_weight, half_life = text.rsplit(":", 2)
    return name, float(log_weight), None if half_life == "none" else float(half_life)


def bench_config(folder: Path, quick: bool, original: str | None) -> OccamConfig:
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    if original is not None:
        raw["retrain"] = {**raw.get("retrain", {}), "original": original}
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["reports_dir"] = str(folder / "reports")
    raw["serving"] = {**raw.get("serving", {}), "log_dir": str(folder / "logs")}
    raw["tracking"] = {"uri": f"sqlite:///{folder}/mlruns.db"}
    if quick:
        raw["model"]["params"]["n_estimators"] = 40
        raw["search"] |= {"n_candidates": 3, "max_rounds": 2, "min_rounds": 1, "cv": 2}
        raw["evaluation"]["bootstrap"] = 100
    return parse_config(raw, base_dir=folder)


def write_log(config: OccamConfig, frame: pd.DataFrame, share: float, seed: int) -> int:
    """Log `frame` as served at its scheduled departure; feedback for a random `share`."""
    features = [*(config.data.numeric or []), *(config.data.categorical or [])]
    writer = SegmentWriter(config.serving.log_dir, worker=1).start()
    served = pd.to_datetime(frame[config.data.time_column]).astype("int64") / 1e9
    chosen = np.random.default_rng(seed).random(len(frame)) < share
    records: list[Record] = []
    for i, (row, ts, label) in enumerate(
        zip(rows_as_instances(frame, features), served, frame[config.data.target], strict=True)
    ):
        records.append(
            PredictionRecord(
                id=f"p{i}",
                ts=float(ts),
                model_version="champion",
                features=row,
                label="",
                predicted="",
                probabilities={},
                abstained=False,
                marks={},
            )
        )
        if chosen[i]:
            records.append(FeedbackRecord(id=f"p{i}", ts=float(ts) + 3600, label=str(label)))
    writer.submit(records)
    writer.close()
    return int(chosen.sum())


def evaluate_later(
    config: OccamConfig, later: pd.DataFrame, champion: Any, challenger: Any, positive: str
) -> dict[str, Any]:
    """Each goal metric of both models on `later` (all rows and per month), with intervals."""
    y = later[config.data.target].astype(str).to_numpy()
    classes = champion.classes
    proba = {
        "champion": champion.load_pipeline().predict_proba(champion.schema.coerce(later)),
        "challenger": challenger.load_pipeline().predict_proba(challenger.schema.coerce(later)),
    }
    weights = {"champion": champion.decision_weights, "challenger": challenger.decision_weights}
    months = pd.to_datetime(later[config.data.time_column]).dt.strftime("%Y-%m").to_numpy()
    n_boot, conf, seed = config.evaluation.bootstrap, config.evaluation.confidence, config.seed
    out: dict[str, Any] = {"rows": len(later), "periods": {}}
    for period in ["all", *sorted(set(months))]:
        mask = np.ones(len(y), bool) if period == "all" else months == period
        table = {}
        for goal in config.goals:
            m = goal.metric
            row: dict[str, Any] = {"threshold": goal.threshold}
            for name, p in proba.items():
                # each model answers by its own decision weights, as the service does
                row[name] = score(m, y[mask], p[mask], classes, positive, weights[name])
                row[f"{name}_ci"] = bootstrap_ci(
                    m, y[mask], p[mask], classes, positive, n_boot, conf, seed, weights[name]
                )
            row["difference_ci"] = paired_bootstrap(
                m,
                y[mask],
                proba["champion"][mask],
                proba["challenger"][mask],
                classes,
                positive,
                n_boot,
                conf,
                seed,
                champion_weights=weights["champion"],
                challenger_weights=weights["challenger"],
            )
            table[m] = row
        out["periods"][period] = {"rows": int(mask.sum()), "goals": table}
    return out


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Retraining on production feedback: champion vs challenger on the later months",
        "",
        f"Command: `{report['command']}` ({report['seconds']:.0f} s, {report['mode']} config).",
        "",
        f"Champion `{report['champion']}`: trained on {report['champion_period'][0]} .. "
        f"{report['champion_period'][1]} (January-June, its last 20% held out as its test "
        f"set). Served: {report['served_rows']} rows of {report['served']}, logged by the "
        f"service's log writer; feedback for {report['feedback']} of them "
        f"({report['feedback_share']:.0%}, at random). Each challenger below is trained "
        "against this champion (held as a candidate, `retrain.promote: false`, so the champion "
        "stays the same) with its own sample-weight rule.",
        "",
    ]
    for variant in report["variants"]:
        lines += render_variant(variant)
    return "\n".join(lines)


def render_variant(result: dict[str, Any]) -> list[str]:
    later = result["later"]
    lines = [
        f"## Challenger `{result['challenger']}`: {result['name']}",
        "",
        f"Sample weights: production rows x{result['log_weight']:g}, original rows "
        + (
            f"halve every {result['half_life_days']:g} days of age."
            if result["half_life_days"] is not None
            else "all equal."
        )
        + f" {result['retrain_set']['original_rule_rows']} original rows (rule "
        f"`retrain.original={result['rule']}`) + {result['retrain_set']['log_train_rows']} "
        "labelled production rows; gated (and tested) on the "
        f"{result['retrain_set']['gate_rows']} newest labelled rows "
        f"({result['retrain_set']['gate_period'][0]} .. "
        f"{result['retrain_set']['gate_period'][1]}), which it did not train on.",
        "",
        f"Gate decision: **{'passed' if result['gate']['passed'] else 'refused'}**"
        + ("" if result["gate"]["passed"] else " (" + "; ".join(result["gate"]["reasons"]) + ")"),
        "",
        "| goal | threshold | champion (gate rows) | challenger (gate rows) | difference (CI) |",
        "|---|---|---|---|---|",
    ]
    for c in result["gate"]["comparisons"]:
        lines.append(
            f"| {c['metric']} | {c['threshold']} | {c['champion']:.4f} | {c['challenger']:.4f} "
            f"| {c['difference']:+.4f} [{c['difference_low']:+.4f}, {c['difference_high']:+.4f}] |"
        )
    lines += [
        "",
        f"### Later months ({result['later_months']}, every row, true labels)",
        "",
        "95% percentile bootstrap intervals; the difference (challenger - champion) interval is "
        "paired (both models on the same resampled rows).",
        "",
        "| period | rows | goal | threshold | champion [CI] | challenger [CI] | difference [CI] |",
        "|---|---|---|---|---|---|---|",
    ]
    for period, block in later["periods"].items():
        for metric, row in block["goals"].items():
            a, b = row["champion"], row["challenger"]
            ca, cb, cd = row["champion_ci"], row["challenger_ci"], row["difference_ci"]
            mark_a = "" if a >= row["threshold"] else " (misses)"
            mark_b = "" if b >= row["threshold"] else " (misses)"
            lines.append(
                f"| {period} | {block['rows']} | {metric} | {row['threshold']} "
                f"| {a:.4f} [{ca[0]:.4f}, {ca[1]:.4f}]{mark_a} "
                f"| {b:.4f} [{cb[0]:.4f}, {cb[1]:.4f}]{mark_b} "
                f"| {b - a:+.4f} [{cd[0]:+.4f}, {cd[1]:+.4f}] |"
            )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller forest and search")
    parser.add_argument("--feedback-share", type=float, default=0.3)
    parser.add_argument("--served-until", default="2013-10-01", help="first later-month date")
    parser.add_argument(
        "--original",
        choices=["all", "last_rows", "last_days", "none"],
        help="retrain.original rule (default: the config's); results get a _<rule> suffix",
    )
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME:LOG_WEIGHT:HALF_LIFE_DAYS",
        help="a challenger's sample-weight rule (retrain.log_weight, "
        "retrain.original_half_life_days or 'none'); repeatable. Default: "
        + ", ".join(DEFAULT_VARIANTS),
    )
    args = parser.parse_args()
    variants = [parse_variant(v) for v in args.variant or DEFAULT_VARIANTS]
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="occam-bench-retrain-work-"))
    config = bench_config(folder, args.quick, args.original)

    champion_run = train(config, on_stage=lambda m: print("champion:", m, flush=True))
    champion = champion_run.bundle
    if not champion_run.promoted:  # the champion must serve for the comparison to mean much
        raise SystemExit(f"the champion did not pass its goals: {champion_run.gate.to_dict()}")

    frame = load_frame(config.data.path)
    times = pd.to_datetime(frame[config.data.time_column])
    start = pd.Timestamp(config.data.split.production_start)
    cut = pd.Timestamp(args.served_until)
    served = frame[(times >= start) & (times < cut)].sort_values(config.data.time_column)
    later = frame[times >= cut].sort_values(config.data.time_column)
    later = later[~later[config.data.target].astype(str).isin(config.labels.unknown_values)]
    feedback = write_log(config, served, args.feedback_share, config.seed)

    positive = champion.metadata.positive_label
    results = []
    for name, log_weight, half_life in variants:
        rule = config.retrain.model_copy(
            update={
                "log_weight": log_weight,
                "original_half_life_days": half_life,
                "promote": False,  # every challenger meets the same champion
            }
        )
        variant_config = config.model_copy(update={"retrain": rule})
        say = lambda m, n=name: print(f"challenger ({n}):", m, flush=True)  # noqa: E731
        result = retrain(variant_config, on_stage=say)
        results.append(
            {
                "name": name,
                "log_weight": log_weight,
                "half_life_days": half_life,
                "challenger": result.train.bundle.tag,
                "rule": config.retrain.original
                + (
                    f" ({config.retrain.original_days:g} days)"
                    if config.retrain.original == "last_days"
                    else ""
                ),
                "retrain_set": result.summary,
                "gate": result.gate.to_dict(),
                "later_months": f"{cut.date()} .. {later[config.data.time_column].max()[:10]}",
                "later": evaluate_later(config, later, champion, result.train.bundle, positive),
            }
        )
    report = {
        "command": "python bench/bench_retrain.py"
        + (" --quick" if args.quick else "")
        + (f" --original {args.original}" if args.original else "")
        + "".join(f" --variant {v}" for v in args.variant or []),
        "mode": "quick" if args.quick else "default",
        "seconds": time.monotonic() - started,
        "champion": champion.tag,
        "champion_period": champion.metadata.data.train_period,
        "served": f"{start.date()} .. {(cut - pd.Timedelta(days=1)).date()}",
        "served_rows": len(served),
        "feedback": feedback,
        "feedback_share": args.feedback_share,
        "variants": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "retrain" + (f"_{args.original}" if args.original else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2, default=str))
    text = render(report)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

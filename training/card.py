"""The model card: a Markdown page a reviewer can read in five minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from occam.metadata import (
    BundleMetadata,
    CalibrationRecord,
    GateRecord,
    InferenceRecord,
)


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}f}"
    return str(value)


def goal_rows(gate: GateRecord) -> list[list[str]]:
    """Rows of the goal table: goal | threshold | baseline | model (95% CI) | pass; the last
    row is the calibration gate (Brier score under the baseline's)."""
    rows = []
    for g in gate.goals:
        rows.append(
            [
                g.metric,
                f">= {_f(g.threshold)}",
                _f(g.baseline),
                f"{_f(g.model)} ({_f(g.ci_low)}-{_f(g.ci_high)})",
                "pass" if g.passed else ("below goal" if not g.met else "baseline not beaten"),
            ]
        )
    if gate.brier is not None:
        rows.append(brier_row(gate))
    return rows


def brier_row(gate: GateRecord) -> list[str]:
    """The calibration gate as a goal-table row: Brier score (lower is better) vs baseline."""
    b = gate.brier
    if b is None:
        return []
    return [
        "brier (lower is better)",
        f"< baseline {_f(b.baseline)}",
        _f(b.baseline),
        _f(b.model),
        "pass" if b.passed else "worse than baseline",
    ]


def verdict(gate: GateRecord) -> str:
    if gate.baseline_meets_goals:
        return (
            "The trivial baseline alone meets every goal: a model may not be needed at all "
            "(simplicity is queen); raise the goals or ship the baseline."
        )
    if gate.passed:
        return (
            f"Every goal is met, the baseline is beaten by at least {gate.margin} on each, "
            "and the Brier score is under the baseline's: promoted."
        )
    if all(g.passed for g in gate.goals):
        return (
            "Every goal is met but the probabilities score a worse Brier score than the "
            "baseline's (they are not trustworthy risks): NOT promoted."
        )
    return "At least one goal is missed or the baseline is not beaten by the margin: NOT promoted."


def _inference_limit(inference: InferenceRecord) -> str:
    if inference.format == "onnx":
        return (
            f"\n- Served through ONNX Runtime; checked against scikit-learn on "
            f"{inference.rows_checked} test rows (labels equal, largest probability "
            f"difference {inference.max_abs_proba_diff or 0.0:.1e})."
        )
    reason = inference.reason or "not converted"
    return f"\n- Served by scikit-learn, not ONNX ({reason}): slower per request."


def _calibration(cal: CalibrationRecord | None) -> list[str]:
    """The calibration section: method chosen, Brier scores, ECE, reliability curve."""
    if cal is None:
        return []
    rel = cal.reliability.calibrated
    rows = [[m, _f(v), "chosen" if m == cal.method else ""] for m, v in cal.oof_brier.items()]
    rows.append(["none (forest vote shares)", _f(cal.oof_brier_uncalibrated), ""])
    return [
        "### Calibration",
        f"Probabilities are calibrated with the **{cal.method}** method, chosen by the "
        "Brier score of cross-validated calibrated out-of-fold probabilities on the training "
        "rows (lower is better):",
        _table(["calibration", "out-of-fold Brier", ""], rows),
        f"On the held-out test set: Brier {_f(cal.brier_test)} (baseline "
        f"{_f(cal.brier_test_baseline)}); expected calibration error (ECE, {rel.bins} "
        f"bins of {rel.kind}) {_f(cal.ece_test)}, against "
        f"{_f(cal.ece_test_uncalibrated)} for the forest before calibration.",
        f"![Reliability curve]({Path(cal.plot).name})",
        _table(
            ["predicted", "observed", "rows"],
            [[_f(p.predicted), _f(p.observed), str(p.rows)] for p in rel.curve],
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


def _importance(metadata: BundleMetadata) -> list[str]:
    importance = metadata.feature_importance
    how = metadata.feature_importance_method
    if not importance or how is None:
        return []
    return [
        "## What the model relies on",
        f"Permutation importance on {how.rows} {how.on}: the mean drop of "
        f"{how.metric} when one feature is shuffled ({how.repeats} shuffles). Drift in "
        "the top features matters most; near zero or negative means the model does not need it.",
        _table(
            ["feature", f"drop of {how.metric}"],
            [[f"`{name}`", _f(value, 4)] for name, value in importance.items()],
        ),
    ]


def _staleness(metadata: BundleMetadata) -> list[str]:
    stale = metadata.staleness
    if stale is None or not stale.chunks:
        return []
    metrics = list(stale.thresholds)
    timed = stale.chunks[0].days_since_train_end is not None
    header = ["chunk", "rows", "days since training data" if timed else "rows since training"]
    header += [f"{m} (goal {_f(stale.thresholds[m])})" for m in metrics]
    rows = []
    for i, chunk in enumerate(stale.chunks, 1):
        since = _f(chunk.days_since_train_end, 1) if timed else str(chunk.rows_since_train_end)
        span = (
            f"{i}: {chunk.start[:10]} to {(chunk.to or '')[:10]}"
            if chunk.start is not None
            else str(i)
        )
        rows.append([span, str(chunk.rows), since] + [_f(chunk.metrics[m]) for m in metrics])
    return [
        "## How fast it goes stale",
        f"The held-out period, in {len(rows)} time-ordered chunks after the end of the "
        f"training data ({stale.train_end or 'row order'}): each goal metric against the "
        "time since the model last saw data. A metric that falls with time says how often to "
        "retrain, beside the monitor's evidence.",
        _table(header, rows),
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(metadata: BundleMetadata, *, tag: str = "unsaved", stage: str = "n/a") -> str:
    """Render the model card from the bundle's metadata; `tag` and `stage` are the bundle's."""
    m = metadata
    gate, data, model = m.gate, m.data, m.model
    parts = [
        f"# Model card: {m.project} ({tag})",
        f"Created {m.created_at}, seed {m.seed}, stage "
        f"**{stage}**. Target `{m.target}`, classes "
        f"{', '.join(m.classes)}; binary metrics refer to `{m.positive_label}`.",
        "## Goals",
        _table(
            ["goal", "threshold", "baseline", "model (95% CI)", "result"],
            goal_rows(gate),
        ),
        verdict(gate),
        f"Baseline: `{m.baseline.strategy}`. Margin required over it: {gate.margin}.",
        "## Model",
        f"Random Forest pipeline; searched parameters {model.best_params}, fixed "
        f"{model.fixed_params}. Cross-validated {model.scoring} {_f(model.cv_score)} "
        f"after {model.search.rounds} round(s), {model.search.fits} fits. "
        f"Brier score on test {_f(model.brier)} (baseline {_f(m.baseline.brier)}).",
        *_calibration(model.calibration),
        _decision(m.decision_weights),
        "### Per class (held-out test)",
        _table(
            ["class", "precision", "recall", "f1", "support"],
            [
                [c, _f(v.precision), _f(v.recall), _f(v.f1), str(v.support)]
                for c, v in model.per_class.items()
            ],
        ),
        "Confusion matrix (rows: truth, columns: predicted, order "
        f"{list(model.confusion_matrix.labels)}): "
        f"{[list(r) for r in model.confusion_matrix.matrix]}",
    ]
    abstain = m.abstain
    if abstain is not None:
        parts += [
            "### Abstaining",
            f"Rows whose top probability is under {_f(abstain.threshold)} are answered "
            f"`{abstain.label}`. Chosen on {abstain.chosen_on} for precision "
            f">= {abstain.target_precision}"
            + ("" if abstain.reached else " (NOT reached)")
            + f" (precision {_f(abstain.precision)} at coverage {_f(abstain.coverage)} "
            "there).",
            _table(
                ["rows", "target precision", "precision", "coverage (share answered)"],
                [
                    [
                        "training, out-of-fold",
                        _f(abstain.target_precision),
                        _f(abstain.precision),
                        _f(abstain.coverage),
                    ],
                    [
                        "held-out test",
                        _f(abstain.target_precision),
                        _f(abstain.test.precision),
                        _f(abstain.test.coverage),
                    ],
                ],
            ),
        ]
    slices = m.slices
    if slices.columns:
        metric = slices.metric
        parts.append("## Slices (held-out test)")
        parts.append(
            "\n".join(
                f"- `{column}`: worst "
                + "; ".join(f"{r.value} {_f(r.score)} ({r.rows} rows)" for r in rows[:3])
                + f" of {len(rows)} values with enough rows"
                for column, rows in slices.columns.items()
            )
        )
        if slices.worst is not None:
            w = slices.worst
            parts.append(
                f"Worst slice: `{w.column}` = {w.value} with {metric} {_f(w.score)} "
                f"on {w.rows} rows."
            )
    parts += _importance(m)
    parts += _staleness(m)
    findings = data.findings
    parts += [
        "## Data",
        f"{data.rows} rows from `{data.path}` (fingerprint {data.fingerprint[:16]}); "
        f"train {data.train_rows} rows {_period(data.train_period)}, test {data.test_rows} "
        f"rows {_period(data.test_period)} ({data.test_strategy} split), production period "
        f"{data.production_rows} rows from {data.production_start} (never trained on).",
        "Checks:" if findings else "Checks: nothing to report.",
        "\n".join(
            f"- {f.level}: {f.check}" + (f" `{f.column}`" if f.column else "") + f": {f.message}"
            for f in findings
        ),
    ]
    labels = m.labels
    parts.append(
        f'Labels: {labels.unknown_rows} "I don\'t know" ({labels.unknown_share:.1%}) left '
        f"out; {labels.label_issue_rows} likely label errors found from out-of-fold "
        f"probabilities"
        + (f" (top rows in `{labels.label_issue_file}`)" if labels.label_issue_file else "")
        + "."
        + (
            f" Labeller agreement (Fleiss' kappa): {_f(labels.kappa)}; "
            f"{labels.disagreeing_rows} disagreeing rows in `{labels.disagreement_file}`."
            if labels.annotators
            else ""
        )
    )
    parts += [
        "## Limits",
        "- Trained on the period above only: conditions it did not contain (other seasons, "
        "categories or ranges of values) are extrapolations, not evidence.\n"
        "- The worst slice above is where errors concentrate; check it before relying on it.\n"
        "- Probabilities are calibrated on the training period (see the reliability curve); "
        "calibration drifts with the data, so re-check it on fresh labelled rows."
        + _inference_limit(m.inference),
        "## When to retrain",
        *_when_to_retrain(m),
    ]
    return "\n\n".join(parts) + "\n"


def _period(period: tuple[str, str] | None) -> str:
    return str(list(period)) if period else ""


def _when_to_retrain(metadata: BundleMetadata) -> list[str]:
    mon = metadata.monitoring
    if mon is None:
        return ["- When the monitor says the model is at risk, or a goal slips on fresh labels."]
    return [
        "- When the monitor says the model is at risk: a goal is likely missed (with at least "
        f"{mon.risk_enter_confidence:.0%} confidence) by the label-free estimate of a goal "
        f"metric or by the live metric over at least {mon.live_min_labels} labels, or the "
        "importance-weighted drift passes its extreme level "
        f"({mon.weighted_drift_threshold}); or when the model is older than "
        f"{mon.max_model_age_days} days. Drift of single features is information, not a "
        "reason.\n"
        "- At the latest when the staleness table above shows a goal slipping: its days "
        "since the training data are a retrain cadence to start from.\n"
        "- Retraining runs the same gates; a model that misses a goal is never promoted."
    ]

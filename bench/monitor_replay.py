"""Helpers of bench/bench_monitor.py: log records from real rows, and the detection replay
(the sidecar's own check on consecutive windows of held-out and production rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from monitoring.check import run_check
from monitoring.reference import build_reference
from monitoring.state import MonitorState
from occam.config import MonitoringConfig
from occam.metrics import score
from occam.records import PredictionRecord, dumps

T0 = 1_700_000_000.0
PERIODS = ("train", "held_out", "held_out_sliding", "production", "continuous")
VERDICTS = ("data_drift", "at_risk", "prediction_drift", "prediction_drift_held", "pvalue_verdict")
MONTHLY = ("data_drift", "at_risk", "prediction_drift", "live_below")


def prediction_dicts(
    bundle: Any, rows: pd.DataFrame, proba: np.ndarray, prefix: str
) -> list[dict[str, Any]]:
    """Prediction records (as the reader returns them) for `rows` with probabilities `proba`."""
    classes = bundle.classes
    out = []
    for i, features in enumerate(rows[bundle.schema.names].to_dict("records")):
        clean = {
            k: None if isinstance(v, float) and np.isnan(v) else v for k, v in features.items()
        }
        top = classes[int(np.argmax(proba[i]))]
        out.append(
            {
                "id": f"{prefix}-{i}",
                "ts": T0 + i,
                "model_version": bundle.version,
                "features": clean,
                "label": top,
                "predicted": top,
                "abstained": False,
                "probabilities": dict(zip(classes, map(float, proba[i]), strict=True)),
                "marks": {
                    "missing": [k for k, v in clean.items() if v is None],
                    "unseen_category": [],
                    "out_of_range": [],
                },
                "kind": "prediction",
            }
        )
    return out


def log_bytes(records: list[dict[str, Any]], feedback_every: int) -> bytes:
    lines = []
    for i, r in enumerate(records):
        lines.append(dumps(PredictionRecord(**{k: v for k, v in r.items() if k != "kind"})))
        if feedback_every and i % feedback_every == 0:
            lines.append(
                b'{"id":"%s","ts":%f,"label":"late","kind":"feedback"}\n'
                % (r["id"].encode(), r["ts"])
            )
    return b"".join(lines)


@dataclass
class Detection:
    """The sidecar's check on consecutive windows of held-out and production rows."""

    mon: MonitoringConfig
    windows: list[dict[str, Any]] = field(default_factory=list)
    held_out_rows: int = 0
    levels: dict[str, float] = field(default_factory=dict)

    @classmethod
    def run(
        cls, bundle: Any, mon: MonitoringConfig, split: Any, seed: int, feedback_share: float = 0.3
    ) -> Detection:
        det = cls(mon)
        ref = build_reference(bundle, mon, seed=seed)
        det.levels = dict(zip(ref.inputs.names_, ref.inputs.levels_, strict=True))
        pipeline, target = bundle.load_pipeline(), bundle.metadata.target
        goal = next(iter(ref.goals))
        periods = [
            ("train", split.train, mon.window_rows),
            ("held_out", split.test, mon.window_rows),
            ("held_out_sliding", split.test, mon.window_rows // 4),
            ("production", split.production, mon.window_rows),
            # one state through held-out then production rows, as the demo replays them
            ("continuous", pd.concat([split.test, split.production]), mon.window_rows),
        ]
        det.held_out_rows = len(split.test)
        for period, frame, stride in periods:
            m = mon.model_copy(update={"check_every_rows": stride})
            proba = pipeline.predict_proba(bundle.schema.coerce(frame))
            records = prediction_dicts(bundle, frame, proba, period)
            labels = frame[target].astype(str).to_numpy()
            months = pd.to_datetime(frame[bundle.metadata.time_column]).dt.month.to_numpy()
            state = MonitorState.new(
                m.window_rows, m.min_window_rows, 100_000, m.live_window_labels
            )
            state.adopt_model(bundle.version)
            state.window.bind(ref.encoding)  # as the sidecar: columns built as rows arrive
            rng = np.random.default_rng(seed)
            for start in range(0, len(frame) - stride + 1, stride):
                block = records[start : start + stride]
                state.window.extend(block)
                state.join.add_predictions(block)
                state.rows_total += len(block)
                fed = [i for i in range(start, start + stride) if rng.random() < feedback_share]
                state.join.add_feedback(
                    [
                        {"id": records[i]["id"], "label": labels[i], "ts": records[i]["ts"]}
                        for i in fed
                    ]
                )
                if len(state.window) < m.window_rows:
                    continue
                res = run_check(state, ref, m, now=T0)
                state.runs = res.runs  # run_check is pure: apply its hysteresis, as the sidecar
                lo = start + stride - m.window_rows
                det.windows.append(
                    {
                        "period": period,
                        "end_row": start + stride,
                        "month": int(months[lo]),
                        "data_drift": res.data_drift,
                        "at_risk": res.model_at_risk,
                        "prediction_drift": res.prediction_drift,
                        "prediction_drift_held": (res.prediction_drift_run or 0)
                        >= m.consecutive_windows,
                        "share": res.drift.drifted_share if res.drift else None,
                        "drifted": res.drift.drifted if res.drift else [],
                        "pvalue_verdict": any(f.significant for f in res.drift.features.values())
                        if res.drift
                        else None,
                        "effects": {n: f.effect_size for n, f in res.drift.features.items()}
                        if res.drift
                        else {},
                        "significant": {n: f.significant for n, f in res.drift.features.items()}
                        if res.drift
                        else {},
                        "live_below": res.recommendation.reasons["live_metric"],
                        "true_metric": score(
                            goal,
                            labels[lo : start + stride],
                            proba[lo : start + stride],
                            bundle.classes,
                            ref.positive,
                        ),
                    }
                )
        return det

    def of(self, period: str) -> list[dict[str, Any]]:
        return [w for w in self.windows if w["period"] == period]

    def summary(self) -> dict[str, Any]:
        def share(period: str, key: str) -> float | None:
            rows = self.of(period)
            return round(float(np.mean([bool(w[key]) for w in rows])), 3) if rows else None

        def first(key: str) -> int | None:
            return next((w["end_row"] for w in self.of("production") if w[key]), None)

        def first_after_held_out(key: str) -> int | None:
            rows = [w["end_row"] - self.held_out_rows for w in self.of("continuous") if w[key]]
            return next((r for r in rows if r > 0), None)

        def flagged(period: str) -> list[str]:
            return sorted({f for w in self.of(period) for f in w["drifted"]})

        out: dict[str, Any] = {
            "windows": {p: len(self.of(p)) for p in PERIODS},
            "false_alarm": {k: {p: share(p, k) for p in PERIODS[:3]} for k in VERDICTS},
            "production_share": {k: share("production", k) for k in (*VERDICTS, "live_below")},
            "rows_until": {k: first(k) for k in (*VERDICTS, "live_below")},
            "rows_until_continuous": {
                k: first_after_held_out(k) for k in (*VERDICTS, "live_below")
            },
            "held_out_flagged_features": flagged("held_out"),
            "production_flagged_features": flagged("production"),
        }
        fa = out["false_alarm"]
        out["headline"] = (
            f"false alarms held-out data_drift {fa['data_drift']['held_out']} "
            f"at_risk {fa['at_risk']['held_out']} "
            f"(p-value only {fa['pvalue_verdict']['held_out']}); "
            f"production rows until data_drift {out['rows_until']['data_drift']}, "
            f"at_risk {out['rows_until']['at_risk']}"
        )
        return out

    def months(self) -> list[dict[str, Any]]:
        """Per period and calendar month of the held-out and production windows."""
        out = []
        for period in ("held_out", "production"):
            rows = self.of(period)
            for month in sorted({w["month"] for w in rows}):
                ws = [w for w in rows if w["month"] == month]
                shares = {k: round(float(np.mean([bool(w[k]) for w in ws])), 2) for k in MONTHLY}
                metric = round(float(np.nanmean([w["true_metric"] for w in ws])), 3)
                out.append(
                    {
                        "period": period,
                        "month": month,
                        "windows": len(ws),
                        **shares,
                        "true_metric": metric,
                    }
                )
        return out


def _verdict(det: Detection, w: dict[str, Any], margin: float, threshold: float) -> bool:
    floor = det.mon.min_effect_size
    flags = [
        w["significant"][n] and e > max(det.levels[n] * margin, floor)
        for n, e in w["effects"].items()
    ]
    return bool(flags) and float(np.mean(flags)) >= threshold


def sensitivity(det: Detection) -> list[dict[str, Any]]:
    """False alarms and delays for other margins and share thresholds, from the same windows."""
    out = []
    k = det.mon.consecutive_windows
    for margin in (1.0, 1.1, 1.25, 1.5):
        for threshold in (0.1, 0.15, 0.2, 0.3):
            row: dict[str, Any] = {"margin": margin, "share_threshold": threshold}
            for period in ("train", "held_out", "held_out_sliding", "production"):
                v = [_verdict(det, w, margin, threshold) for w in det.of(period)]
                risk = [i >= k - 1 and all(v[i - k + 1 : i + 1]) for i in range(len(v))]
                row[f"{period}_drift"] = round(float(np.mean(v)), 3) if v else None
                if period != "held_out_sliding":
                    row[f"{period}_at_risk"] = round(float(np.mean(risk)), 3) if v else None
                if period == "production":
                    ends = [w["end_row"] for w in det.of(period)]
                    row["rows_until_drift"] = _first(ends, v)
                    row["rows_until_at_risk"] = _first(ends, risk)
            out.append(row)
    return out


def _first(ends: list[int], flags: list[bool]) -> int | None:
    return next((e for e, x in zip(ends, flags, strict=True) if x), None)

"""The serving runtime: one bundle, its validator and predictor, the log and the counters.

Plain Python (no HTTP): the BentoML service in `service.app` is a thin shell around it, and
tests call it directly. Every public method answers with a `Reply` (status and JSON body).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from occam.bundle import Bundle, resolve_serving_bundle
from occam.config import ServingConfig, load_config
from occam.records import FeedbackRecord, PredictionRecord, Record, RejectedRecord
from service.log import SegmentWriter
from service.metrics import ServiceMetrics, default_metrics
from service.predictor import Predictor, SelfTest, load_predictor, self_test
from service.problems import UNKNOWN_LABEL, Problem, counted, error_body
from service.validation import Validator

log = logging.getLogger("occam.service")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code and JSON body."""

    status: int
    body: dict[str, Any]


class Runtime:
    """Serves `bundle` under the `serving` settings.

    Not ready until `load()` has loaded the predictor and its self-test passed; until then
    `predict` answers 503. `writer` None means nothing is logged; `log_predictions` False logs
    feedback and rejections but no prediction rows.
    """

    def __init__(
        self,
        serving: ServingConfig,
        bundle: Bundle,
        *,
        metrics: ServiceMetrics,
        writer: SegmentWriter | None,
    ) -> None:
        self.serving = serving
        self.bundle = bundle
        self.version = bundle.version
        self.classes = bundle.classes
        abstain = bundle.metadata.get("abstain") or {}
        self.threshold: float | None = abstain.get("threshold")
        self.abstain_label: str | None = (
            abstain.get("label") if self.threshold is not None else None
        )
        self.validator = Validator(
            bundle.schema,
            max_rows=serving.max_rows,
            unseen_category=serving.unseen_category,
            out_of_range_factor=serving.out_of_range_factor,
        )
        self.metrics = metrics
        self.writer = writer
        self.predictor: Predictor | None = None
        self.self_test: SelfTest | None = None
        self.failure: str | None = None
        self._ready = threading.Event()
        answers = [*self.classes, *([self.abstain_label] if self.abstain_label else [])]
        metrics.initialise(self.version, answers, self.classes)
        self._answered = {a: metrics.predictions.labels(self.version, a) for a in answers}
        self._abstained = metrics.abstentions.labels(self.version)

    @classmethod
    def start(
        cls,
        config_path: str | Path,
        model_tag: str | None = None,
        *,
        worker: int = 0,
        metrics: ServiceMetrics | None = None,
    ) -> Runtime:
        """Read the config, resolve and verify the bundle, open the log; raise `ConfigError` or
        `BundleError` (naming the reason) when the service must not start.

        `model_tag` pins a bundle, overriding `serving.model_tag`; `worker` names the log files.
        """
        config = load_config(config_path)
        serving = config.serving
        bundle = resolve_serving_bundle(config.output.model_name, model_tag or serving.model_tag)
        metrics = metrics or default_metrics()
        writer = SegmentWriter.from_config(
            serving,
            worker=worker,
            on_drop=metrics.log_dropped_records.inc,
            features=bundle.schema.names,
        ).start()
        log.info(
            "worker %s serves %s (stage=%s); log in %s",
            worker,
            bundle.tag,
            bundle.stage,
            serving.log_dir,
        )
        return cls(serving, bundle, metrics=metrics, writer=writer)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self) -> None:
        """Load the predictor and run the self-test; on failure stay not ready and say why."""
        try:
            predictor = load_predictor(self.bundle, self.serving.inference)
            self.self_test = self_test(predictor, self.validator, self.bundle)
        except Exception as exc:  # the reason is kept for /readyz callers and /predict answers
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error("model %s failed to load or its self-test: %s", self.bundle.tag, self.failure)
            return
        self.predictor = predictor
        log.info(
            "model %s ready (%s, self-test on %d reference rows, max diff %.1e)",
            self.bundle.tag,
            predictor.kind,
            self.self_test.rows,
            self.self_test.max_abs_diff,
        )
        self._ready.set()

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="occam-model-loader", daemon=True)
        thread.start()
        return thread

    def predict(self, instances: list[Any]) -> Reply:
        """Validate, predict and log `instances`; a 4xx `Reply` naming each problem if refused."""
        predictor = self.predictor
        if predictor is None:
            return self.unavailable()
        valid, problems = self.validator.validate(instances)
        if valid is None:
            return self.reject(problems)
        labels, proba = predictor.predict(valid.columns)
        now = time.time()
        threshold, abstain_label, classes = self.threshold, self.abstain_label, self.classes
        log_rows = self.writer is not None and self.serving.log_predictions
        answers: list[dict[str, Any]] = []
        records: list[Record] = []
        abstentions = 0
        for i, row in enumerate(proba.tolist()):
            probabilities = dict(zip(classes, row, strict=True))
            top = labels[i]
            abstained = threshold is not None and max(row) < threshold
            answer = abstain_label if abstained and abstain_label else top
            abstentions += abstained
            ident = uuid.uuid4().hex
            answers.append(
                {
                    "id": ident,
                    "label": answer,
                    "probabilities": probabilities,
                    "abstained": abstained,
                }
            )
            if log_rows:
                records.append(
                    PredictionRecord(
                        id=ident,
                        ts=now,
                        model_version=self.version,
                        features=valid.received[i],
                        label=answer,
                        predicted=top,
                        probabilities=probabilities,
                        abstained=abstained,
                        marks=valid.marks[i],
                    )
                )
        if records and self.writer is not None:
            self.writer.submit(records)
        for answer_label, count in Counter(a["label"] for a in answers).items():
            counter = self._answered.get(answer_label)
            if counter is None:  # a label outside the bundle's classes: not expected
                counter = self.metrics.predictions.labels(self.version, answer_label)
            counter.inc(count)
        if abstentions:
            self._abstained.inc(abstentions)
        return Reply(200, {"model_version": self.version, "predictions": answers})

    def feedback(self, items: Sequence[tuple[str, str]]) -> Reply:
        """Log (prediction id, true label) pairs; 202 when logged, a 4xx for unknown labels."""
        problem = self.validator.check_count(len(items), "labels")
        if problem is not None:
            return self.reject([problem])
        known = set(self.classes)
        problems = [
            Problem(
                i,
                "label",
                UNKNOWN_LABEL,
                f"label {label!r} is not a class of this model; classes are {self.classes}",
            )
            for i, (_, label) in enumerate(items)
            if label not in known
        ]
        if problems:
            return self.reject(problems)
        now = time.time()
        if self.writer is not None:
            self.writer.submit(
                FeedbackRecord(id=ident, ts=now, label=label) for ident, label in items
            )
        for label, count in Counter(label for _, label in items).items():
            self.metrics.feedback_labels.labels(label).inc(count)
        return Reply(202, {"accepted": len(items)})

    def reject(self, problems: Sequence[Problem], status: int = 400) -> Reply:
        """Count, log and describe a refused request: one count and one `rejected` record per
        bad row (its first problem) or per request-level problem."""
        now = time.time()
        records = []
        for problem in counted(problems):
            self.metrics.rejected_rows.labels(problem.reason).inc()
            records.append(
                RejectedRecord(
                    ts=now, model_version=self.version, reason=problem.reason, field=problem.field
                )
            )
        if self.writer is not None:
            self.writer.submit(records)
        return Reply(status, error_body(problems))

    def unavailable(self) -> Reply:
        if self.failure is not None:
            return Reply(503, {"error": f"model {self.bundle.tag} failed to load: {self.failure}"})
        return Reply(503, {"error": f"model {self.bundle.tag} is still loading; retry shortly"})

    def model_document(self) -> dict[str, Any]:
        """What a client needs to build valid requests, and what the model promises."""
        metadata = self.bundle.metadata
        predictor = self.predictor
        example = self.self_test.example if self.self_test else None
        return {
            "name": self.bundle.tag.split(":", 1)[0],
            "version": self.version,
            "tag": self.bundle.tag,
            "stage": self.bundle.stage,
            "created_at": metadata.get("created_at"),
            "project": metadata.get("project"),
            "target": metadata.get("target"),
            "classes": self.classes,
            "positive_label": metadata.get("positive_label"),
            "goals": metadata.get("goals"),
            "gate": metadata.get("gate"),
            "abstain": (
                {"threshold": self.threshold, "label": self.abstain_label}
                if self.threshold is not None
                else None
            ),
            "features": self.bundle.schema.to_dict()["features"],
            "limits": {
                "max_rows": self.serving.max_rows,
                "max_body_bytes": self.serving.max_body_bytes,
                "unseen_category": self.serving.unseen_category,
                "out_of_range_factor": self.serving.out_of_range_factor,
            },
            "inference": {
                "format": predictor.kind if predictor else None,
                "fallback_reason": predictor.reason if predictor else None,
            },
            "ready": self.ready,
            "example_request": {"instances": [example]} if example else None,
        }

    def close(self) -> None:
        """Write out the queued log records."""
        if self.writer is not None:
            self.writer.close()

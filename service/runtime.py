"""The serving runtime: one bundle, its validator and predictor, the log and the counters.

Plain Python (no HTTP): the BentoML service in `service.app` is a thin shell around it, and
tests call it directly. Every public method answers with a `Reply` (status and JSON body).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from occam.auth import KeyStore, keys_files
from occam.bundle import Bundle, resolve_serving_bundle
from occam.config import ServingConfig, load_config
from occam.errors import Problem, Reason, counted, error_body, quote, status_of
from occam.records import FeedbackRecord, PredictionRecord, Record, RejectedRecord
from service.log import SegmentWriter
from service.metrics import ServiceMetrics, default_metrics
from service.predictor import Predictor, SelfTest, load_predictor, self_test
from service.validation import Validator

CONFIG_ENV = "OCCAM_CONFIG"
MODEL_TAG_ENV = "OCCAM_MODEL_TAG"
log = logging.getLogger("occam.service")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status code, JSON body and extra headers (e.g. Retry-After)."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def current_runtime() -> Runtime | None:
    """The runtime of this process's BentoML service instance; None before it is created (and
    outside a server: `bentoml build`, tests on `Runtime` itself)."""
    import bentoml

    try:
        instance = bentoml.get_current_service()
    except bentoml.exceptions.BentoMLException:
        return None
    return getattr(instance, "runtime", None)


class LabelledIds:
    """The prediction ids that received a label, the newest `capacity` of them: a second
    label for a remembered id is refused. Memory is bounded: the oldest ids are forgotten
    first (the monitor keeps the first label of an id it sees twice, and counts the rest)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, ids: Sequence[str]) -> list[int]:
        """Indexes in `ids` of ids labelled before (or earlier in `ids`); nothing is stored."""
        with self._lock:
            known = self._ids
            first: set[str] = set()
            repeated = []
            for i, ident in enumerate(ids):
                if ident in known or ident in first:
                    repeated.append(i)
                first.add(ident)
            return repeated

    def add(self, ids: Sequence[str]) -> None:
        with self._lock:
            for ident in ids:
                self._ids[ident] = None
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)


class Runtime:
    """Serves `bundle` under the `serving` settings.

    Not ready until `load()` has loaded the predictor and its self-test passed; until then
    `predict` answers 503. `writer` None means nothing is logged; `log_predictions` False logs
    feedback and rejections but no prediction rows. `keys` are the API keys the HTTP guard
    checks (empty: anonymous calls).
    """

    def __init__(
        self,
        serving: ServingConfig,
        bundle: Bundle,
        *,
        metrics: ServiceMetrics,
        writer: SegmentWriter | None,
        keys: KeyStore | None = None,
    ) -> None:
        self.serving = serving
        self.keys = keys or KeyStore()
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
            max_string_chars=serving.limits.max_string_chars,
        )
        self.labelled = LabelledIds(serving.limits.feedback_ids)
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
        """Read the config and the API keys, resolve and verify the bundle, open the log; raise
        `ConfigError`, `KeyFileError` or `BundleError` (naming the reason) when the service must
        not start.

        `model_tag` pins a bundle, overriding `serving.model_tag`; `worker` names the log files.
        """
        config = load_config(config_path)
        serving = config.serving
        keys = KeyStore.load(keys_files(serving.auth.keys_file))
        if not keys:
            log.warning("no API keys configured: /predict and /feedback accept anonymous calls")
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
        return cls(serving, bundle, metrics=metrics, writer=writer, keys=keys)

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
        """Log (prediction id, true label) pairs; 202 when logged. 400 for unknown labels, 409
        when an id was labelled before (at most one label per prediction id, as far as this
        worker remembers: `serving.limits.feedback_ids`); nothing is logged then."""
        problem = self.validator.check_count(len(items), "labels")
        if problem is not None:
            return self.reject([problem])
        known = set(self.classes)
        problems = [
            Problem(
                i,
                "label",
                Reason.UNKNOWN_LABEL,
                f"label {quote(label)} is not a class of this model; classes are {self.classes}",
            )
            for i, (_, label) in enumerate(items)
            if label not in known
        ]
        if problems:
            return self.reject(problems)
        ids = [ident for ident, _ in items]
        repeated = self.labelled.seen(ids)
        if repeated:
            return self.reject(
                [
                    Problem(
                        i,
                        "id",
                        Reason.DUPLICATE_LABEL,
                        f"prediction {ids[i]} already has a label; one label per prediction "
                        "id is accepted (nothing in this request was logged)",
                    )
                    for i in repeated
                ]
            )
        self.labelled.add(ids)
        now = time.time()
        if self.writer is not None:
            self.writer.submit(
                FeedbackRecord(id=ident, ts=now, label=label) for ident, label in items
            )
        for label, count in Counter(label for _, label in items).items():
            self.metrics.feedback_labels.labels(label).inc(count)
        return Reply(202, {"accepted": len(items)})

    def reject(
        self,
        problems: Sequence[Problem],
        status: int | None = None,
        *,
        record: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Count, log and describe a refused request: one count and (`record` True) one
        `rejected` log record per bad row (its first problem) or per request-level problem.

        `status` None: the status the reasons carry (`occam.errors.status_of`). Requests refused
        before they are authenticated, read or allowed (401, 403, 408, 429, 499) are counted
        but not logged (`record` False): nobody without a key can write to the log."""
        now = time.time()
        records = []
        for problem in counted(problems):
            self.metrics.rejected_rows.labels(problem.reason.value).inc()
            records.append(
                RejectedRecord(
                    ts=now,
                    model_version=self.version,
                    reason=problem.reason.value,
                    field=problem.field,
                )
            )
        if record and self.writer is not None:
            self.writer.submit(records)
        return Reply(
            status_of(problems) if status is None else status,
            error_body(problems),
            headers or {},
        )

    def unavailable(self) -> Reply:
        """503 while the model loads, or for good when it failed to load or its self-test."""
        if self.failure is not None:
            message = f"model {self.bundle.tag} failed to load: {self.failure}"
        else:
            message = f"model {self.bundle.tag} is still loading; retry shortly"
        return Reply(503, error_body([Problem(None, None, Reason.MODEL_UNAVAILABLE, message)]))

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
                "max_string_chars": self.serving.limits.max_string_chars,
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

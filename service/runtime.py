"""The serving runtime: the served bundle, its validator and predictor, the log and the counters.

Plain Python (no HTTP): the BentoML service in `service.app` is a thin shell around it, and
tests call it directly. Every public method answers with a `Reply` (status and JSON body).

Hot swap: everything that belongs to one bundle is one immutable `ServedModel`; a request reads
`Runtime.model` once and uses only that, so swapping the attribute is atomic for every request.
`Runtime.reload` (every `serving.reload_interval_seconds` in a background thread, and on
``POST /admin/reload``) looks for a newer production bundle, verifies it (manifest, signature),
loads and self-tests it, and only then swaps it in; a bundle that fails is refused, logged and
counted (`occam_service_model_reloads_total{outcome}`), and the old one keeps serving.

Shadow: a challenger (`serving.shadow_tag`, or ``POST /admin/shadow``) scores the same rows
for `serving.shadow_rows` rows; its rows are logged with its own version and ``shadow: true``,
and never answered.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from occam.auth import KeyStore, keys_files
from occam.bundle import (
    Bundle,
    BundleError,
    get_bundle,
    latest_production,
    resolve_serving_bundle,
)
from occam.config import ServingConfig, load_config
from occam.errors import (
    FEEDBACK_OUTCOME,
    PREDICT_OUTCOME,
    Problem,
    Reason,
    counted,
    error_body,
    status_of,
)
from occam.records import FeedbackRecord, PredictionRecord, Record, RejectedRecord
from service.log import SegmentWriter
from service.metrics import ServiceMetrics, default_metrics
from service.predictor import Predictor, SelfTest, load_predictor, self_test
from service.validation import Validator, check_labels

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


class ReloadOutcome(StrEnum):
    """What one look for a newer production bundle found (the `outcome` metric label)."""

    SWAPPED = "swapped"  # a newer production bundle passed its checks and now serves
    UNCHANGED = "unchanged"  # the served bundle is still the production one
    REFUSED = "refused"  # the production bundle failed verification or its self-test
    PINNED = "pinned"  # serving.model_tag pins the bundle: never swapped
    ERROR = "error"  # the model store could not be read (the old bundle keeps serving)


@dataclass(frozen=True)
class ReloadResult:
    """The outcome of `Runtime.reload`: the version served after it, the one before, and why."""

    outcome: ReloadOutcome
    model_version: str
    previous_version: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "outcome": self.outcome.value,
            "model_version": self.model_version,
            "previous_version": self.previous_version,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ServedModel:
    """One bundle as served: its validator, abstain rule, predictor (None until loaded and
    self-tested) and its counters. Immutable: a swap replaces the whole object."""

    bundle: Bundle
    validator: Validator
    threshold: float | None
    abstain_label: str | None
    answered: Mapping[str, Any]
    abstained: Any
    predictor: Predictor | None = None
    self_test: SelfTest | None = None

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def classes(self) -> list[str]:
        return self.bundle.classes

    @classmethod
    def of(cls, bundle: Bundle, serving: ServingConfig, metrics: ServiceMetrics) -> ServedModel:
        """The bundle's validator and counters (cheap; nothing loaded yet)."""
        abstain = bundle.metadata.abstain
        threshold = abstain.threshold if abstain is not None else None
        abstain_label = abstain.label if abstain is not None else None
        validator = Validator(
            bundle.schema,
            max_rows=serving.max_rows,
            unseen_category=serving.unseen_category,
            out_of_range_factor=serving.out_of_range_factor,
            max_string_chars=serving.limits.max_string_chars,
        )
        classes = bundle.classes
        answers = [*classes, *([abstain_label] if abstain_label else [])]
        metrics.initialise(bundle.version, answers, classes)
        return cls(
            bundle=bundle,
            validator=validator,
            threshold=threshold,
            abstain_label=abstain_label,
            answered={a: metrics.predictions.labels(bundle.version, a) for a in answers},
            abstained=metrics.abstentions.labels(bundle.version),
        )

    def loaded(self, inference: Any) -> ServedModel:
        """A copy with the predictor loaded and self-tested; raises on any failure (a
        `BundleIntegrityError` from verification, a `SelfTestError`, a loader's error)."""
        self.bundle.verify()
        predictor = load_predictor(self.bundle, inference)
        test = self_test(predictor, self.validator, self.bundle)
        return replace(self, predictor=predictor, self_test=test)


@dataclass
class Shadow:
    """A challenger scored beside the served model for `rows` more rows (`remaining`)."""

    model: ServedModel
    rows: int
    remaining: int
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, n: int) -> int:
        """Claim up to `n` of the remaining rows; how many were claimed."""
        with self.lock:
            taken = min(n, self.remaining)
            self.remaining -= taken
            return taken


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
    checks (empty: anonymous calls). `model_name` is the model `reload` follows; `pinned` True
    (a pinned tag) means the bundle is never swapped.
    """

    def __init__(
        self,
        serving: ServingConfig,
        bundle: Bundle,
        *,
        metrics: ServiceMetrics,
        writer: SegmentWriter | None,
        keys: KeyStore | None = None,
        model_name: str | None = None,
        pinned: bool = False,
    ) -> None:
        self.serving = serving
        self.keys = keys or KeyStore()
        self.labelled = LabelledIds(serving.limits.feedback_ids)
        self.metrics = metrics
        self.writer = writer
        self.model_name = model_name or bundle.name
        self.pinned = pinned
        self.model = ServedModel.of(bundle, serving, metrics)
        self.shadow: Shadow | None = None
        self.failure: str | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._reload_lock = threading.Lock()
        self._refused: tuple[str, str | None] | None = None
        self._poller: threading.Thread | None = None

    # The served bundle's parts, read from the current `model` (one attribute read each).
    @property
    def bundle(self) -> Bundle:
        return self.model.bundle

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def validator(self) -> Validator:
        return self.model.validator

    @property
    def predictor(self) -> Predictor | None:
        return self.model.predictor

    @property
    def self_test(self) -> SelfTest | None:
        return self.model.self_test

    @property
    def threshold(self) -> float | None:
        return self.model.threshold

    @property
    def abstain_label(self) -> str | None:
        return self.model.abstain_label

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
        pin = model_tag or serving.model_tag
        bundle = resolve_serving_bundle(config.output.model_name, pin)
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
        return cls(
            serving,
            bundle,
            metrics=metrics,
            writer=writer,
            keys=keys,
            model_name=config.output.model_name,
            pinned=bool(pin),
        )

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def load(self) -> None:
        """Load the predictor and run the self-test; on failure stay not ready and say why.
        Then start the shadow challenger (`serving.shadow_tag`) when one is configured."""
        model = self.model
        try:
            loaded = model.loaded(self.serving.inference)
        except Exception as exc:  # the reason is kept for /readyz callers and /predict answers
            self.failure = f"{type(exc).__name__}: {exc}"
            log.error(
                "model %s failed to load or its self-test: %s", model.bundle.tag, self.failure
            )
            return
        self.model = loaded
        self._log_loaded(loaded)
        settle_heap()
        self._ready.set()
        if self.serving.shadow_tag:
            self.start_shadow(self.serving.shadow_tag, self.serving.shadow_rows)

    @staticmethod
    def _log_loaded(model: ServedModel) -> None:
        assert model.predictor is not None and model.self_test is not None
        log.info(
            "model %s ready (%s, self-test on %d reference rows, max diff %.1e)",
            model.bundle.tag,
            model.predictor.kind,
            model.self_test.rows,
            model.self_test.max_abs_diff,
        )

    def load_in_background(self) -> threading.Thread:
        """`load`, then (unless pinned or the interval is 0) poll for promotions, in a thread."""
        thread = threading.Thread(target=self._run, name="occam-model-loader", daemon=True)
        thread.start()
        self._poller = thread
        return thread

    def _run(self) -> None:
        self.load()
        interval = self.serving.reload_interval_seconds
        if self.pinned or interval <= 0:
            return
        while not self._stop.wait(interval):
            try:
                self.reload("poll")
            except Exception:  # a poll must never end the poller; the next one tries again
                self.metrics.model_reloads.labels(ReloadOutcome.ERROR.value).inc()
                log.exception("reload (poll) failed; %s keeps serving", self.model.bundle.tag)

    def reload(self, trigger: str = "admin") -> ReloadResult:
        """Serve the newest production bundle of the model if it is not the served one: verify
        it, load it, self-test it, then swap it in (requests in flight finish on the old one).

        A bundle that fails is refused: logged and counted once per (tag, signature), and the
        old one keeps serving. `trigger` ("poll", "admin") is logged. One reload at a time: a
        call while another runs waits for it.
        """
        with self._reload_lock:
            result = self._reload(trigger)
        if result.outcome is not ReloadOutcome.UNCHANGED:
            self.metrics.model_reloads.labels(result.outcome.value).inc()
        return result

    def _reload(self, trigger: str) -> ReloadResult:
        current = self.model
        version = current.version

        def result(outcome: ReloadOutcome, detail: str, now: str = version) -> ReloadResult:
            return ReloadResult(outcome, now, version, detail)

        if self.pinned:
            return result(ReloadOutcome.PINNED, f"{current.bundle.tag} is pinned (model_tag)")
        if current.predictor is None:
            return result(ReloadOutcome.UNCHANGED, "the served model is still loading")
        try:
            found = latest_production(self.model_name)
        except Exception as exc:  # BundleError, or the store's own errors (a folder gone)
            log.error("reload (%s): cannot read the model store: %s", trigger, exc)
            return result(ReloadOutcome.ERROR, str(exc))
        if found is None or found.tag == current.bundle.tag:
            return result(ReloadOutcome.UNCHANGED, f"{current.bundle.tag} is production")
        key = (found.tag, found.signature)
        if key == self._refused:
            return result(ReloadOutcome.UNCHANGED, f"{found.tag} was refused before")
        try:
            candidate = ServedModel.of(found, self.serving, self.metrics)
            loaded = candidate.loaded(self.serving.inference)
        except Exception as exc:  # any failure keeps the old model serving
            self._refused = key
            detail = f"{found.tag} refused, {current.bundle.tag} keeps serving: {exc}"
            log.error("reload (%s): %s", trigger, detail)
            return result(ReloadOutcome.REFUSED, detail)
        self.model = loaded  # one attribute: atomic for every request that reads it after
        self._log_loaded(loaded)
        settle_heap()
        log.warning("reload (%s): now serving %s (was %s)", trigger, found.tag, current.bundle.tag)
        return result(ReloadOutcome.SWAPPED, f"{current.bundle.tag} -> {found.tag}", found.version)

    def start_shadow(self, tag: str, rows: int) -> ReloadResult:
        """Score `rows` more rows with bundle `tag` in shadow (verified and self-tested first,
        same feature schema and classes as the served model); replaces any running shadow.
        Outcome SWAPPED when it started, REFUSED (with the reason) when not."""
        current = self.model
        try:
            bundle = get_bundle(tag)
            # the same inputs (names and kinds; a retrained challenger saw other ranges and
            # categories, which its encoder handles as unknown) and the same classes
            inputs = [(f.name, f.kind) for f in bundle.schema.features]
            served = [(f.name, f.kind) for f in current.bundle.schema.features]
            if inputs != served or bundle.classes != current.classes:
                raise BundleError(
                    f"{bundle.tag} has another feature schema or other classes than the served "
                    f"{current.bundle.tag}: it cannot score the same rows"
                )
            model = ServedModel.of(bundle, self.serving, self.metrics).loaded(
                self.serving.inference
            )
        except Exception as exc:
            log.error("shadow %s refused: %s", tag, exc)
            return ReloadResult(ReloadOutcome.REFUSED, current.version, current.version, str(exc))
        self.shadow = Shadow(model, rows, rows)
        log.warning("shadow %s scores the next %d rows (stage=%s)", bundle.tag, rows, bundle.stage)
        return ReloadResult(
            ReloadOutcome.SWAPPED, current.version, current.version, f"shadow {bundle.tag}"
        )

    def predict(self, instances: list[Any]) -> Reply:
        """Validate, predict and log `instances`; a 4xx `Reply` naming each problem if refused.
        The answer and every record carry the version of the model that computed them."""
        model = self.model
        predictor = model.predictor
        if predictor is None:
            return self.unavailable()
        valid, problems = model.validator.validate(instances)
        if valid is None:
            return self.reject(problems)
        labels, proba = predictor.predict(valid.columns)
        now = time.time()
        threshold, abstain_label, classes = model.threshold, model.abstain_label, model.classes
        version = model.version
        log_rows = self.writer is not None and self.serving.log_predictions
        # Column at a time: the abstain rule over the whole probability matrix, the ids in one
        # call; then one dict per row for the answer, shared with its log record.
        count = len(labels)
        if threshold is not None:
            flags = (proba.max(axis=1) < threshold).tolist()
            abstentions = sum(flags)
        else:
            flags, abstentions = [False] * count, 0
        if abstentions and abstain_label:
            answered = [abstain_label if a else top for top, a in zip(labels, flags, strict=True)]
        else:
            answered = labels
        ids = new_ids(count)
        probabilities = [dict(zip(classes, row, strict=True)) for row in proba.tolist()]
        answers: list[dict[str, Any]] = [
            {"id": ident, "label": answer, "probabilities": probs, "abstained": abstained}
            for ident, answer, probs, abstained in zip(
                ids, answered, probabilities, flags, strict=True
            )
        ]
        records: list[Record] = []
        if log_rows:
            records = [
                PredictionRecord.of(
                    ident, now, version, features, answer, top, probs, abstained, marks
                )
                for ident, features, answer, top, probs, abstained, marks in zip(
                    ids,
                    valid.received,
                    answered,
                    labels,
                    probabilities,
                    flags,
                    valid.marks,
                    strict=True,
                )
            ]
        shadow = self.shadow
        if shadow is not None and log_rows:
            records.extend(self._shadow_records(shadow, valid, answers, now))
        if records and self.writer is not None:
            self.writer.submit(records)
        for answer_label, times in Counter(answered).items():
            counter = model.answered.get(answer_label)
            if counter is None:  # a label outside the bundle's classes: not expected
                counter = self.metrics.predictions.labels(version, answer_label)
            counter.inc(times)
        if abstentions:
            model.abstained.inc(abstentions)
        return Reply(200, {"model_version": version, "predictions": answers})

    def _shadow_records(
        self, shadow: Shadow, valid: Any, answers: list[dict[str, Any]], now: float
    ) -> list[PredictionRecord]:
        """The shadow challenger's records for the first rows it still has to score (same ids as
        the answers); a failing challenger is stopped and logged, never failing the request."""
        taken = shadow.take(len(answers))
        if taken == 0:
            if self.shadow is shadow:
                self.shadow = None
                log.warning("shadow %s finished its %d rows", shadow.model.bundle.tag, shadow.rows)
            return []
        model = shadow.model
        assert model.predictor is not None
        columns = {k: v[:taken] for k, v in valid.columns.items()}
        try:
            labels, proba = model.predictor.predict(columns)
        except Exception as exc:
            self.shadow = None
            log.error("shadow %s failed and was stopped: %s", model.bundle.tag, exc)
            return []
        records = []
        for i, row in enumerate(proba.tolist()):
            abstained = model.threshold is not None and max(row) < model.threshold
            top = labels[i]
            records.append(
                PredictionRecord(
                    id=answers[i]["id"],
                    ts=now,
                    model_version=model.version,
                    features=valid.received[i],
                    label=model.abstain_label if abstained and model.abstain_label else top,
                    predicted=top,
                    probabilities=dict(zip(model.classes, row, strict=True)),
                    abstained=abstained,
                    marks=valid.marks[i],
                    shadow=True,
                )
            )
        self.metrics.shadow_rows.labels(model.version).inc(len(records))
        return records

    def feedback(self, items: Sequence[tuple[str, object]]) -> Reply:
        """Log (prediction id, true label) pairs; 202 when logged. A label sent as a JSON
        number or boolean is read as its `occam.schema.canonical_text` (1 -> "1"), as training
        read the target column. 400 for unknown labels, 409 when an id was labelled before (at
        most one label per prediction id, as far as this worker remembers:
        `serving.limits.feedback_ids`); nothing is logged then."""
        model = self.model
        problem = model.validator.check_count(len(items), "labels")
        if problem is not None:
            return self.reject([problem], outcome=FEEDBACK_OUTCOME)
        labels, problems = check_labels([label for _, label in items], model.classes)
        if problems:
            return self.reject(problems, outcome=FEEDBACK_OUTCOME)
        ids = [ident for ident, _ in items]
        repeated = self.labelled.seen(ids)
        if repeated:
            return self.reject(
                outcome=FEEDBACK_OUTCOME,
                problems=[
                    Problem(
                        i,
                        "id",
                        Reason.DUPLICATE_LABEL,
                        f"prediction {ids[i]} already has a label; one label per prediction "
                        "id is accepted (nothing in this request was logged)",
                    )
                    for i in repeated
                ],
            )
        self.labelled.add(ids)
        now = time.time()
        if self.writer is not None:
            self.writer.submit(
                FeedbackRecord(id=ident, ts=now, label=label)
                for ident, label in zip(ids, labels, strict=True)
            )
        for label, count in Counter(labels).items():
            self.metrics.feedback_labels.labels(label).inc(count)
        return Reply(202, {"accepted": len(items)})

    def reject(
        self,
        problems: Sequence[Problem],
        status: int | None = None,
        *,
        record: bool = True,
        headers: Mapping[str, str] | None = None,
        outcome: str = PREDICT_OUTCOME,
    ) -> Reply:
        """Count, log and describe a refused request: one count and (`record` True) one
        `rejected` log record per bad row (its first problem) or per request-level problem.

        `status` None: the status the reasons carry (`occam.errors.status_of`). Requests refused
        before they are authenticated, read or allowed (401, 403, 408, 429, 499) are counted
        but not logged (`record` False): nobody without a key can write to the log. `outcome`
        ends the body's summary (`occam.errors.ErrorBody.of`)."""
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
            error_body(problems, outcome),
            headers or {},
        )

    def unavailable(self) -> Reply:
        """503 while the model loads, or for good when it failed to load or its self-test."""
        if self.failure is not None:
            message = f"model {self.bundle.tag} failed to load: {self.failure}"
        else:
            message = f"model {self.bundle.tag} is still loading; retry shortly"
        return Reply(503, error_body([Problem(None, None, Reason.MODEL_UNAVAILABLE, message)]))

    def model_document(self, history: int = 20) -> dict[str, Any]:
        """What a client needs to build valid requests, what the model promises, which version
        serves (and any shadow), and the last `history` records of the registry's audit log."""
        model = self.model
        bundle = model.bundle
        metadata = bundle.metadata
        predictor = model.predictor
        example = model.self_test.example if model.self_test else None
        shadow = self.shadow
        return {
            "name": bundle.name,
            "version": model.version,
            "tag": bundle.tag,
            "stage": bundle.stage,
            "created_at": metadata.created_at,
            "project": metadata.project,
            "target": metadata.target,
            "classes": model.classes,
            "positive_label": metadata.positive_label,
            "goals": [g.model_dump() for g in metadata.goals],
            "gate": metadata.gate.model_dump(),
            "abstain": (
                {"threshold": model.threshold, "label": model.abstain_label}
                if model.threshold is not None
                else None
            ),
            "features": bundle.schema.to_dict()["features"],
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
            "reload": {
                "pinned": self.pinned,
                "interval_seconds": self.serving.reload_interval_seconds,
            },
            "shadow": (
                {
                    "tag": shadow.model.bundle.tag,
                    "version": shadow.model.version,
                    "rows": shadow.rows,
                    "remaining": shadow.remaining,
                }
                if shadow is not None
                else None
            ),
            "history": self._history(history),
        }

    def _history(self, last: int) -> list[dict[str, Any]]:
        """The model's last `last` audit records (newest last), as JSON objects; [] when the
        log cannot be read (the service never fails a /model call on it)."""
        from occam.registry import read_history

        try:
            records = read_history(self.model_name)[-last:]
        except OSError as exc:
            log.warning("audit log unreadable: %s", exc)
            return []
        return [json.loads(record.to_json()) for record in records]

    def close(self) -> None:
        """Stop polling for promotions; write out the queued log records."""
        self._stop.set()
        if self.writer is not None:
            self.writer.close()


def settle_heap() -> None:
    """Collect garbage once, then move every object alive (the loaded model, the libraries)
    into the collector's permanent generation (`gc.freeze`). A full collection of a loaded
    worker walks ~200k objects (about 350 ms on a busy machine, a request's answer waiting
    behind it); once frozen they are never walked again and a full collection costs little.
    Called after a model loads and after a swap (an old model's objects left frozen cost
    memory only if they hold reference cycles)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def new_ids(count: int) -> list[str]:
    """`count` prediction ids: each the hex form of a random (version 4) UUID, as
    `uuid.uuid4().hex` gives, drawn from the OS in one call for the whole request."""
    if count == 1:
        return [uuid.uuid4().hex]
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes((b & 0x0F) | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes((b & 0x3F) | 0x80 for b in raw[8::16])  # RFC 4122 variant
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]

"""The service's Prometheus counters, exposed on BentoML's `/metrics`.

Counters only: BentoML runs one process per worker and sums counters across them. The names
given here get the `_total` suffix in the exposition, e.g. `occam_service_predictions_total`.
Label values stay few: the served model version, the class labels (and the abstain label),
the fixed list of rejection reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from occam.errors import Reason

CounterFactory = Callable[..., Any]
_DEFAULT: ServiceMetrics | None = None


@dataclass(frozen=True)
class ServiceMetrics:
    """The counters; build them with `create` (tests pass a factory bound to a fresh
    prometheus_client registry)."""

    predictions: Any
    abstentions: Any
    rejected_rows: Any
    feedback_labels: Any
    log_dropped_records: Any
    model_reloads: Any
    shadow_rows: Any

    @classmethod
    def create(cls, counter: CounterFactory) -> ServiceMetrics:
        return cls(
            predictions=counter(
                name="occam_service_predictions",
                documentation="Rows answered, by model version and answered label "
                "(the abstain label when the model abstained)",
                labelnames=["model_version", "label"],
            ),
            abstentions=counter(
                name="occam_service_abstentions",
                documentation="Rows answered with the abstain label (confidence under the "
                "bundle's threshold)",
                labelnames=["model_version"],
            ),
            rejected_rows=counter(
                name="occam_service_rejected_rows",
                documentation="Rows (or whole requests, for request-level problems) refused, "
                "by reason (occam.errors.Reason: 4xx answers, and client_disconnected)",
                labelnames=["reason"],
            ),
            feedback_labels=counter(
                name="occam_service_feedback_labels",
                documentation="Ground-truth labels received on /feedback, by label",
                labelnames=["label"],
            ),
            log_dropped_records=counter(
                name="occam_service_log_dropped_records",
                documentation="Prediction-log records dropped (queue full or write failed)",
            ),
            model_reloads=counter(
                name="occam_service_model_reloads",
                documentation="Looks for a newly promoted bundle that changed something, by "
                "outcome (service.runtime.ReloadOutcome: swapped, refused, pinned, error)",
                labelnames=["outcome"],
            ),
            shadow_rows=counter(
                name="occam_service_shadow_rows",
                documentation="Rows scored by a shadow challenger (logged, never answered), by "
                "its model version",
                labelnames=["model_version"],
            ),
        )

    def initialise(self, model_version: str, labels: Iterable[str], classes: Iterable[str]) -> None:
        """Create every expected series at zero, so rates work from the first scrape."""
        for label in labels:
            self.predictions.labels(model_version=model_version, label=label)
        self.abstentions.labels(model_version=model_version)
        for reason in Reason:
            if reason.status < 500:  # 503 is an answer of the service, not a refusal
                self.rejected_rows.labels(reason=reason.value)
        for label in classes:
            self.feedback_labels.labels(label=label)
        for outcome in ("swapped", "refused"):
            self.model_reloads.labels(outcome=outcome)


def default_metrics() -> ServiceMetrics:
    """The process-wide counters registered through `bentoml.metrics` (created on first use:
    a Prometheus registry refuses a second counter of the same name)."""
    global _DEFAULT
    if _DEFAULT is None:
        import bentoml

        _DEFAULT = ServiceMetrics.create(bentoml.metrics.Counter)
    return _DEFAULT

"""The monitoring sidecar (`occam monitor`): reads the service's prediction log, compares live
inputs and outputs with the training reference, joins feedback, and exports drift, quality and
retrain signals to Prometheus. See docs/metrics.md for what it exports and why."""

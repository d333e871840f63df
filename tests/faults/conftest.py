"""Fault injection with real processes: the service's fixtures (trained bundle, held-out rows,
`occam serve` on free ports) are shared from tests/service."""

from __future__ import annotations

from tests.service.conftest import held_out  # noqa: F401  (a fixture, used by name)

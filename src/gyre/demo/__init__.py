"""Demo data for the reference scenario: a deterministic synthetic payments stream.

:class:`PaymentsGenerator` makes payments (user, merchant, amount, currency, country,
device, time) with about 1% fraud, whose labels arrive late as feedback (:meth:`~PaymentsGenerator.labels`),
either as a historical table (:meth:`~PaymentsGenerator.history`) or as live traffic
(:meth:`~PaymentsGenerator.stream`). A ``drift_at`` instant opens a new market and brings a new
fraud pattern that a model trained on earlier data does not catch. The same
:class:`PaymentsConfig` (seed included) always gives the same data, byte for byte.
"""

from __future__ import annotations

from gyre.demo.payments import (
    LABELS_SCHEMA,
    PAYMENTS_SCHEMA,
    DriftConfig,
    LabelDelay,
    PaymentsConfig,
    PaymentsGenerator,
)

__all__ = [
    "LABELS_SCHEMA",
    "PAYMENTS_SCHEMA",
    "DriftConfig",
    "LabelDelay",
    "PaymentsConfig",
    "PaymentsGenerator",
]

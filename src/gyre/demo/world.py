"""The demo's world on the wall clock: payments from :class:`PaymentsGenerator`, time compressed.

The generator tells a story in its own time (days of payments, labels an hour late, night
fraud); the platform's windows, schedules and prediction log run on the real clock. A
:class:`World` maps one onto the other: ``scale`` seconds of story pass per real second, and
story time ``anchor_story`` is real time ``anchor_real``. Every timestamp the platform sees
(``ts`` of a payment, ``label_ts`` of a label) is real time, so a feature window of ``HOUR``
real seconds holds one story hour of payments, exactly as a one-hour window would.

Payments also carry ``hour``, their hour of day in the story, as the payment service's local
time would: a model may learn that account takeovers happen at night.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.demo.payments import PAYMENTS_SCHEMA, PaymentsConfig, PaymentsGenerator
from gyre.errors import InvalidArgument

TS = PAYMENTS_SCHEMA.field("ts").type
# What the demo's payments dataset holds: the generator's columns without the label, and the
# local hour of the payment (a feature that drifts).
PAYMENTS = pa.schema(
    [
        *(f for f in PAYMENTS_SCHEMA if f.name not in ("ts", "is_fraud")),
        pa.field("hour", pa.int64(), nullable=False),
        PAYMENTS_SCHEMA.field("ts"),
    ]
)
LABELS = pa.schema(
    [
        pa.field("payment_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("label_ts", TS, nullable=False),
    ]
)
_US = timedelta(microseconds=1)


@dataclasses.dataclass(frozen=True)
class World:
    """The generator's story played on the wall clock, ``scale`` times faster.

    Attributes:
        generator: makes the payments and their labels (in story time).
        scale: story seconds per real second.
        anchor_story, anchor_real: one instant in both times.
    """

    generator: PaymentsGenerator
    scale: float
    anchor_story: datetime
    anchor_real: datetime

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise InvalidArgument(f"World: scale must be positive, got {self.scale!r}.")

    @classmethod
    def create(
        cls, config: PaymentsConfig, *, scale: float, story_now: datetime, real_now: datetime
    ) -> World:
        """A world whose story is at ``story_now`` when the wall clock says ``real_now``."""
        return cls(PaymentsGenerator(config), scale, story_now, real_now)

    # -- the two clocks ---------------------------------------------------------------------

    def story(self, real: datetime) -> datetime:
        """The story time at real time ``real``."""
        return self.anchor_story + (real - self.anchor_real) * self.scale

    def real(self, story: datetime) -> datetime:
        """The real time at story time ``story``."""
        return self.anchor_real + (story - self.anchor_story) / self.scale

    def real_seconds(self, story: timedelta) -> float:
        """How many real seconds a span of story time lasts (one story hour: ``3600 / scale``)."""
        return story.total_seconds() / self.scale

    # -- data -------------------------------------------------------------------------------

    def payments(self, start: datetime, end: datetime, *, drift_at: datetime | None = None) -> pa.Table:
        """The payments made in real time ``[start, end)``, with real timestamps.

        ``drift_at`` (real time) opens the new market and its fraud ring from that instant on.
        The result carries ``is_fraud`` too: the truth, which the platform only learns through
        :meth:`labels`.
        """
        a, b = self._story_us(start), self._story_us(end)
        if b <= a:
            return _empty_payments()
        drift = self.story(drift_at) if drift_at is not None else None
        table = self.generator.history(_from_us(a), _from_us(b), drift_at=drift)
        story_ts = table["ts"]
        real_ts = self._real_column(story_ts)
        hour = pc.hour(story_ts).cast(pa.int64())
        out = table.drop_columns(["ts", "is_fraud"])
        out = out.append_column(PAYMENTS.field("hour"), hour).append_column(PAYMENTS.field("ts"), real_ts)
        return out.cast(PAYMENTS).append_column("is_fraud", table["is_fraud"])

    def label_times(self, payments: pa.Table) -> pa.Array:
        """When each payment's label arrives (real time), whether or not it has yet."""
        story = payments.select(["payment_id", "is_fraud"]).append_column(
            "ts", self._story_column(payments["ts"])
        )
        # Ask for every label (as of far in the future), then put them back in payment order.
        labels = self.generator.labels(story, _FAR_FUTURE)
        order = pc.index_in(payments["payment_id"], labels["payment_id"])
        return self._real_column(labels["label_ts"].take(order))

    def labels(self, payments: pa.Table, as_of: datetime) -> pa.Table:
        """The labels of ``payments`` that have arrived by real time ``as_of``, in arrival order."""
        at = self.label_times(payments)
        keep = pc.less_equal(at, pa.scalar(as_of, TS))
        table = pa.table(
            {"payment_id": payments["payment_id"], "is_fraud": payments["is_fraud"], "label_ts": at}
        )
        table = table.filter(keep).sort_by([("label_ts", "ascending"), ("payment_id", "ascending")])
        return table.cast(LABELS)

    # -- helpers ----------------------------------------------------------------------------

    def _story_us(self, real: datetime) -> int:
        return (self.story(real) - _EPOCH) // _US

    def _real_column(self, story: pa.Array | pa.ChunkedArray) -> pa.Array:
        us = story.cast(TS).cast(pa.int64()).to_numpy(zero_copy_only=False)
        anchor_story = (self.anchor_story - _EPOCH) // _US
        anchor_real = (self.anchor_real - _EPOCH) // _US
        real = anchor_real + np.round((us - anchor_story) / self.scale).astype(np.int64)
        return pa.array(real, pa.int64()).cast(TS)

    def _story_column(self, real: pa.Array | pa.ChunkedArray) -> pa.Array:
        us = real.cast(TS).cast(pa.int64()).to_numpy(zero_copy_only=False)
        anchor_story = (self.anchor_story - _EPOCH) // _US
        anchor_real = (self.anchor_real - _EPOCH) // _US
        story = anchor_story + np.round((us - anchor_real) * self.scale).astype(np.int64)
        return pa.array(story, pa.int64()).cast(TS)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FAR_FUTURE = datetime(9000, 1, 1, tzinfo=UTC)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _empty_payments() -> pa.Table:
    return PAYMENTS.empty_table().append_column("is_fraud", pa.array([], pa.bool_()))

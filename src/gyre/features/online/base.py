"""The online store contract: a few batch operations per feature view, nothing more.

Per view a store keeps three things:

* **latest rows**: for each entity key, the one row with the greatest ``order``. Materialization
  uses ``order = (event_time_us, version, file_idx, row_idx)``, so the kept row is the one point-in-time
  retrieval would pick, whatever order (and however often) rows are written;
* **events**: the recent rows window features aggregate, per entity key, by event time;
* **a watermark**: the last lake version materialized, so the next run reads only newer files,
  with a fingerprint of the view definition it was materialized with.

Keys are opaque strings (the layer above encodes join-key values); values are dicts, stored as
JSON by :func:`~gyre.features.online.codec.encode_values`. A writer may pass that JSON text
instead of the dict, and an order as :func:`encode_order`'s text (materialization encodes whole
columns at once); reads return dicts. Planning, TTLs and window aggregation happen above the
store, in :mod:`gyre.features.lookup`, which reads through :meth:`OnlineStore.read_view`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from gyre.features.spec import ViewSpec

Order = tuple[int, ...]
Values = dict[str, Any]
LatestRow = tuple[str, "Order | str", "Values | str"]
"""``(key, order, values)``; ``order`` and ``values`` may be given encoded (see above)."""
Event = tuple[str, int, str, "Values | str"]
"""``(key, event_time_us, event_id, values)``; ``values`` may be given as its JSON text."""


class OnlineStore(ABC):
    """Where serving reads features: latest rows and recent events per view, and watermarks.

    Every method takes a batch; a backend answers it in one round trip where it can. Methods
    are safe to call from several threads. Writes are idempotent, so a materialization that
    crashed half-way can simply run again.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    """Optional abilities: ``"multi_host"`` (processes on other machines share the store, so
    serving replicas can read what one materializer wrote); ``"in_process"`` (a read is a
    local file read of microseconds, no network round trip: a server may run it in its event
    loop)."""

    @classmethod
    @abstractmethod
    def from_url(cls, url: str, *, root: Path | None = None) -> OnlineStore:
        """Open the store at ``url`` (its scheme is this backend's); ``root`` anchors relative paths."""

    # -- views ---------------------------------------------------------------------------------

    @abstractmethod
    def apply(self, views: Sequence[ViewSpec]) -> None:
        """Make room for ``views`` (idempotent: existing data is kept)."""

    @abstractmethod
    def teardown(self, view_names: Sequence[str]) -> None:
        """Delete everything stored for these views: latest rows, events and watermark."""

    # -- latest rows ---------------------------------------------------------------------------

    @abstractmethod
    def write_latest(self, view: str, rows: Sequence[LatestRow]) -> int:
        """Keep, per key, the row with the greatest ``order`` (tuples compared element-wise).

        A row replaces the stored one only if its order is strictly greater, so writing rows
        again, or in another order, leaves the same state. All orders of a view have the same
        length; each element fits in a signed 64-bit integer.

        Returns:
            How many stored rows were created or replaced.
        """

    def write_latest_columns(
        self,
        view: str,
        keys: Sequence[str],
        times: Sequence[int],
        orders: Sequence[str],
        values: Sequence[str],
    ) -> int:
        """:meth:`write_latest` of rows given as encoded columns, as materialization has them:
        ``orders`` as :func:`encode_order` text, ``times`` their first elements (the event
        times), ``values`` as JSON text. A backend may write these without a Python step per
        row; this default makes rows of them.
        """
        return self.write_latest(view, list(zip(keys, orders, values, strict=True)))

    @abstractmethod
    def read_latest(self, view: str, keys: Sequence[str]) -> list[tuple[Order, Values] | None]:
        """The stored ``(order, values)`` for each key, in ``keys``' order; ``None`` for none.

        A view that was never written reads as all ``None``.
        """

    # -- events --------------------------------------------------------------------------------

    @abstractmethod
    def write_events(self, view: str, events: Sequence[Event]) -> int:
        """Store events ``(key, event_time_us, event_id, values)``.

        An event id names one immutable event of the view (the same id always comes with the
        same key, time and values), so writing an event again is a no-op. Ids are printable
        text (no control characters).

        Returns:
            How many events were given (backends need not count the new ones).
        """

    @abstractmethod
    def read_events(
        self, view: str, keys: Sequence[str], since_us: int, until_us: int
    ) -> list[list[tuple[int, Values]]]:
        """Per key (in ``keys``' order) its events with ``since_us < event_time_us <= until_us``,
        as ``(event_time_us, values)`` by ascending time."""

    @abstractmethod
    def trim_events(self, view: str, before_us: int) -> int:
        """Delete the view's events with ``event_time_us < before_us``; return how many (or an
        estimate, for backends that cannot count cheaply)."""

    # -- watermarks ----------------------------------------------------------------------------

    @abstractmethod
    def get_watermark(self, view: str) -> int | None:
        """The last dataset version materialized into the view, or ``None`` if it never was (or
        was torn down since)."""

    @abstractmethod
    def get_fingerprint(self, view: str) -> str | None:
        """The fingerprint recorded with the view's watermark, or ``None`` without a watermark.

        Materialization records what of the view's definition shaped the stored rows, and
        rebuilds the view when that changed."""

    @abstractmethod
    def set_watermark(self, view: str, version: int, *, fingerprint: str = "") -> None:
        """Record the view's watermark (after its rows are written) and its fingerprint."""

    # -- reading for a lookup ------------------------------------------------------------------

    @abstractmethod
    def read_view(
        self, view: str, keys: Sequence[str], *, latest: bool, events: tuple[int, int] | None
    ) -> tuple[list[tuple[int, Values] | None] | None, list[list[tuple[int, Values]]] | None]:
        """What a lookup reads, in one round trip: the latest rows (if ``latest``) as
        ``(event_time_us, values)`` per key, ``None`` for none, and the events (if ``events =
        (since_us, until_us)`` is given) as :meth:`read_events` returns them.

        The hot path of serving: the event time (``order[0]``) is all a lookup needs of the
        order. Either part is ``None`` when not asked for. Every values dict returned is a new
        object, the caller's to keep or change (a lookup hands them out without copying).
        """

    # -- lifecycle -----------------------------------------------------------------------------

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ORDER_DIGITS = 20
_ORDER_OFFSET = 1 << 63


def encode_order(order: Order) -> str:
    """``order`` as a string whose byte order is the tuple's order: each element offset into
    0 .. 2**64 and written as 20 decimal digits. Digits only, because Redis compares Lua
    strings with ``strcoll``, whose order under a locale is plain only for digits."""
    return "".join(f"{v + _ORDER_OFFSET:020d}" for v in order)


def decode_order(text: str) -> Order:
    """The inverse of :func:`encode_order`."""
    return tuple(int(text[i : i + ORDER_DIGITS]) - _ORDER_OFFSET for i in range(0, len(text), ORDER_DIGITS))


def order_time(text: str) -> int:
    """The first element of an encoded order (the event time), without decoding the rest."""
    return int(text[:ORDER_DIGITS]) - _ORDER_OFFSET


def as_encoded_order(order: Order | str) -> str:
    """``order`` as :func:`encode_order`'s text, whether given as a tuple or encoded already."""
    return order if isinstance(order, str) else encode_order(order)

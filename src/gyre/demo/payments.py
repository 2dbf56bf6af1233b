"""A synthetic payments stream for the fraud scenario: late labels, ~1% fraud, switchable drift.

The world is fixed by the seed: users (home country, usual device, spending level, how
often they pay) and merchants (popularity, a few risky ones). Time is cut into one-day
chunks; each chunk draws its payments from its own random stream, keyed by (seed, chunk),
so any time range can be generated on its own and always comes out the same. Drift only
masks rows in or out (by time) and never changes what is drawn, so payments before
``drift_at`` are identical with and without drift.

Fraud signal before drift ("old" fraud, account takeover): bursts of payments by one user
within minutes, at night, for high amounts, mostly at a handful of risky merchants, often
from abroad. After drift the business opens new markets (new users, merchants and
countries take a share of the traffic, with small amounts mostly paid from phones) and a
fraud ring works a few of the new merchants: single payments, daytime, mid-range amounts,
from the apps rather than the web -- nothing the old signal looks at.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.errors import InvalidArgument

PAYMENTS_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("merchant_id", pa.string(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
    ]
)
LABELS_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.string(), nullable=False),
        pa.field("is_fraud", pa.bool_(), nullable=False),
        pa.field("label_ts", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

DEVICES = ("ios", "android", "web")
# Where pre-drift users live, with their share of users.
HOME_COUNTRIES = {
    "US": 0.34,
    "GB": 0.15,
    "DE": 0.12,
    "FR": 0.10,
    "ES": 0.07,
    "IT": 0.06,
    "NL": 0.05,
    "CA": 0.07,
    "AU": 0.04,
}
CURRENCIES = {
    "US": "USD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "NL": "EUR",
    "IE": "EUR", "PT": "EUR", "BE": "EUR", "AT": "EUR", "CA": "CAD", "AU": "AUD", "NZ": "NZD",
    "CH": "CHF", "SE": "SEK", "NO": "NOK", "DK": "DKK", "PL": "PLN", "JP": "JPY", "SG": "SGD",
    "BR": "BRL", "MX": "MXN", "NG": "NGN", "PH": "PHP", "IN": "INR", "ID": "IDR", "VN": "VND",
    "TR": "TRY", "ZA": "ZAR", "AR": "ARS", "CO": "COP", "KE": "KES", "EG": "EGP", "TH": "THB",
}  # fmt: skip

_HOUR = 3_600_000_000
_MINUTE = 60_000_000
_CHUNK = 24 * _HOUR
_SPILL = 2 * _HOUR  # a fraud burst never runs longer than this past its chunk
_SEQ_PER_CHUNK = 10_000_000  # payment_id = chunk * this + position; a chunk holds fewer rows
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Relative payment rate per UTC hour of day (mean 1): quiet nights, busy evenings.
_LEGIT_HOURS = np.array(
    [0.25, 0.15, 0.1, 0.1, 0.1, 0.2, 0.4, 0.7, 1.0, 1.2, 1.3, 1.4,
     1.5, 1.4, 1.3, 1.3, 1.4, 1.5, 1.6, 1.6, 1.5, 1.2, 0.8, 0.5]
)  # fmt: skip
_LEGIT_HOURS = _LEGIT_HOURS / _LEGIT_HOURS.mean()
# Account takeovers start mostly at night, while the owner sleeps.
_FRAUD_HOURS = np.array(
    [2.5, 3.0, 3.0, 3.0, 2.5, 1.5, 0.8, 0.5, 0.4, 0.4, 0.4, 0.4,
     0.4, 0.4, 0.4, 0.4, 0.4, 0.5, 0.5, 0.6, 0.7, 0.9, 1.3, 1.8]
)  # fmt: skip
_FRAUD_HOURS = _FRAUD_HOURS / _FRAUD_HOURS.mean()
_BURST_N, _BURST_P = 6, 0.5  # takeover burst size = 1 + Binomial(6, 0.5): 1..7 payments, mean 4
_BURST_MEAN = 1 + _BURST_N * _BURST_P
_SESSION_MEAN, _SESSION_MAX = 1.4, 8  # legitimate session size = 1 + Poisson(0.4), at most 8
_MAX_GAP = 15 * _MINUTE  # so a burst of at most 8 payments lasts < _SPILL


@dataclasses.dataclass(frozen=True)
class LabelDelay:
    """How long after a payment its label arrives: log-normal, capped.

    With the defaults half the labels are in after an hour and ~90% within five hours.
    """

    median: timedelta = timedelta(hours=1)
    sigma: float = 1.2  # spread of log(delay)
    max: timedelta = timedelta(days=2)


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """What changes at ``drift_at``: a new market opens and a fraud ring works it."""

    new_countries: tuple[str, ...] = ("BR", "MX", "NG", "PH")
    new_merchants: int = 40  # ids continue after the pre-drift merchants
    new_users: int = 500  # ids continue after the pre-drift users
    traffic_share: float = 0.25  # share of legitimate payments from the new market after drift
    fraud_merchants: int = 8  # the first this many new merchants are the ring's
    fraud_amount: tuple[float, float] = (20.0, 90.0)  # uniform range of the ring's amounts
    fraud_devices: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"android": 0.6, "ios": 0.4}
    )
    fraud_share: float = 0.7  # share of fraudulent payments that follow the new pattern


@dataclasses.dataclass(frozen=True)
class PaymentsConfig:
    """Everything that shapes the generated payments; equal configs give identical data."""

    seed: int = 0
    n_users: int = 2_000
    n_merchants: int = 300
    fraud_rate: float = 0.01  # share of payments that are fraudulent
    payments_per_hour: float = 300.0  # average over a day; the hour of day modulates it
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)  # nothing happens before this
    label_delay: LabelDelay = dataclasses.field(default_factory=LabelDelay)
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)

    def __post_init__(self) -> None:
        d = self.drift
        checks = [
            (self.seed >= 0, "seed must be >= 0"),
            (self.n_users >= 1, "n_users must be >= 1"),
            (self.n_merchants >= 1, "n_merchants must be >= 1"),
            (0 < self.fraud_rate < 0.5, "fraud_rate must be in (0, 0.5)"),
            (
                0 < self.payments_per_hour <= 200_000,
                "payments_per_hour must be in (0, 200000]",
            ),
            (_aware(self.start), "start must be timezone-aware, e.g. datetime(2024, 1, 1, tzinfo=UTC)"),
            (self.label_delay.median > timedelta(0), "label_delay.median must be positive"),
            (self.label_delay.max >= self.label_delay.median, "label_delay.max must be >= its median"),
            (self.label_delay.sigma >= 0, "label_delay.sigma must be >= 0"),
            (len(d.new_countries) >= 1, "drift.new_countries must name at least one country"),
            (
                not set(d.new_countries) & set(HOME_COUNTRIES),
                f"drift.new_countries must not include the pre-drift countries {sorted(HOME_COUNTRIES)}",
            ),
            (
                all(len(c) == 2 and c.isupper() for c in d.new_countries),
                "drift.new_countries must be ISO-3166 alpha-2 codes such as 'BR'",
            ),
            (1 <= d.fraud_merchants <= d.new_merchants, "need 1 <= drift.fraud_merchants <= new_merchants"),
            (d.new_users >= 1, "drift.new_users must be >= 1"),
            (0 <= d.traffic_share < 1, "drift.traffic_share must be in [0, 1)"),
            (0 <= d.fraud_share <= 1, "drift.fraud_share must be in [0, 1]"),
            (
                0 < d.fraud_amount[0] < d.fraud_amount[1],
                "drift.fraud_amount must be (low, high), 0 < low < high",
            ),
            (
                bool(d.fraud_devices)
                and set(d.fraud_devices) <= set(DEVICES)
                and all(w >= 0 for w in d.fraud_devices.values())
                and sum(d.fraud_devices.values()) > 0,
                f"drift.fraud_devices must map some of {list(DEVICES)} to non-negative weights",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidArgument(f"PaymentsConfig: {message}.")


class PaymentsGenerator:
    """Generates payments (``history``, ``stream``) and their late labels (``labels``)."""

    def __init__(self, config: PaymentsConfig | None = None) -> None:
        self.config = config = config or PaymentsConfig()
        self._start_us = _to_us(config.start, "config.start")
        self._cache: OrderedDict[tuple[int, int | None], dict[str, np.ndarray]] = OrderedDict()
        self._build_world()

    # -- public -----------------------------------------------------------------------------

    def history(self, start: datetime, end: datetime, *, drift_at: datetime | None = None) -> pa.Table:
        """All payments with ``start <= ts < end``, in time order (ties by payment_id).

        ``drift_at`` switches the new market and fraud pattern on from that instant;
        payments before it are the same as without drift.
        """
        a, b = _to_us(start, "start"), _to_us(end, "end")
        if b < a:
            raise InvalidArgument(f"history: end ({end}) is before start ({start}).")
        return pa.Table.from_batches([self._window(a, b, self._drift_us(drift_at))])

    def stream(
        self,
        start: datetime,
        *,
        drift_at: datetime | None = None,
        end: datetime | None = None,
        every: timedelta = timedelta(minutes=1),
    ) -> Iterator[pa.RecordBatch]:
        """Live traffic from ``start``: one record batch per ``every`` of demo time, in time order.

        Batches may be empty (a quiet minute) so a consumer can see time pass; without ``end``
        the stream never ends. The rows are exactly those ``history`` gives for the same range
        (``batch.to_pylist()`` turns a batch into dicts).
        """
        t, step = _to_us(start, "start"), every // timedelta(microseconds=1)
        stop = None if end is None else _to_us(end, "end")
        if step <= 0:
            raise InvalidArgument(f"stream: every must be positive, got {every}.")
        drift = self._drift_us(drift_at)
        while stop is None or t < stop:
            t_next = t + step if stop is None else min(t + step, stop)
            yield self._window(t, t_next, drift)
            t = t_next

    def labels(self, payments: pa.Table | pa.RecordBatch, as_of: datetime) -> pa.Table:
        """The labels of ``payments`` that have arrived by ``as_of`` (``label_ts <= as_of``).

        ``label_ts`` is the payment's ``ts`` plus a delay drawn from ``config.label_delay``
        that depends only on the seed and the payment_id, so it never changes between calls.
        Rows come in arrival order (``label_ts``, then payment_id).
        """
        missing = {"payment_id", "ts", "is_fraud"} - set(payments.schema.names)
        if missing:
            raise InvalidArgument(
                f"labels: payments lack column(s) {sorted(missing)}; pass the table from "
                "history() or stream() before dropping is_fraud."
            )
        as_of_us = _to_us(as_of, "as_of")
        ids = payments.column("payment_id")
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        try:
            seq = pc.cast(pc.utf8_slice_codeunits(ids, 2), pa.int64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InvalidArgument(
                "labels: payment_id values must look like 'p-00000000000042' (made by PaymentsGenerator)."
            ) from exc
        ts = _ts_to_us(payments.column("ts"))
        label_ts = ts + self._label_delays(seq)
        keep = np.flatnonzero(label_ts <= as_of_us)
        keep = keep[np.lexsort((seq[keep], label_ts[keep]))]
        idx = pa.array(keep, pa.int64())
        return pa.Table.from_arrays(
            [
                ids.take(idx),
                _as_array(payments.column("is_fraud")).take(idx),
                pa.array(label_ts[keep], pa.int64()).cast(LABELS_SCHEMA.field("label_ts").type),
            ],
            schema=LABELS_SCHEMA,
        )

    # -- the world --------------------------------------------------------------------------

    def _build_world(self) -> None:
        c, d = self.config, self.config.drift
        rng = _rng(c.seed, 0)
        n_old, n_new = c.n_users, d.new_users
        old_countries = list(HOME_COUNTRIES)
        self._countries = old_countries + list(d.new_countries)
        self._n_old_countries = len(old_countries)
        # Countries without a listed currency pay in USD.
        currencies = sorted(set(CURRENCIES.values()) | {"USD"})
        self._currency_names = pa.array(currencies, pa.string())
        self._currency_of = np.array(
            [currencies.index(CURRENCIES.get(cc, "USD")) for cc in self._countries], dtype=np.int64
        )
        self._country_names = pa.array(self._countries, pa.string())
        self._merchant_names = pa.array(
            [f"m-{i}" for i in range(c.n_merchants + d.new_merchants)], pa.string()
        )

        # Users: pre-drift ones live in the old countries, new-market ones in the new countries.
        home_old = rng.choice(len(old_countries), n_old, p=_norm(list(HOME_COUNTRIES.values())))
        home_new = self._n_old_countries + rng.integers(0, len(d.new_countries), n_new)
        self._home = np.concatenate([home_old, home_new])
        self._device = np.concatenate(
            [rng.choice(3, n_old, p=[0.45, 0.40, 0.15]), rng.choice(3, n_new, p=[0.15, 0.70, 0.15])]
        )
        # Typical spend per user (median of their log-normal amounts).
        self._scale = np.concatenate(
            [np.exp(rng.normal(np.log(30.0), 0.5, n_old)), np.exp(rng.normal(np.log(10.0), 0.5, n_new))]
        )
        self._user_cdf_old = _cdf(rng.lognormal(0.0, 0.8, n_old))
        self._user_cdf_new = _cdf(rng.lognormal(0.0, 0.8, n_new))

        # Merchants: Zipf-like popularity in a seeded order; a few risky ones attract old fraud.
        self._merchant_cdf_old = _cdf(rng.permutation(1.0 / (np.arange(c.n_merchants) + 3.0) ** 0.9))
        self._merchant_cdf_new = _cdf(rng.permutation(1.0 / (np.arange(d.new_merchants) + 3.0) ** 0.9))
        self._risky = np.sort(rng.choice(c.n_merchants, max(1, c.n_merchants // 25), replace=False))
        self._fraud_device_p = _norm([d.fraud_devices.get(name, 0.0) for name in DEVICES])
        self._delay_key = _mix(np.array([c.seed], dtype=np.uint64) ^ np.uint64(0x5DEECE66D))[0]

    # -- chunks and windows -----------------------------------------------------------------

    def _drift_us(self, drift_at: datetime | None) -> int | None:
        return None if drift_at is None else _to_us(drift_at, "drift_at")

    def _window(self, a: int, b: int, drift: int | None) -> pa.RecordBatch:
        if a < self._start_us:
            raise InvalidArgument(
                f"Payments start at config.start ({self.config.start.isoformat()}); "
                "ask for a range from then on."
            )
        k0 = max(0, (a - _SPILL - self._start_us) // _CHUNK)
        k1 = (b - 1 - self._start_us) // _CHUNK
        parts = []
        for k in range(k0, k1 + 1):
            cols = self._chunk(k, drift)
            lo, hi = np.searchsorted(cols["ts"], [a, b])  # chunks are sorted by ts
            if hi > lo:
                parts.append({name: col[lo:hi] for name, col in cols.items()})
        if not parts:
            merged = {name: col[:0] for name, col in self._chunk(k0, drift).items()}
        elif len(parts) == 1:
            merged = parts[0]
        else:
            merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            order = np.lexsort((merged["seq"], merged["ts"]))
            merged = {name: col[order] for name, col in merged.items()}
        return self._to_batch(merged)

    def _chunk(self, k: int, drift: int | None) -> dict[str, np.ndarray]:
        key = (k, drift)
        cols = self._cache.get(key)
        if cols is None:
            cols = self._generate_chunk(k, drift)
            self._cache[key] = cols
            while len(self._cache) > 4:  # a stream walks forward; older chunks are done with
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return cols

    def _generate_chunk(self, k: int, drift: int | None) -> dict[str, np.ndarray]:
        """One day of payments, sorted by (ts, seq).

        Every draw happens whatever ``drift`` is, so the random streams stay aligned and
        drift only decides (by time) which candidate rows are kept.
        """
        c, d = self.config, self.config.drift
        rng = _rng(c.seed, 1, k)
        t0 = self._start_us + k * _CHUNK
        hour_of_day = (t0 // _HOUR + np.arange(24)) % 24
        per_day = c.payments_per_hour * 24
        legit_p, fraud_p = _norm(_LEGIT_HOURS[hour_of_day]), _norm(_FRAUD_HOURS[hour_of_day])
        n_old, n_new_users = c.n_users, d.new_users
        n_countries_old, n_countries_new = self._n_old_countries, len(d.new_countries)

        # 1. Legitimate payments by pre-drift users, in sessions of one or a few payments
        # minutes apart, so a short burst alone does not mean fraud.
        m = rng.poisson(per_day * (1 - c.fraud_rate) / _SESSION_MEAN)
        size = 1 + np.minimum(rng.poisson(_SESSION_MEAN - 1, m), _SESSION_MAX - 1)
        ts1, first = _bursts(rng, t0 + _times(rng, m, legit_p), size, 6 * _MINUTE)
        n = len(ts1)
        user1 = np.repeat(np.searchsorted(self._user_cdf_old, rng.random(m), side="right"), size)
        merchant1 = np.searchsorted(self._merchant_cdf_old, rng.random(n), side="right")
        country1 = np.where(rng.random(n) < 0.92, self._home[user1], rng.integers(0, n_countries_old, n))
        device1 = np.repeat(
            np.where(rng.random(m) < 0.85, self._device[user1[first]], rng.integers(0, 3, m)), size
        )
        amount1 = self._scale[user1] * np.exp(rng.normal(0.0, 0.7, n))
        # After drift the new market takes over this share of the legitimate traffic.
        # (Drawn with or without drift, so that the random stream stays aligned.)
        keep1 = np.repeat(rng.random(m) >= d.traffic_share, size)
        keep1 = keep1 | (ts1 < drift) if drift is not None else np.ones(n, bool)

        # 2. Legitimate payments in the new market (only kept after drift).
        n = rng.poisson(per_day * (1 - c.fraud_rate) * d.traffic_share)
        ts2 = t0 + _times(rng, n, legit_p)
        user2 = n_old + np.searchsorted(self._user_cdf_new, rng.random(n), side="right")
        merchant2 = np.where(
            rng.random(n) < 0.7,
            c.n_merchants + np.searchsorted(self._merchant_cdf_new, rng.random(n), side="right"),
            np.searchsorted(self._merchant_cdf_old, rng.random(n), side="right"),
        )
        country2 = np.where(
            rng.random(n) < 0.92, self._home[user2], n_countries_old + rng.integers(0, n_countries_new, n)
        )
        device2 = np.where(rng.random(n) < 0.85, self._device[user2], rng.integers(0, 3, n))
        amount2 = self._scale[user2] * np.exp(rng.normal(0.0, 0.9, n))
        keep2 = ts2 >= drift if drift is not None else np.zeros(n, bool)

        # 3. Old fraud: account takeovers, each a burst of payments minutes apart, at night.
        m = rng.poisson(per_day * c.fraud_rate / _BURST_MEAN)
        start3 = t0 + _times(rng, m, fraud_p)
        size = 1 + rng.binomial(_BURST_N, _BURST_P, m)
        ts3, _ = _bursts(rng, start3, size, 5 * _MINUTE)
        n = len(ts3)
        victim = rng.integers(0, n_old, m)
        user3 = np.repeat(victim, size)
        merchant3 = np.where(
            rng.random(n) < 0.5,
            self._risky[rng.integers(0, len(self._risky), n)],
            np.searchsorted(self._merchant_cdf_old, rng.random(n), side="right"),
        )
        abroad = np.repeat(rng.random(m) < 0.5, size)
        country3 = np.where(abroad, rng.integers(0, n_countries_old, n), self._home[user3])
        device3 = np.repeat(rng.choice(3, m, p=[0.2, 0.3, 0.5]), size)
        amount3 = np.exp(rng.normal(np.log(160.0), 0.7, n))
        # After drift only (1 - fraud_share) of fraud is of the old kind; whole bursts go.
        keep3 = np.repeat(rng.random(m) >= d.fraud_share, size)
        keep3 = keep3 | np.repeat(start3 < drift, size) if drift is not None else np.ones(n, bool)

        # 4. New fraud: a ring at a few new merchants; single daytime payments, mid-range
        # amounts, app devices -- unlike old fraud (bursts, nights, high amounts, web).
        n = rng.poisson(per_day * c.fraud_rate * d.fraud_share)
        ts4 = t0 + _times(rng, n, legit_p)
        user4 = rng.integers(0, n_old + n_new_users, n)
        merchant4 = c.n_merchants + rng.integers(0, d.fraud_merchants, n)
        country4 = n_countries_old + rng.integers(0, n_countries_new, n)
        device4 = rng.choice(3, n, p=self._fraud_device_p)
        amount4 = rng.uniform(d.fraud_amount[0], d.fraud_amount[1], n)
        keep4 = ts4 >= drift if drift is not None else np.zeros(n, bool)

        ts = np.concatenate([ts1, ts2, ts3, ts4])
        total = len(ts)
        # Ids from a seeded shuffle of candidate positions: stable under drift, and their
        # order says nothing about the label.
        seq = k * _SEQ_PER_CHUNK + rng.permutation(total)
        keep = np.concatenate([keep1, keep2, keep3, keep4])
        is_fraud = np.zeros(total, bool)
        is_fraud[len(ts1) + len(ts2) :] = True
        cols = {
            "ts": ts,
            "seq": seq,
            "user": np.concatenate([user1, user2, user3, user4]),
            "merchant": np.concatenate([merchant1, merchant2, merchant3, merchant4]),
            "country": np.concatenate([country1, country2, country3, country4]),
            "device": np.concatenate([device1, device2, device3, device4]),
            "amount": np.round(np.concatenate([amount1, amount2, amount3, amount4]), 2),
            "is_fraud": is_fraud,
        }
        idx = np.flatnonzero(keep)
        idx = idx[np.lexsort((seq[idx], ts[idx]))]
        return {name: col[idx] for name, col in cols.items()}

    def _to_batch(self, cols: dict[str, np.ndarray]) -> pa.RecordBatch:
        seq = pa.array(cols["seq"], pa.int64())
        payment_id = pc.binary_join_element_wise(
            "p-", pc.utf8_lpad(pc.cast(seq, pa.string()), width=14, padding="0"), ""
        )
        country = pa.array(cols["country"], pa.int64())
        return pa.RecordBatch.from_arrays(
            [
                payment_id,
                pa.array(cols["user"] + 1, pa.int64()),  # user ids start at 1
                self._merchant_names.take(pa.array(cols["merchant"], pa.int64())),
                pa.array(cols["amount"], pa.float64()),
                self._currency_names.take(pa.array(self._currency_of[cols["country"]], pa.int64())),
                self._country_names.take(country),
                pa.array(DEVICES, pa.string()).take(pa.array(cols["device"], pa.int64())),
                pa.array(cols["ts"], pa.int64()).cast(PAYMENTS_SCHEMA.field("ts").type),
                pa.array(cols["is_fraud"], pa.bool_()),
            ],
            schema=PAYMENTS_SCHEMA,
        )

    def _label_delays(self, seq: np.ndarray) -> np.ndarray:
        """A log-normal delay in microseconds per payment, a pure function of (seed, seq)."""
        ld = self.config.label_delay
        h1 = _mix(seq.astype(np.uint64) ^ self._delay_key)
        h2 = _mix(h1)
        u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53  # (0, 1]
        u2 = (h2 >> np.uint64(11)).astype(np.float64) * 2.0**-53
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller: standard normal
        median = ld.median / timedelta(microseconds=1)
        delay = median * np.exp(ld.sigma * z)
        return np.minimum(delay, ld.max / timedelta(microseconds=1)).astype(np.int64)


# -- helpers --------------------------------------------------------------------------------


def _aware(dt: datetime) -> bool:
    return isinstance(dt, datetime) and dt.tzinfo is not None and dt.utcoffset() is not None


def _to_us(dt: datetime, name: str) -> int:
    if not _aware(dt):
        raise InvalidArgument(f"{name} must be a timezone-aware datetime, e.g. datetime(..., tzinfo=UTC).")
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _ts_to_us(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    arr = _as_array(column)
    if not pa.types.is_timestamp(arr.type):
        raise InvalidArgument(f"labels: ts must be a timestamp column, got {arr.type}.")
    return arr.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _as_array(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(key))))


def _norm(weights: object) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def _cdf(weights: np.ndarray) -> np.ndarray:
    """Cumulative weights for sampling by ``searchsorted(cdf, uniform, side='right')``."""
    cdf = np.cumsum(weights) / weights.sum()
    cdf[-1] = 1.0 + 1e-12  # a uniform draw can never fall past the last item
    return cdf


def _bursts(
    rng: np.random.Generator, starts: np.ndarray, size: np.ndarray, mean_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps of bursts: ``size[i]`` payments from ``starts[i]``, exponential gaps apart.

    Returns the timestamps (bursts one after another) and the index of each burst's first row.
    """
    first = np.cumsum(size) - size
    gaps = np.minimum(rng.exponential(mean_gap, int(size.sum())), _MAX_GAP).astype(np.int64)
    gaps[first] = 0
    walked = np.cumsum(gaps)
    return np.repeat(starts, size) + walked - np.repeat(walked[first], size), first


def _times(rng: np.random.Generator, n: int, hour_p: np.ndarray) -> np.ndarray:
    """``n`` offsets (microseconds) into a day, with the given probability per hour."""
    return rng.choice(24, n, p=hour_p) * _HOUR + rng.integers(0, _HOUR, n)


_M1, _M2, _M3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over a uint64 array (wrapping arithmetic is intended)."""
    z = x + _M1
    z = (z ^ (z >> np.uint64(30))) * _M2
    z = (z ^ (z >> np.uint64(27))) * _M3
    return z ^ (z >> np.uint64(31))

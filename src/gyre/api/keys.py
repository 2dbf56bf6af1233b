"""API keys: created with a role, shown once, stored hashed, revocable.

A key reads ``gyre_<id>_<secret>``. The id finds the row; the secret is compared with the
stored SHA-256 of it in constant time. SHA-256 rather than a slow password hash (bcrypt,
argon2) on purpose: the secret is 256 random bits, not a password a person chose, so there
is nothing to brute-force, and every request is checked — a slow hash would cost
milliseconds per prediction.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gyre.errors import InvalidArgument, NotFound, Unauthorized, did_you_mean
from gyre.ids import new_id, utcnow
from gyre.meta import MetaStore
from gyre.meta.schema import ApiKey

# Each role and what it may do; see PERMISSIONS in gyre.api.auth for which routes need what.
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "predictor": frozenset({"predict"}),
    "data-scientist": frozenset({"read", "predict", "write", "ingest"}),
    "deployer": frozenset({"read", "predict", "deploy"}),
    "admin": frozenset({"read", "predict", "write", "ingest", "deploy", "admin"}),
}
_KEY = re.compile(r"^gyre_([0-9A-Z]{26})_([A-Za-z0-9_\-]{20,})$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")
_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
KEY_CACHE_TTL_S = 5.0  # how long a server may keep honouring a revoked key


@dataclass(frozen=True)
class KeyInfo:
    """A key as listed: never its secret."""

    id: str
    name: str
    role: str
    rate_per_s: float | None
    burst: int | None
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def parse_rate(rate: str | None) -> float | None:
    """``"100/s"``, ``"600/m"``, ``"10000/h"`` → requests per second; ``None`` for no limit."""
    if rate is None or rate == "":
        return None
    m = _RATE.match(rate)
    if not m or float(m.group(1)) <= 0:
        raise InvalidArgument(f"Rate {rate!r} is not valid: write it like '100/s', '600/m' or '10000/h'.")
    return float(m.group(1)) / _PER[m.group(2)]


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidArgument(
            f"Unknown role {role!r}: use one of {', '.join(ROLES)}." + did_you_mean(role, ROLES)
        )
    return role


def create_key(
    meta: MetaStore, name: str, role: str, *, rate: str | None = None, burst: int | None = None
) -> tuple[KeyInfo, str]:
    """Create a key; returns it and the full key string, which is shown this once only."""
    check_role(role)
    if not name or len(name) > 128:
        raise InvalidArgument("A key needs a name of 1-128 characters, e.g. 'fraud-service'.")
    rate_per_s = parse_rate(rate)
    if burst is not None and burst < 1:
        raise InvalidArgument(f"burst must be at least 1, got {burst}.")
    key_id, secret = new_id(), secrets.token_urlsafe(32)
    with meta.write() as uow:
        rec = ApiKey(
            id=key_id,
            name=name,
            role=role,
            secret_hash=_hash(secret),
            rate_per_s=rate_per_s,
            burst=burst if burst is not None else (max(1, int(rate_per_s)) if rate_per_s else None),
            created_at=utcnow(),
            created_by=uow.actor,
            revoked_at=None,
        )
        uow.session.add(rec)
        uow.record("api_key.created", f"api_key:{key_id}", {"name": name, "role": role})
        uow.session.flush()
        return _info(rec), f"gyre_{key_id}_{secret}"


def list_keys(meta: MetaStore, *, include_revoked: bool = False) -> list[KeyInfo]:
    with meta.read() as s:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        return [_info(r) for r in s.scalars(query)]


def revoke_key(meta: MetaStore, key_id: str) -> KeyInfo:
    with meta.write() as uow:
        rec = uow.session.get(ApiKey, key_id)
        if rec is None:
            raise NotFound(f"No API key with id {key_id!r}; 'gyre keys list' shows them.")
        if rec.revoked_at is None:
            rec.revoked_at = utcnow()
            uow.record("api_key.revoked", f"api_key:{key_id}", {"name": rec.name, "role": rec.role})
        return _info(rec)


def has_keys(meta: MetaStore) -> bool:
    """Whether any key is active (a server bound beyond loopback then needs no shared token)."""
    with meta.read() as s:
        return s.scalars(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)).first() is not None


_MAX_VERIFIED = 4096


class KeyCache:
    """Authenticates presented keys, remembering rows for ``ttl_s`` seconds.

    A revocation takes effect within ``ttl_s`` on every server (default 5 s); the request path
    costs a dict lookup, not a database query: a key presented again before its row is due to be
    reloaded is taken as verified (its SHA-256, its parse and the comparison were ~7 µs of a
    ~110 µs prediction).
    """

    def __init__(self, meta: MetaStore, ttl_s: float | None = None) -> None:
        self.meta, self.ttl_s = meta, KEY_CACHE_TTL_S if ttl_s is None else ttl_s
        self._rows: dict[str, tuple[float, KeyInfo | None, str]] = {}
        # Presented keys that matched an unrevoked row, with the time that row was loaded.
        self._verified: dict[str, tuple[float, KeyInfo]] = {}
        self._lock = threading.Lock()

    def authenticate(self, presented: str) -> KeyInfo:
        now = time.monotonic()
        verified = self._verified.get(presented)
        if verified is not None and now - verified[0] <= self.ttl_s:
            return verified[1]
        m = _KEY.match(presented)
        if m is None:
            raise Unauthorized("That is not a Gyre API key (they read gyre_<id>_<secret>); check the header.")
        key_id, secret = m.groups()
        cached = self._rows.get(key_id)
        if cached is None or now - cached[0] > self.ttl_s:
            cached = (now, *self._load(key_id))
            with self._lock:
                self._rows[key_id] = cached
        _, info, digest = cached
        if info is None or not hmac.compare_digest(digest, _hash(secret)):
            raise Unauthorized("Unknown API key; create one with 'gyre keys create'.")
        if info.revoked_at is not None:
            raise Unauthorized(f"API key {info.id} ({info.name}) was revoked; ask an admin for a new one.")
        with self._lock:
            if len(self._verified) >= _MAX_VERIFIED:  # only valid keys get here, but bound it
                self._verified.clear()
            self._verified[presented] = (cached[0], info)
        return info

    def _load(self, key_id: str) -> tuple[KeyInfo | None, str]:
        with self.meta.read() as s:
            rec = s.get(ApiKey, key_id)
            return (None, "") if rec is None else (_info(rec), rec.secret_hash)


class TokenBuckets:
    """Per-key token buckets: ``rate_per_s`` tokens a second up to ``burst``."""

    def __init__(self) -> None:
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: KeyInfo) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        if not key.rate_per_s:
            return 0.0
        burst = float(key.burst or 1)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(key.id, (burst, now))
            tokens = min(burst, tokens + (now - last) * key.rate_per_s)
            if tokens >= 1.0:
                self._state[key.id] = (tokens - 1.0, now)
                return 0.0
            self._state[key.id] = (tokens, now)
            return (1.0 - tokens) / key.rate_per_s


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(r: ApiKey) -> KeyInfo:
    return KeyInfo(r.id, r.name, r.role, r.rate_per_s, r.burst, r.created_at, r.created_by, r.revoked_at)

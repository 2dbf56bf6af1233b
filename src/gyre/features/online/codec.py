"""How entity keys and feature values are written into an online store, shared by
materialization (which writes them) and lookup (which reads them).

An entity key is its join-key values as compact JSON, e.g. ``[42]`` or ``["u-1","FR"]``:
readable in ``redis-cli``, and the same string whether the values came from the lake (Arrow)
or from a request (Python). Datetime keys are written as naive UTC ISO 8601.

Values are JSON; the types JSON lacks (datetimes, dates, times, durations, decimals, bytes)
travel as ``{"__gyre__": type, "v": ...}`` and come back as the same Python type, and so do
integers outside 64 bits (which a JSON parser may read as floats). Reads parse with orjson
(5x faster than the json module) and fall back to the json module for what orjson refuses
(``NaN``/``Infinity``, lone surrogates), so both give the same values.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

import orjson

from gyre.errors import InvalidArgument

TAG = "__gyre__"

_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = _EPOCH.replace(tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """Microseconds since the Unix epoch, exactly; a naive datetime is taken as UTC."""
    # Aware minus aware is the difference of the two instants, whatever their zones.
    return (when - (_EPOCH if when.tzinfo is None else _EPOCH_UTC)) // _ONE_US


def _key_default(o: Any) -> Any:
    if isinstance(o, datetime):
        if o.tzinfo is not None:
            o = o.astimezone(UTC).replace(tzinfo=None)
        return o.isoformat()
    if isinstance(o, date | time):
        return o.isoformat()
    if isinstance(o, Decimal):
        return str(o)
    if isinstance(o, bytes):
        return o.hex()
    if hasattr(o, "item"):  # numpy scalars, from a pandas row
        return o.item()
    raise TypeError(f"a join key value of type {type(o).__name__} is not supported")


_KEY_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_key_default)


def entity_key(values: Sequence[Any]) -> str:
    """The store key of one entity: its join-key values (in the view's join-key order) as compact JSON."""
    try:
        return _KEY_ENCODER.encode(list(values))
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Cannot use {list(values)!r} as an entity key: {exc}.") from None


def single_key(value: Any) -> str:
    """``entity_key([value])``, with the common types (int, str) encoded without the JSON encoder."""
    kind = type(value)
    if kind is int:
        return f"[{value}]"
    if kind is str:
        return f"[{encode_basestring(value)}]"
    return entity_key([value])


def _value_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return {TAG: "datetime", "v": o.isoformat()}
    if isinstance(o, date):
        return {TAG: "date", "v": o.isoformat()}
    if isinstance(o, time):
        return {TAG: "time", "v": o.isoformat()}
    if isinstance(o, timedelta):
        return {TAG: "timedelta", "v": o // timedelta(microseconds=1)}
    if isinstance(o, Decimal):
        return {TAG: "decimal", "v": str(o)}
    if isinstance(o, bytes):
        return {TAG: "bytes", "v": base64.b64encode(o).decode()}
    if hasattr(o, "tolist"):  # numpy scalars and arrays
        return o.tolist()
    raise TypeError(f"a feature value of type {type(o).__name__} cannot be stored online")


_DECODERS: dict[str, Any] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(microseconds=v),
    "decimal": Decimal,
    "bytes": base64.b64decode,
    "int": int,
}


def _untag(obj: dict[str, Any]) -> Any:
    kind = obj.get(TAG)
    if kind is None or len(obj) != 2:
        return obj
    return _DECODERS[kind](obj["v"])


_VALUE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_value_default)
_decode_plain = json.JSONDecoder().decode
_decode_tagged = json.JSONDecoder(object_hook=_untag).decode
# 19 digits in a row may be an integer outside 64 bits (2**63 has 19), which orjson reads as a float.
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _tag_big_ints(value: Any) -> Any:
    """``value`` with every integer outside 64 bits tagged (copies only what holds one)."""
    if type(value) is int:
        return {TAG: "int", "v": str(value)} if not _INT_MIN <= value <= _INT_MAX else value
    if isinstance(value, dict):
        return {k: _tag_big_ints(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tag_big_ints(v) for v in value]
    return value


def _encode(value: Any) -> str:
    text: str = _VALUE_ENCODER.encode(value)
    # Rare: most texts have no long run of digits, and those that do rarely hold a big integer.
    if _LONG_DIGITS.search(text):
        text = _VALUE_ENCODER.encode(_tag_big_ints(value))
    return text


def encode_values(values: dict[str, Any] | str) -> str:
    """``values`` as JSON (non-finite floats as ``NaN``/``Infinity``, which :func:`decode_values`
    reads); a string is taken to be such JSON already and returned as is."""
    if isinstance(values, str):
        return values
    try:
        return _encode(values)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Cannot store feature values {values!r} online: {exc}.") from None


def encode_value(value: Any) -> str:
    """One value's JSON text, as it appears inside :func:`encode_values`' output."""
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"Cannot store feature value {value!r} online: {exc}.") from None


def decode_values(text: str) -> dict[str, Any]:
    """The inverse of :func:`encode_values`."""
    # The object hook costs a call per JSON object; most rows have no tagged value.
    if TAG in text:
        tagged: dict[str, Any] = _decode_tagged(text)
        return tagged
    try:
        result: dict[str, Any] = orjson.loads(text)
    except orjson.JSONDecodeError:
        result = _decode_plain(text)
    return result


def decode_many(texts: list[str]) -> list[dict[str, Any]]:
    """:func:`decode_values` of each text, parsed as one JSON array when it can be (a parser
    call per value costs more than the parsing)."""
    if not texts:
        return []
    joined = "[" + ",".join(texts) + "]"
    if TAG not in joined:
        try:
            result: list[dict[str, Any]] = orjson.loads(joined)
            return result
        except orjson.JSONDecodeError:
            pass  # a NaN somewhere: only the texts orjson refuses go to the json module
    return [decode_values(text) for text in texts]

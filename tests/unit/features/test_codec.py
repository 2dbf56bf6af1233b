"""Entity keys and feature values as the online stores hold them (no store needed)."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from gyre.errors import InvalidArgument
from gyre.features.online.codec import (
    decode_many,
    decode_values,
    encode_values,
    entity_key,
    single_key,
    to_us,
)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -5,
        2**70,
        True,
        False,
        1.5,
        "plain",
        'q"\\\n\x01\x7f',
        "é✓\u2028",
        "",
        np.int64(7),
        datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        date(2024, 5, 1),
        Decimal("1.50"),
        b"\x00\xff",
    ],
)
def test_single_key_is_the_entity_key(value: Any) -> None:
    assert single_key(value) == entity_key([value])


def test_a_key_of_an_unsupported_type_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="Cannot use"):
        single_key(object())


def test_to_us_is_exact_in_any_zone() -> None:
    naive = datetime(2024, 3, 10, 7, 30, 0, 123457)  # UTC
    for zone in (UTC, ZoneInfo("America/New_York"), timezone(timedelta(hours=5, minutes=45))):
        assert to_us(naive.replace(tzinfo=UTC).astimezone(zone)) == to_us(naive)
    assert to_us(naive) == 1_710_055_800_123_457
    assert to_us(datetime(1969, 12, 31, 23, 59, 59, 999999)) == -1


def test_values_orjson_cannot_read_come_back_the_same() -> None:
    # NaN and infinities, a lone surrogate, integers beyond 64 bits (which orjson would read as
    # floats) and tagged types, alone and next to plain rows.
    odd = {
        "nan": math.nan,
        "inf": -math.inf,
        "surrogate": "x\ud800y",
        "big": 2**70,
        "nested": [-(2**64) - 1, {"n": 2**64 - 1}, 2**63],
        "when": datetime(2024, 1, 1, 12),
    }
    plain = {"f": 0.1, "i": 2**62, "s": "é", "none": None, "list": [1, 2.5]}
    texts = [encode_values(plain), encode_values(odd), encode_values({"x": math.inf})]
    for got in (decode_many(texts), [decode_values(t) for t in texts]):
        assert got[0] == plain
        assert math.isnan(got[1].pop("nan")) and got[2] == {"x": math.inf}
        assert got[1] == {k: v for k, v in odd.items() if k != "nan"}
        assert type(got[1]["big"]) is int and type(got[1]["nested"][1]["n"]) is int
    assert decode_many([encode_values(plain)] * 3) == [plain] * 3
    assert decode_many([]) == []

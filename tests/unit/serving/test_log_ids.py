"""Prediction ids: ULIDs that python-ulid reads back, unique, sorted by time, at every batch size."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from ulid import ULID

from gyre.serving.log import new_ids

CROCKFORD_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


@pytest.mark.parametrize("n", [1, 2, 12, 13, 100, 10_000])
def test_ids_are_ulids_of_now_and_unique(n: int) -> None:
    before = datetime.now(UTC) - timedelta(milliseconds=1)  # a ULID keeps milliseconds
    ids = new_ids(n)
    after = datetime.now(UTC)
    assert len(ids) == n == len(set(ids))
    assert all(CROCKFORD_ULID.fullmatch(i) for i in ids)
    for i in ids[:3] + ids[-3:]:
        assert before <= ULID.from_str(i).datetime <= after
        assert str(ULID.from_str(i)) == i  # the random part round-trips


def test_random_parts_use_every_character() -> None:
    """Each of the 16 random characters takes all 32 values (a fixed bit would show here)."""
    ids = new_ids(2_000) + [i for _ in range(200) for i in new_ids(5)]
    for position in range(10, 26):
        assert len({i[position] for i in ids}) == 32, position


def test_later_batches_sort_after_earlier_ones() -> None:
    first = new_ids(3)
    time.sleep(0.002)
    assert max(first) < min(new_ids(1) + new_ids(50))

"""A prediction log written before failed and shadow predictions were logged gains their
columns when a newer server starts, and keeps every row it had."""

from __future__ import annotations

import pyarrow as pa

from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.records import arrow_type
from gyre.data.validation import ColumnType
from gyre.meta import MetaStore
from gyre.serving.log import DATASET, SCHEMA, declare_dataset

OLD = {c: t for c, t in SCHEMA.items() if c not in ("error", "shadow_of")}


def test_an_older_log_gains_the_new_columns(meta: MetaStore, store_url: str) -> None:
    lake = Lake(store_url)
    catalog.ensure_dataset(
        meta, DATASET, keys=["prediction_id"], event_time="time",
        expectations=[ColumnType(c, t).to_dict() for c, t in OLD.items()],
    )  # fmt: skip
    schema = pa.schema([(c, arrow_type(t)) for c, t in OLD.items()])
    old_row = {c: None for c in OLD} | {"prediction_id": "01OLD", "endpoint": "e", "model_version": 1}
    lake.append(DATASET, pa.Table.from_pylist([old_row], schema=schema))

    declare_dataset(meta, lake)
    assert set(lake.schema(DATASET).names) == set(SCHEMA)
    declared = {e["column"] for e in catalog.get_dataset(meta, DATASET).expectations or [] if "column" in e}
    assert set(SCHEMA) <= declared
    new_schema = pa.schema([(c, arrow_type(t)) for c, t in SCHEMA.items()])
    new_row = {c: None for c in SCHEMA} | {"prediction_id": "01NEW", "error": "boom", "model_version": 2}
    lake.append(DATASET, pa.Table.from_pylist([new_row], schema=new_schema))
    rows = {r["prediction_id"]: r for r in lake.read(DATASET).to_pylist()}
    assert rows["01OLD"]["error"] is None and rows["01NEW"]["error"] == "boom"

    declare_dataset(meta, lake)  # nothing left to add: a no-op
    assert set(lake.schema(DATASET).names) == set(SCHEMA)

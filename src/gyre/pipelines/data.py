"""Reading lake datasets inside a step, with lineage: ``gyre.pipelines.read_dataset``.

A step that reads its data here records the version it read on its run (tags
``gyre.dataset.NAME``), which the pipeline run and a model it registers inherit; a
reproduction reads the very version the original run read, whatever was ingested since.
Reading the lake some other way works, but leaves no lineage: such a step cannot be
reproduced exactly, and its cached output is reused even after new data arrived (declare it
``cache=False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gyre.pipelines.context import current_step

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc

    from gyre.data.lake import Lake

_LAKES: dict[str, Lake] = {}


def read_dataset(
    name: str, *, columns: list[str] | None = None, filter: pc.Expression | None = None
) -> pa.Table:
    """Read dataset ``name`` from the lake: the version a reproduction pins, else the latest.

    The version read is recorded on the step (and so on the pipeline run and its model).
    Outside a pipeline run it reads the project's lake (``gyre.toml`` of the working
    directory) at the latest version.

    Args:
        columns: the columns to read, in this order (default: all).
        filter: a row filter, e.g. ``pc.field("amount") > 100``.

    Raises:
        NotFound: no such dataset, or the pinned version is gone.
    """
    ctx = current_step()
    lake = _lake(ctx.store_url)
    version = ctx.pins.get(name)
    if version is None:
        version = lake.version(name)
    table = lake.read(name, version=version, columns=columns, filter=filter)
    ctx.log_dataset_versions({name: version})
    return table


def _lake(store_url: str | None) -> Any:
    from gyre.data.lake import Lake

    if store_url is None:
        from gyre.config import load_settings

        store_url = load_settings().store_url
    lake = _LAKES.get(store_url)
    if lake is None:
        lake = _LAKES[store_url] = Lake(store_url)
    return lake

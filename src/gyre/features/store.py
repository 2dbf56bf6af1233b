"""The feature store of a project: registered views over the lake, and the online store.

A facade: it resolves feature references against the registry (what ``gyre apply`` wrote)
and delegates to point-in-time retrieval (:mod:`gyre.features.offline`), materialization
(:mod:`gyre.features.materialize`) and online lookup (:mod:`gyre.features.lookup`). On-demand
features run the function from the project's definitions, checked against the registered
code hash, in training and in serving alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.definitions import Definitions
from gyre.errors import Conflict, InvalidArgument, NotFound, did_you_mean
from gyre.features import offline
from gyre.features.definitions import OnDemandFeature, parse_ref
from gyre.features.spec import ViewSpec
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered


class FeatureStore:
    """Feature retrieval for training and serving, from the registered definitions.

    Args:
        meta, lake: the project's metadata store and lake.
        online_url: the online store (``sqlite:///…`` or ``redis://…``).
        definitions: loads the project's definitions; needed only for on-demand features.
    """

    def __init__(
        self,
        meta: MetaStore,
        lake: Lake,
        online_url: str,
        definitions: Callable[[], Definitions] | None = None,
    ) -> None:
        self.meta, self.lake, self.online_url = meta, lake, online_url
        self._load_definitions = definitions
        self._online: Any = None

    # -- the registry --------------------------------------------------------------------------

    def views(self) -> dict[str, ViewSpec]:
        """Every registered feature view, resolved."""
        out = {}
        for r in list_registered(self.meta, "feature_view"):
            event_time = r.spec.get("event_time") or _dataset_event_time(self.meta, r.spec["source"])
            out[r.name] = ViewSpec.from_spec(r.name, r.spec, event_time)
        return out

    def _on_demand_specs(self) -> dict[str, dict[str, Any]]:
        return {r.name: r.spec for r in list_registered(self.meta, "on_demand_feature")}

    def _resolve(
        self, features: Sequence[str]
    ) -> tuple[dict[str, ViewSpec], list[OnDemandFeature], dict[str, ViewSpec]]:
        """Requested refs → (views with the features to fetch, on-demand features, all views)."""
        if isinstance(features, str) or not features:
            raise InvalidArgument("Pass features as a non-empty list of 'view:feature' references.")
        views = self.views()
        on_demand_specs = self._on_demand_specs()
        wanted: dict[str, list[str]] = {}
        on_demand: list[OnDemandFeature] = []

        def want(ref: str) -> None:
            view_name, name = parse_ref(ref)
            if ref in on_demand_specs:
                fn = self._on_demand_function(ref, on_demand_specs[ref])
                if fn not in on_demand:
                    for dep in fn.feature_inputs:
                        want(dep)
                    on_demand.append(fn)
                return
            view = views.get(view_name)
            if view is None:
                known = sorted(views) + sorted({k.split(":")[0] for k in on_demand_specs})
                raise NotFound(
                    f"No feature view named '{view_name}' is registered (in '{ref}'); run 'gyre apply' "
                    "or see 'gyre features list'." + did_you_mean(view_name, known)
                )
            if name not in view.feature_names:
                raise NotFound(
                    f"Feature view '{view_name}' has no feature '{name}'; it has: "
                    f"{', '.join(view.feature_names)}." + did_you_mean(name, view.feature_names)
                )
            if name not in wanted.setdefault(view_name, []):
                wanted[view_name].append(name)

        for ref in features:
            want(ref)
        return {v: views[v].select(names) for v, names in wanted.items()}, on_demand, views

    def _on_demand_function(self, ref: str, spec: dict[str, Any]) -> OnDemandFeature:
        if self._load_definitions is None:
            raise InvalidArgument(
                f"'{ref}' is an on-demand feature: its function comes from the project's definitions, "
                "which this feature store was opened without."
            )
        fn = self._load_definitions().find("on_demand_feature", ref)
        if not isinstance(fn, OnDemandFeature):
            raise NotFound(
                f"On-demand feature '{ref}' is registered but not in the project's definitions any more; "
                "restore it or run 'gyre apply' to unregister it."
            )
        if fn.code_hash() != spec.get("code_hash"):
            raise Conflict(
                f"The code of on-demand feature '{ref}' changed since it was applied; run 'gyre apply' "
                "so training and serving use the same version."
            )
        return fn

    # -- training ------------------------------------------------------------------------------

    def get_training_set(
        self,
        entity_df: Any,
        features: Sequence[str],
        *,
        timestamp_column: str = "event_timestamp",
        as_known_at: bool = False,
        versions: Mapping[str, int] | None = None,
        full_names: bool = False,
    ) -> offline.TrainingSet:
        """Each entity row with each feature's value as of the row's timestamp (point in time).

        Args:
            entity_df: a pyarrow Table or pandas DataFrame with the views' join keys and
                ``timestamp_column`` (and any request values on-demand features read).
            features: ``"view:feature"`` references.
            as_known_at: also hide values ingested after the row's timestamp (backfills).
            versions: pin dataset versions (default: each dataset's latest).
            full_names: name columns ``view__feature`` instead of ``feature``.
        """
        table = _as_arrow(entity_df)
        views, on_demand, _ = self._resolve(features)
        result = offline.get_training_set(
            self.lake,
            table,
            list(views.values()),
            timestamp_column=timestamp_column,
            as_known_at=as_known_at,
            versions=versions,
            full_names=full_names,
        )
        out = result.table
        if on_demand:
            out = _add_on_demand(out, on_demand, full_names)
        requested = _column_names(features, full_names)
        keep = [c for c in out.column_names if c in table.column_names or c in requested]
        return offline.TrainingSet(out.select(keep), dict(result.dataset_versions))

    # -- serving -------------------------------------------------------------------------------

    @property
    def online(self) -> Any:
        if self._online is None:
            from gyre.features.online import open_online_store

            self._online = open_online_store(self.online_url)
        return self._online

    def materialize(
        self, views: Sequence[str] | None = None, *, full: bool = False, now: datetime | None = None
    ) -> dict[str, Any]:
        """Copy the views' latest values (and recent events, for windows) into the online store.

        Incremental from each view's watermark unless ``full``; returns a result per view.
        ``now`` (default: the clock) is the time the online store answers for: window events
        older than the longest window before it are not kept.
        """
        from gyre.features.materialize import materialize

        registered = self.views()
        names = list(views) if views else [n for n, v in registered.items() if v.online]
        for n in names:
            if n not in registered:
                raise NotFound(
                    f"No feature view named '{n}' is registered." + did_you_mean(n, list(registered))
                )
        chosen = [registered[n] for n in names]
        self.online.apply(chosen)
        return dict(materialize(self.lake, self.online, chosen, full=full, now=now))

    def freshness(self, now: datetime | None = None) -> list[Freshness]:
        """How current each online view is: what was materialized, how far it trails the data
        and the clock, and whether it is past its ``max_lag``."""
        from datetime import UTC

        now = now or datetime.now(UTC)
        out = []
        for r in list_registered(self.meta, "feature_view"):
            if not r.spec.get("online", True):
                continue
            source = r.spec["source"]
            try:
                versions = catalog.list_versions(self.meta, source)
            except NotFound:
                versions = []
            watermark = self.online.get_watermark(r.name)
            done = [v.max_event_time for v in versions if watermark is not None and v.version <= watermark]
            last_event = max((t for t in done if t is not None), default=None)
            lag = (now - last_event).total_seconds() if last_event is not None else None
            max_lag = r.spec.get("max_lag_s")
            out.append(
                Freshness(
                    view=r.name,
                    dataset=source,
                    dataset_version=max((v.version for v in versions), default=None),
                    materialized_version=watermark,
                    last_event_time=last_event,
                    lag_s=lag,
                    max_lag_s=max_lag,
                    stale=max_lag is not None and (lag is None or lag > max_lag),
                )
            )
        return out

    def lookup(self, features: Sequence[str]) -> OnlineFeatures:
        """A lookup compiled once for ``features``, for a server's hot path."""
        from gyre.features.lookup import OnlineLookup

        views, on_demand, _ = self._resolve(features)
        return OnlineFeatures(
            OnlineLookup(self.online, list(views.values())), views, on_demand, list(features)
        )

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        at: datetime | None = None,
        full_names: bool = False,
    ) -> list[dict[str, Any]]:
        """The latest value of each feature for each entity row (window aggregates as of now)."""
        return self.lookup(features).get(entity_rows, at=at, full_names=full_names)

    def close(self) -> None:
        if self._online is not None:
            self._online.close()
            self._online = None


@dataclass(frozen=True)
class Freshness:
    """One online view's freshness (see :meth:`FeatureStore.freshness`)."""

    view: str
    dataset: str
    dataset_version: int | None
    materialized_version: int | None
    last_event_time: datetime | None
    lag_s: float | None
    max_lag_s: int | None
    stale: bool

    @property
    def versions_behind(self) -> int | None:
        if self.dataset_version is None:
            return None
        return self.dataset_version - (
            self.materialized_version if self.materialized_version is not None else -1
        )


class OnlineFeatures:
    """Online lookup of a fixed list of features, on-demand ones included."""

    def __init__(
        self, lookup: Any, views: dict[str, ViewSpec], on_demand: list[OnDemandFeature], refs: list[str]
    ):
        self._lookup, self._on_demand, self._refs = lookup, on_demand, refs
        self._fetch = [f"{v.name}:{n}" for v in views.values() for n in v.feature_names]
        self.in_process = "in_process" in lookup.store.capabilities and not on_demand
        """Whether a lookup is quick local work: an in-process store and no on-demand features
        (project code, whose cost is unknown)."""

    def get(
        self,
        entity_rows: Sequence[Mapping[str, Any]],
        *,
        at: datetime | None = None,
        full_names: bool = False,
    ) -> list[dict[str, Any]]:
        rows = (
            self._lookup.get(entity_rows, self._fetch, at=at, full_names=True)
            if self._fetch
            else [{} for _ in entity_rows]
        )
        for fn in self._on_demand:
            key = fn.name.replace(":", "__")
            for request, row in zip(entity_rows, rows, strict=True):
                args = [row[i.replace(":", "__")] if ":" in i else request.get(i) for i in fn.inputs]
                row[key] = fn(*args)
        wanted = [r.replace(":", "__") for r in self._refs]
        if full_names:
            return [{k: row[k] for k in wanted} for row in rows]
        return [{k.split("__", 1)[1]: row[k] for k in wanted} for row in rows]


def _add_on_demand(table: pa.Table, on_demand: list[OnDemandFeature], full_names: bool) -> pa.Table:
    columns = table.to_pydict()
    for fn in on_demand:
        inputs = []
        for i in fn.inputs:
            name = i.replace(":", "__") if full_names else (parse_ref(i)[1] if ":" in i else i)
            if name not in columns:
                raise InvalidArgument(
                    f"On-demand feature '{fn.name}' needs '{i}', which the entity rows do not have; add "
                    f"a column '{name}'."
                )
            inputs.append(columns[name])
        values = (
            [fn(*args) for args in zip(*inputs, strict=True)]
            if inputs
            else [fn() for _ in range(table.num_rows)]
        )
        out_name = fn.name.replace(":", "__") if full_names else parse_ref(fn.name)[1]
        table = table.append_column(out_name, pa.array(values, type=_arrow_type(fn.dtype)))
        columns[out_name] = values
    return table


def _arrow_type(dtype: str) -> pa.DataType | None:
    try:
        return pa.type_for_alias(dtype)
    except (ValueError, KeyError):
        return None


def _column_names(features: Sequence[str], full_names: bool) -> set[str]:
    return {f.replace(":", "__") if full_names else parse_ref(f)[1] for f in features}


def _as_arrow(entity_df: Any) -> pa.Table:
    if isinstance(entity_df, pa.Table):
        return entity_df
    if type(entity_df).__module__.startswith("pandas"):
        return pa.Table.from_pandas(entity_df, preserve_index=False)
    raise InvalidArgument(
        f"entity_df must be a pyarrow Table or a pandas DataFrame, not {type(entity_df).__name__}."
    )


def _dataset_event_time(meta: MetaStore, name: str) -> str | None:
    try:
        return catalog.get_dataset(meta, name).event_time
    except NotFound:
        return None

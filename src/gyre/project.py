"""``gyre apply``: check the project's definitions, diff them against the registry, register.

A plan is computed first (what would be created, updated or deleted, and which fields
change), so the CLI can show it before anything is written; applying it is one transaction
in the registry plus, for datasets, the catalog's declared fields. Applying twice changes
nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gyre.config import Settings
from gyre.data import catalog
from gyre.data.definition import Dataset
from gyre.definitions import Definitions, load_definitions, spec_hash
from gyre.errors import ConfigError, InvalidArgument, NotFound, did_you_mean
from gyre.features.definitions import FeatureView, OnDemandFeature, parse_ref
from gyre.meta import MetaStore
from gyre.meta.registry import Change, apply_changes, list_registered
from gyre.monitoring.alerts import AlertRule, rules_from_toml

# Apply in this order so references resolve; delete in the reverse order.
KINDS = (
    "dataset",
    "entity",
    "feature_view",
    "on_demand_feature",
    "endpoint",
    "monitor",
    "alert_rule",
    "pipeline",
)


@dataclass
class Plan:
    """What applying the definitions would change."""

    changes: list[Change] = field(default_factory=list)
    unchanged: list[tuple[str, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": [
                {"action": c.action, "kind": c.kind, "name": c.name, "fields": list(c.fields)}
                for c in self.changes
            ],
            "unchanged": [{"kind": k, "name": n} for k, n in self.unchanged],
        }


def project_definitions(settings: Settings) -> Definitions:
    """Load the modules listed under ``[project] definitions``, and the alert rules declared in
    ``gyre.toml`` (``[[alerts]]``), which are registered like those of the modules.

    Raises:
        ConfigError: an ``[[alerts]]`` rule is malformed, or is also declared in a module.
    """
    modules = settings.get("project", "definitions")
    if isinstance(modules, str):
        modules = [modules]
    found = Definitions()
    rule_module: dict[str, str] = {}
    for module in modules:  # one at a time, to say where a rule declared twice is
        for d in load_definitions(settings.root, [module]):
            found.add(d)
            if d.kind == AlertRule.kind:
                rule_module.setdefault(d.name, module)
    source = str(settings.config_file or "gyre.toml")
    for rule in rules_from_toml(settings.alerts, source):
        if rule.name in rule_module:
            raise ConfigError(
                f"Alert rule '{rule.name}' is declared twice: under [[alerts]] in {source} and in "
                f"definitions module {rule_module[rule.name]}; keep one of them."
            )
        found.add(rule)
    return found


def plan(meta: MetaStore, definitions: Definitions) -> Plan:
    """Check ``definitions`` and compare them with the registry.

    Raises:
        InvalidArgument: a definition refers to something that is neither declared nor
            registered, or names columns its dataset does not have; every problem is listed.
    """
    registered = {(r.kind, r.name): r for r in list_registered(meta)}
    specs = _resolved_specs(meta, definitions, registered)
    out = Plan()
    for kind in KINDS:
        for d in sorted(definitions.of_kind(kind), key=lambda d: d.name):
            spec = specs[(kind, d.name)]
            digest = spec_hash(spec)
            old = registered.get((kind, d.name))
            if old is None:
                out.changes.append(Change("create", kind, d.name, spec, digest, tuple(spec)))
            elif old.spec_hash != digest:
                changed = tuple(k for k in spec if spec.get(k) != old.spec.get(k))
                out.changes.append(Change("update", kind, d.name, spec, digest, changed))
            else:
                out.unchanged.append((kind, d.name))
    for kind in reversed(KINDS):
        for (k, name), _ in sorted(registered.items()):
            if k == kind and definitions.find(kind, name) is None:
                out.changes.append(Change("delete", kind, name))
    return out


def apply(meta: MetaStore, definitions: Definitions, the_plan: Plan | None = None) -> Plan:
    """Register ``definitions`` (computing the plan unless given); returns what changed.

    Declared datasets also update the catalog (keys, event time, expectations); deleting a
    dataset's definition unregisters it but keeps its data and catalog entry.
    """
    the_plan = the_plan if the_plan is not None else plan(meta, definitions)
    if not the_plan:
        return the_plan
    apply_changes(meta, the_plan.changes)
    for c in the_plan.changes:
        if c.kind == "dataset" and c.action != "delete":
            d = definitions.get("dataset", c.name)
            assert isinstance(d, Dataset)
            expectations = d.all_expectations()
            catalog.ensure_dataset(
                meta,
                d.name,
                keys=d.keys,
                event_time=d.event_time,
                description=d.description or None,
                expectations=expectations.to_list() if expectations else None,
            )
    return the_plan


# -- checking ---------------------------------------------------------------------------------


def _resolved_specs(
    meta: MetaStore, definitions: Definitions, registered: dict[tuple[str, str], Any]
) -> dict[tuple[str, str], dict[str, Any]]:
    problems: list[str] = []
    specs: dict[tuple[str, str], dict[str, Any]] = {}
    for d in definitions:
        spec = d.spec()
        for kind, name in d.references():
            if definitions.find(kind, name) is None and (kind, name) not in registered:
                if kind == "dataset" and _catalog_dataset(meta, name) is not None:
                    continue
                known = [n for (k, n) in registered if k == kind] + [
                    x.name for x in definitions.of_kind(kind)
                ]
                problems.append(
                    f"{d.kind} '{d.name}' refers to {kind.replace('_', ' ')} '{name}', which is neither "
                    "declared nor registered." + did_you_mean(name, known)
                )
        if isinstance(d, FeatureView):
            problems.extend(_check_view(meta, definitions, d, spec))
        elif isinstance(d, OnDemandFeature):
            problems.extend(_check_on_demand(definitions, registered, d))
        specs[(d.kind, d.name)] = spec
    if problems:
        raise InvalidArgument(
            "The definitions have problems; nothing was applied:\n  - " + "\n  - ".join(problems)
        )
    return specs


def _check_view(
    meta: MetaStore, definitions: Definitions, view: FeatureView, spec: dict[str, Any]
) -> list[str]:
    """Fill in the view's event-time column and dtypes from its dataset, and check its columns."""
    declared = definitions.find("dataset", view.source)
    info = _catalog_dataset(meta, view.source)
    columns: dict[str, str] = {}
    if info is not None and info.schema:
        columns = {c["name"]: c["type"] for c in info.schema}
    elif isinstance(declared, Dataset):
        columns = dict(declared.schema)
    event_time = spec["event_time"] or (declared.event_time if isinstance(declared, Dataset) else None)
    event_time = event_time or (info.event_time if info is not None else None)
    problems = []
    if not event_time:
        problems.append(
            f"feature view '{view.name}' reads dataset '{view.source}', which declares no event-time "
            "column; declare it: gyre.Dataset(..., event_time='ts')."
        )
    spec["event_time"] = event_time
    if columns:
        needed = [*view.entity.join_keys, *([event_time] if event_time else [])]
        needed += [f["column"] for f in spec["features"]]
        missing = sorted({c for c in needed if c not in columns})
        if missing:
            problems.append(
                f"feature view '{view.name}' uses column(s) {', '.join(missing)}, which dataset "
                f"'{view.source}' does not have; its columns: {', '.join(columns)}."
            )
        for f in spec["features"]:
            if f["dtype"] is None and f["kind"] == "column" and f["column"] in columns:
                f["dtype"] = columns[f["column"]]
    return problems


def _check_on_demand(
    definitions: Definitions, registered: dict[tuple[str, str], Any], feature: OnDemandFeature
) -> list[str]:
    problems = []
    for ref in feature.feature_inputs:
        view_name, name = parse_ref(ref)
        view = definitions.find("feature_view", view_name)
        names: list[str] | None = None
        if isinstance(view, FeatureView):
            names = [str(f.name) for f in view.features]
        elif ("feature_view", view_name) in registered:
            names = [f["name"] for f in registered[("feature_view", view_name)].spec["features"]]
        if names is not None and name not in names:
            problems.append(
                f"on-demand feature '{feature.name}' reads '{ref}', which view '{view_name}' does not "
                "define." + did_you_mean(name, names)
            )
    return problems


def _catalog_dataset(meta: MetaStore, name: str) -> catalog.DatasetInfo | None:
    try:
        return catalog.get_dataset(meta, name)
    except NotFound:
        return None

"""``gyre.Endpoint``: a prediction endpoint declared in the project's definitions.

An endpoint names a model (by alias or version), the online features looked up for each
request's entity keys, and how requests are batched and checked. ``gyre apply`` registers it;
``gyre serve`` loads every registered endpoint when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from gyre.definitions import Definition, check_name
from gyre.errors import InvalidArgument
from gyre.features.definitions import OnDemandFeature, parse_ref

EXTRA_FIELDS = ("reject", "ignore")
UNKNOWN_ENTITY = ("defaults", "error")
MAX_BATCH_SIZE = 10_000


class Endpoint(Definition):
    """An HTTP prediction endpoint: ``POST /v1/endpoints/{name}/predict`` and its protocol twins.

    Args:
        name: the endpoint's name, part of its URLs.
        model: ``"NAME@ALIAS"`` (follows the alias, e.g. ``"fraud@champion"``) or
            ``"NAME/VERSION"`` (pinned). Resolved to a version when the server loads it.
        features: online features added to each row, looked up with the row's entity keys:
            ``"view:feature"`` references or on-demand features. The model reads a feature
            under its short name (``feature``); every other column of the model's signature
            comes with the request, as do the views' join keys and the request values
            on-demand features read.
        max_batch_size: the most rows one model call takes when concurrent requests are
            batched together (a single larger request still runs alone).
        max_wait_ms: how long a batch may wait for requests whose bodies are still arriving.
            A batch never waits when no other request is on its way, so a lone request pays
            no delay; under load, requests that arrive while the model is busy form the next
            batch.
        extra_fields: ``"reject"`` (422 naming the field) or ``"ignore"`` request fields the
            endpoint does not read.
        unknown_entity: ``"defaults"`` (features the online store has nothing for are null, or
            the value given in ``defaults``) or ``"error"`` (404 naming the entity).
        defaults: feature short name -> the value the model gets when the feature is null.
        description: free text.

    Example::

        fraud = gyre.Endpoint(
            "fraud", model="fraud@champion",
            features=["user_activity:amount_sum_1h", "user_activity:payments_1d"],
        )
    """

    kind: ClassVar[str] = "endpoint"

    def __init__(
        self,
        name: str,
        *,
        model: str,
        features: Iterable[str | OnDemandFeature] = (),
        max_batch_size: int = 64,
        max_wait_ms: float = 2,
        extra_fields: str = "reject",
        unknown_entity: str = "defaults",
        defaults: Mapping[str, Any] | None = None,
        description: str = "",
    ) -> None:
        self.name = check_name("Endpoint", name)
        self.model = normalize_model(model, f"Endpoint '{name}'")
        if isinstance(features, str):
            raise InvalidArgument(f"Endpoint '{name}': features is a list of 'view:feature' references.")
        self._on_demand = [f for f in features if isinstance(f, OnDemandFeature)]
        self.features = [f.name if isinstance(f, OnDemandFeature) else f for f in features]
        for ref in self.features:
            parse_ref(ref)
        dupes = sorted({r for r in self.features if self.features.count(r) > 1})
        if dupes:
            raise InvalidArgument(f"Endpoint '{name}' lists {', '.join(dupes)} more than once.")
        short = [parse_ref(r)[1] for r in self.features]
        clash = sorted({s for s in short if short.count(s) > 1})
        if clash:
            clashing = ", ".join(r for r in self.features if parse_ref(r)[1] in clash)
            raise InvalidArgument(
                f"Endpoint '{name}': features {clashing} share a name, and the model reads features "
                "by name; keep one of them."
            )
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
            raise InvalidArgument(f"Endpoint '{name}': max_batch_size must be a whole number.")
        if not 1 <= max_batch_size <= MAX_BATCH_SIZE:
            raise InvalidArgument(
                f"Endpoint '{name}': max_batch_size must be between 1 and {MAX_BATCH_SIZE:,}, "
                f"got {max_batch_size}."
            )
        self.max_batch_size = max_batch_size
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, int | float):
            raise InvalidArgument(f"Endpoint '{name}': max_wait_ms must be a number of milliseconds.")
        if not 0 <= max_wait_ms <= 1000:
            raise InvalidArgument(
                f"Endpoint '{name}': max_wait_ms must be between 0 and 1000, got {max_wait_ms}."
            )
        self.max_wait_ms = float(max_wait_ms)
        self.extra_fields = _choice(name, "extra_fields", extra_fields, EXTRA_FIELDS)
        self.unknown_entity = _choice(name, "unknown_entity", unknown_entity, UNKNOWN_ENTITY)
        self.defaults = dict(defaults or {})
        unknown = sorted(set(self.defaults) - set(short))
        if unknown:
            raise InvalidArgument(
                f"Endpoint '{name}': defaults names {', '.join(unknown)}, which is not one of its "
                f"features ({', '.join(short) or 'none'})."
            )
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "features": list(self.features),
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self.max_wait_ms,
            "extra_fields": self.extra_fields,
            "unknown_entity": self.unknown_entity,
            "defaults": self.defaults,
            "description": self.description,
        }

    def references(self) -> list[tuple[str, str]]:
        # A plain "view:feature" string may name a view's feature or an on-demand feature, which
        # only the registry can tell apart; the server checks those when it loads the endpoint.
        return [("on_demand_feature", f.name) for f in self._on_demand]

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, model={self.model!r}, features={self.features})"


def normalize_model(model: Any, what: str) -> str:
    """``"NAME@ALIAS"`` or ``"NAME/VERSION"`` (a ``models:/`` prefix is accepted and dropped)."""
    from gyre.models.registry import parse_model_uri

    if not isinstance(model, str) or not model:
        raise InvalidArgument(f"{what}: model must be 'NAME@ALIAS' or 'NAME/VERSION', got {model!r}.")
    bare = model[len("models:/") :] if model.startswith("models:/") else model
    if "@" not in bare and "/" not in bare:
        raise InvalidArgument(
            f"{what}: model {model!r} names no alias or version; write '{bare}@champion' to follow "
            f"an alias or '{bare}/1' to pin a version."
        )
    ref = parse_model_uri(f"models:/{bare}")
    if ref.alias is not None:
        return f"{ref.name}@{ref.alias}"
    if ref.version is None:
        raise InvalidArgument(
            f"{what}: model {model!r} would follow whatever version is newest; pin a version "
            f"('{ref.name}/3') or follow an alias ('{ref.name}@champion')."
        )
    return f"{ref.name}/{ref.version}"


def _choice(name: str, option: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidArgument(
            f"Endpoint '{name}': {option} must be one of {', '.join(repr(a) for a in allowed)}, "
            f"got {value!r}."
        )
    return str(value)

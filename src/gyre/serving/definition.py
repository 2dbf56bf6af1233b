"""``gyre.Endpoint``: a prediction endpoint declared in the project's definitions.

An endpoint names a model (by alias or version), the online features looked up for each
request's entity keys, and how requests are batched and checked. ``gyre apply`` registers it;
``gyre serve`` loads every registered endpoint when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from gyre.definitions import Definition, check_name, parse_duration
from gyre.errors import InvalidArgument
from gyre.features.definitions import OnDemandFeature, parse_ref

STRATEGIES = ("canary", "blue_green", "shadow")
ON_CHALLENGER = ("manual", "auto")
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
        rollout: how a new version of the model reaches this endpoint (``gyre deploy`` and,
            with ``on_challenger="auto"``, a newly registered challenger); default: a manual
            canary, see :class:`Rollout`.
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
        rollout: Rollout | None = None,
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
        if rollout is not None and not isinstance(rollout, Rollout):
            raise InvalidArgument(
                f"Endpoint '{name}': rollout must be a gyre.Rollout, got {type(rollout).__name__}."
            )
        self.rollout = rollout or Rollout()
        self.description = description

    def spec(self) -> dict[str, Any]:
        return {
            "rollout": self.rollout.spec(),
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


class Rollout:
    """How a new model version reaches an endpoint, and what it must show on the way.

    Args:
        strategy: ``"canary"`` (the candidate answers a growing share of entities, one step per
            interval), ``"blue_green"`` (all traffic switches to the candidate at once, the
            baseline kept loaded for an instant rollback during the interval) or ``"shadow"``
            (the candidate predicts on a copy of the traffic for one interval; its answers are
            logged, never returned, and nothing is promoted).
        steps: the canary's shares in percent, increasing, ending at 100.
        interval: how long each step is held before its analysis, e.g. ``"5m"``.
        on_challenger: ``"auto"`` starts a rollout when a version of the endpoint's model gets
            the ``challenger`` alias (e.g. a retraining passed its gates); ``"manual"`` waits
            for ``gyre deploy``.
        min_requests: each side needs this many requests in a step before it is judged (the
            step is held longer until then).
        max_error_rate_increase: the candidate's error rate may exceed the baseline's by this
            much (0.01: one percentage point).
        max_latency_ratio: the candidate's p99 latency may be this many times the baseline's
            (plus 1 ms, so microsecond noise does not decide).
        max_prediction_psi: the population stability index between the two sides' predictions
            may not exceed this (None: reported, not judged).
        max_auc_drop: where labels have arrived (at least ``min_labels`` per side, both
            classes), the candidate's live AUC may be this much below the baseline's.
        min_labels: labelled predictions per side needed to judge live quality.

    Example::

        gyre.Endpoint("fraud", model="fraud@champion",
                      rollout=gyre.Rollout("canary", steps=[10, 50, 100], interval="2m",
                                           on_challenger="auto"))
    """

    def __init__(
        self,
        strategy: str = "canary",
        *,
        steps: Sequence[float] = (5, 25, 50, 100),
        interval: str | float = "5m",
        on_challenger: str = "manual",
        min_requests: int = 50,
        max_error_rate_increase: float = 0.01,
        max_latency_ratio: float = 1.5,
        max_prediction_psi: float | None = 0.5,
        max_auc_drop: float = 0.02,
        min_labels: int = 50,
    ) -> None:
        what = "Rollout"
        if strategy not in STRATEGIES:
            raise InvalidArgument(
                f"{what}: strategy must be one of {', '.join(repr(s) for s in STRATEGIES)}, got {strategy!r}."
            )
        self.strategy = strategy
        self.steps = (
            check_steps(steps) if strategy == "canary" else ([100.0] if strategy == "blue_green" else [0.0])
        )
        self.interval_s = parse_duration(interval, f"{what} interval").total_seconds()
        if on_challenger not in ON_CHALLENGER:
            raise InvalidArgument(f"{what}: on_challenger must be 'manual' or 'auto', got {on_challenger!r}.")
        self.on_challenger = on_challenger
        self.checks: dict[str, Any] = {
            "min_requests": _number(min_requests, "min_requests", 0, integer=True),
            "max_error_rate_increase": _number(max_error_rate_increase, "max_error_rate_increase", 0, 1),
            "max_latency_ratio": _number(max_latency_ratio, "max_latency_ratio", 1),
            "max_prediction_psi": None
            if max_prediction_psi is None
            else _number(max_prediction_psi, "max_prediction_psi", 0),
            "max_auc_drop": _number(max_auc_drop, "max_auc_drop", 0, 1),
            "min_labels": _number(min_labels, "min_labels", 1, integer=True),
        }

    def spec(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "steps": self.steps,
            "interval_s": self.interval_s,
            "on_challenger": self.on_challenger,
            "checks": dict(self.checks),
        }

    def __repr__(self) -> str:
        return f"Rollout({self.strategy!r}, steps={self.steps}, interval_s={self.interval_s})"


def check_steps(steps: Any) -> list[float]:
    """A canary's steps: increasing percentages in (0, 100], ending at 100."""
    if isinstance(steps, str) or not isinstance(steps, Sequence) or not steps:
        raise InvalidArgument(
            f"Rollout steps are a list of percentages ending at 100, e.g. [5, 25, 50, 100]; got {steps!r}."
        )
    out: list[float] = []
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 100:
            raise InvalidArgument(f"Rollout step {s!r} is not a percentage in (0, 100].")
        if out and s <= out[-1]:
            raise InvalidArgument(f"Rollout steps must increase; {s} follows {out[-1]}.")
        out.append(float(s))
    if out[-1] != 100:
        raise InvalidArgument(f"Rollout steps must end at 100 (the candidate takes all traffic); got {out}.")
    return out


def _number(value: Any, name: str, low: float, high: float | None = None, *, integer: bool = False) -> Any:
    kinds = int if integer else int | float
    if (
        isinstance(value, bool)
        or not isinstance(value, kinds)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"from {low}" + (f" to {high}" if high is not None else "")
        raise InvalidArgument(
            f"Rollout: {name} must be a {'whole ' if integer else ''}number {bound}, got {value!r}."
        )
    return value


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

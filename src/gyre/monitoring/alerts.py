"""``gyre.AlertRule``: a condition on monitoring figures and what to do when it holds.

Declared in the project's definitions and registered by ``gyre apply`` (kind ``alert_rule``)::

    from gyre.monitoring import DriftedFeatures, QualityBelow, Webhook, RunPipeline, Rollback

    drift_alert = gyre.AlertRule(
        "fraud_drift", endpoint="fraud",
        condition=DriftedFeatures(at_least=3, window="1h"),
        actions=["log", Webhook("https://hooks.example.com/gyre"), RunPipeline("train_fraud")],
        cooldown="6h",
    )
    auc_alert = gyre.AlertRule("fraud_auc", endpoint="fraud", condition=QualityBelow("auc", 0.85),
                               actions=[Rollback()])

Or in ``gyre.toml``, one ``[[alerts]]`` table per rule, its keys AlertRule's arguments
(:func:`rules_from_toml`); a condition or an action is a table whose one *kind* key holds
the first argument, the other keys the keyword arguments (``true`` for no first argument)::

    [[alerts]]
    name = "fraud_drift"
    endpoint = "fraud"
    condition = { drifted_features = 3, window = "1h" }   # DriftedFeatures(3, window="1h")
    actions = ["log", { webhook = "https://hooks.example.com/gyre", retries = 5 },
               { run_pipeline = "train_fraud" }]
    cooldown = "6h"

A condition looks at one subject at a time (an endpoint, a feature view) and answers
*holds*, *does not hold*, or *cannot tell* (too little data): the last never fires and never
resolves an alert. :mod:`gyre.monitoring.engine` evaluates the rules, keeps each alert's
state, and runs the actions.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from gyre.definitions import Definition, check_name, parse_duration
from gyre.errors import ConfigError, GyreError, InvalidArgument, did_you_mean

if TYPE_CHECKING:
    from gyre.monitoring import predictions
    from gyre.monitoring.engine import Context


@dataclass
class Outcome:
    """A condition's answer for one subject: ``triggered`` True, False, or None (cannot tell)."""

    subject: str
    triggered: bool | None
    message: str
    value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


# -- conditions ------------------------------------------------------------------------------


class Condition:
    """What an alert rule watches. Subclasses set ``kind`` and implement :meth:`evaluate`."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Condition]]] = {}
    scope: ClassVar[str] = "endpoint"  # what the subjects are: "endpoint" or "feature_view"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Condition.registry[cls.kind] = cls

    def evaluate(self, ctx: Context, subjects: Sequence[str]) -> list[Outcome]:
        """One :class:`Outcome` per subject (endpoint names, for endpoint conditions)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Condition:
        kind = data.get("kind")
        cls = Condition.registry.get(str(kind))
        if cls is None:
            raise InvalidArgument(
                f"Unknown alert condition {kind!r}; use one of {', '.join(sorted(Condition.registry))}."
                + did_you_mean(str(kind), Condition.registry)
            )
        args = {k: v for k, v in data.items() if k != "kind"}
        if "window_s" in args:
            args["window"] = args.pop("window_s")
        return cls(**args)


def _window(value: Any, what: str) -> timedelta | None:
    return None if value is None else parse_duration(value, what)


def _window_s(w: timedelta | None) -> int | None:
    return None if w is None else int(w.total_seconds())


class DriftedFeatures(Condition):
    """At least ``at_least`` features drifted in the endpoint's latest window (any model
    version behind it). ``window`` defaults to the endpoint's monitor (one hour)."""

    kind = "drifted_features"

    def __init__(self, at_least: int = 1, *, window: Any = None, include_prediction: bool = True) -> None:
        if isinstance(at_least, bool) or not isinstance(at_least, int) or at_least < 1:
            raise InvalidArgument(f"DriftedFeatures: at_least must be a whole number >= 1, got {at_least!r}.")
        self.at_least, self.include_prediction = at_least, bool(include_prediction)
        self.window = _window(window, "DriftedFeatures window")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "at_least": self.at_least,
            "window_s": _window_s(self.window),
            "include_prediction": self.include_prediction,
        }

    def evaluate(self, ctx: Context, subjects: Sequence[str]) -> list[Outcome]:
        out = []
        for endpoint in subjects:
            reports = [r for r in ctx.drift(endpoint, self.window) if "error" not in r.subject]
            tested = [r for r in reports if r.tested]
            if not tested:
                out.append(Outcome(endpoint, None, "no window with enough data to test"))
                continue
            worst = max(tested, key=lambda r: len(self._drifted(r)))
            drifted = self._drifted(worst)
            version = worst.subject.get("model_version")
            message = (
                f"{len(drifted)} feature(s) drifted for version {version}: {', '.join(drifted)}"
                if drifted
                else "no feature drifted"
            )
            out.append(
                Outcome(
                    endpoint,
                    len(drifted) >= self.at_least,
                    message,
                    float(len(drifted)),
                    {"model_version": version, "features": drifted, "report": worst.id},
                )
            )
        return out

    def _drifted(self, report: Any) -> list[str]:
        return [f.feature for f in report.drifted if self.include_prediction or f.feature != "prediction"]


class _QualityCondition(Condition):
    def __init__(self, metric: str, limit: float, *, window: Any = None, min_labels: int = 50) -> None:
        if not isinstance(metric, str) or not metric:
            raise InvalidArgument(
                f"{type(self).__name__}: metric must be a name such as 'auc', got {metric!r}."
            )
        self.metric, self.limit = metric, float(limit)
        self.window = _window(window, f"{type(self).__name__} window")
        self.min_labels = int(min_labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "limit": self.limit,
            "window_s": _window_s(self.window),
            "min_labels": self.min_labels,
        }

    def _breached(self, value: float) -> bool:
        raise NotImplementedError

    def evaluate(self, ctx: Context, subjects: Sequence[str]) -> list[Outcome]:
        out = []
        for endpoint in subjects:
            usable = [
                r for r in ctx.quality(endpoint, self.window)
                if r.labelled >= self.min_labels and r.metrics.get(self.metric) is not None
            ]  # fmt: skip
            if not usable:
                out.append(
                    Outcome(endpoint, None, f"fewer than {self.min_labels} labels to compute {self.metric}")
                )
                continue
            report = usable[0]  # the newest version with enough labels
            value = float(report.metrics[self.metric])  # type: ignore[arg-type]
            sign = "<" if isinstance(self, QualityBelow) else ">"
            out.append(
                Outcome(
                    endpoint,
                    self._breached(value),
                    f"{self.metric} {value:.4g} for version {report.model_version} "
                    f"({report.labelled} labels, coverage {report.coverage or 0:.0%}); "
                    f"alert when {sign} {self.limit:g}",
                    value,
                    {
                        "model_version": report.model_version,
                        "labelled": report.labelled,
                        "coverage": report.coverage,
                    },
                )
            )
        return out


class QualityBelow(_QualityCondition):
    """A live quality metric (``auc``, ``accuracy``, ``precision``, ``recall``) fell below
    ``limit``, over windows with at least ``min_labels`` labels."""

    kind = "quality_below"

    def _breached(self, value: float) -> bool:
        return value < self.limit


class QualityAbove(_QualityCondition):
    """A live error metric (``log_loss``, ``rmse``, ``mae``) rose above ``limit``."""

    kind = "quality_above"

    def _breached(self, value: float) -> bool:
        return value > self.limit


class _ServiceCondition(Condition):
    """A condition on an endpoint's request statistics over ``window``, judged only once the
    window holds ``min_requests`` requests (fewer: no verdict, never firing nor resolved)."""

    def __init__(self, window: Any, min_requests: int) -> None:
        self.min_requests = int(min_requests)
        self.window = parse_duration(window, f"{type(self).__name__} window")

    def evaluate(self, ctx: Context, subjects: Sequence[str]) -> list[Outcome]:
        out = []
        for endpoint in subjects:
            s = ctx.service(endpoint, self.window)
            value = self._value(s)
            if s.requests < self.min_requests or value is None:
                out.append(
                    Outcome(endpoint, None, f"{s.requests} requests; at least {self.min_requests} needed")
                )
                continue
            out.append(Outcome(endpoint, self._breached(value), self._message(s), value, self._details(s)))
        return out

    def _base_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "window_s": _window_s(self.window), "min_requests": self.min_requests}

    def _value(self, s: predictions.ServiceStats) -> float | None:
        raise NotImplementedError

    def _breached(self, value: float) -> bool:
        raise NotImplementedError

    def _message(self, s: predictions.ServiceStats) -> str:
        raise NotImplementedError

    def _details(self, s: predictions.ServiceStats) -> dict[str, Any]:
        raise NotImplementedError


class ErrorRateAbove(_ServiceCondition):
    """The share of failed prediction requests over ``window`` is above ``limit`` (0-1)."""

    kind = "error_rate_above"

    def __init__(self, limit: float, *, window: Any = "5m", min_requests: int = 20) -> None:
        if not 0 <= float(limit) < 1:
            raise InvalidArgument(f"ErrorRateAbove: limit is a share between 0 and 1, got {limit!r}.")
        self.limit = float(limit)
        super().__init__(window, min_requests)

    def to_dict(self) -> dict[str, Any]:
        return {**self._base_dict(), "limit": self.limit}

    def _value(self, s: predictions.ServiceStats) -> float | None:
        return s.error_rate

    def _breached(self, value: float) -> bool:
        return value > self.limit

    def _message(self, s: predictions.ServiceStats) -> str:
        return (
            f"{s.errors} of {s.requests} requests failed ({s.error_rate:.1%}); alert above {self.limit:.1%}"
        )

    def _details(self, s: predictions.ServiceStats) -> dict[str, Any]:
        return {"requests": s.requests, "errors": s.errors}


class LatencyAbove(_ServiceCondition):
    """The endpoint's p99 latency over ``window`` is above ``p99_ms`` milliseconds."""

    kind = "latency_above"

    def __init__(self, p99_ms: float, *, window: Any = "5m", min_requests: int = 20) -> None:
        if not float(p99_ms) > 0:
            raise InvalidArgument(f"LatencyAbove: p99_ms must be positive, got {p99_ms!r}.")
        self.p99_ms = float(p99_ms)
        super().__init__(window, min_requests)

    def to_dict(self) -> dict[str, Any]:
        return {**self._base_dict(), "p99_ms": self.p99_ms}

    def _value(self, s: predictions.ServiceStats) -> float | None:
        return s.p99_ms

    def _breached(self, value: float) -> bool:
        return value > self.p99_ms

    def _message(self, s: predictions.ServiceStats) -> str:
        return f"p99 latency {s.p99_ms:.1f} ms over {s.requests} requests; alert above {self.p99_ms:g} ms"

    def _details(self, s: predictions.ServiceStats) -> dict[str, Any]:
        return {"requests": s.requests, "p50_ms": s.p50_ms}


class FeatureViewStale(Condition):
    """An online feature view is past its ``max_lag`` (see ``gyre features show``). Subjects are
    the views (``views``, or every online view with a ``max_lag``)."""

    kind = "feature_view_stale"
    scope = "feature_view"

    def __init__(self, views: Iterable[str] | None = None) -> None:
        self.views = sorted(views) if views is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "views": self.views}

    def evaluate(self, ctx: Context, subjects: Sequence[str]) -> list[Outcome]:
        rows = ctx.freshness()
        if rows is None:
            return [Outcome(v, None, "the feature store is not available") for v in self.views or []]
        out = []
        for f in rows:
            if (self.views is not None and f.view not in self.views) or (
                self.views is None and not f.max_lag_s
            ):
                continue
            lag = "never materialized" if f.lag_s is None else f"{f.lag_s:.0f} s behind"
            out.append(
                Outcome(
                    f.view,
                    bool(f.stale),
                    f"feature view {f.view} is {lag} (max lag {f.max_lag_s or '-'} s)",
                    f.lag_s,
                    {"max_lag_s": f.max_lag_s, "versions_behind": f.versions_behind},
                )
            )
        return out


# -- actions ---------------------------------------------------------------------------------


class Action:
    """What happens when an alert fires. Subclasses set ``kind``."""

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Action]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Action.registry[cls.kind] = cls

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{k: v for k, v in vars(self).items()}}

    @staticmethod
    def parse(value: Action | str | Mapping[str, Any]) -> Action:
        if isinstance(value, Action):
            return value
        if isinstance(value, str):
            if value in Action.registry and value in ("log", "rollback"):
                return Action.registry[value]()
            raise InvalidArgument(
                f"Unknown alert action {value!r}: write 'log', 'rollback', or Webhook(url), "
                "RunPipeline(name), Rollback()."
            )
        kind = value.get("kind") if isinstance(value, Mapping) else None
        cls = Action.registry.get(str(kind))
        if cls is None:
            raise InvalidArgument(
                f"Unknown alert action {value!r}; kinds: {', '.join(sorted(Action.registry))}."
            )
        return cls(**{k: v for k, v in value.items() if k != "kind"})


class Log(Action):
    """Write the alert to Gyre's log (logger ``gyre.alerts``, level WARNING)."""

    kind = "log"


class Webhook(Action):
    """POST the alert as JSON to ``url``; retried with backoff when it times out or answers
    5xx (``retries`` times), every attempt recorded in the alert's history. Delivery runs in
    the background: a slow receiver never holds up monitoring.

    Args:
        url: ``http://`` or ``https://`` address of the receiver.
        timeout_s: seconds one attempt may take.
        retries: further attempts after a failed one.
        send_resolved: also POST when the alert resolves.
        headers: extra request headers (e.g. an authorization token).
    """

    kind = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        retries: int = 3,
        send_resolved: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"Webhook url must start with http:// or https://, got {url!r}.")
        if not float(timeout_s) > 0 or int(retries) < 0:
            raise InvalidArgument("Webhook: timeout_s must be positive and retries >= 0.")
        self.url, self.timeout_s, self.retries = url, float(timeout_s), int(retries)
        self.send_resolved, self.headers = bool(send_resolved), dict(headers or {})


class RunPipeline(Action):
    """Ask the controller to run a pipeline (a ``pipeline.run_requested`` event), e.g. to retrain."""

    kind = "run_pipeline"

    def __init__(self, pipeline: str, *, params: Mapping[str, Any] | None = None) -> None:
        self.pipeline = check_name("Pipeline", pipeline)
        self.params = dict(params or {})


class Rollback(Action):
    """Ask the controller to roll the endpoint back to its previous model version (a
    ``deployment.rollback_requested`` event). ``endpoint`` defaults to the alert's subject."""

    kind = "rollback"

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint


# -- the rule --------------------------------------------------------------------------------


class AlertRule(Definition):
    """A condition on monitoring figures, and the actions to take when it starts to hold.

    Args:
        name: the rule's name (unique among alert rules).
        condition: a :class:`Condition` (:class:`DriftedFeatures`, :class:`QualityBelow`,
            :class:`QualityAbove`, :class:`ErrorRateAbove`, :class:`LatencyAbove`,
            :class:`FeatureViewStale`).
        endpoint: the endpoint watched; ``None`` watches every endpoint with predictions.
        actions: ``"log"``, ``"rollback"``, :class:`Webhook`, :class:`RunPipeline`,
            :class:`Rollback` — run once when the alert fires.
        cooldown: after an alert fired, the same rule and subject do not fire again for this
            long, even if it resolves and breaks again meanwhile (one incident, one firing).
        description: free text shown with the alert.
    """

    kind: ClassVar[str] = "alert_rule"

    def __init__(
        self,
        name: str,
        *,
        condition: Condition,
        endpoint: str | None = None,
        actions: Iterable[Action | str] = ("log",),
        cooldown: Any = "1h",
        description: str = "",
    ) -> None:
        self.name = check_name("Alert rule", name)
        if not isinstance(condition, Condition):
            raise InvalidArgument(
                f"Alert rule '{name}': condition must be a condition such as DriftedFeatures(at_least=3), "
                f"got {condition!r}."
            )
        self.condition = condition
        self.endpoint = check_name("Endpoint", endpoint) if endpoint is not None else None
        if isinstance(actions, str):
            actions = [actions]
        self.actions = [Action.parse(a) for a in actions]
        self.cooldown = parse_duration(cooldown, f"Alert rule '{name}': cooldown")
        self.description = description

    def __repr__(self) -> str:
        return f"AlertRule({self.name!r}, condition={self.condition.kind})"

    def spec(self) -> dict[str, Any]:
        return {
            "condition": self.condition.to_dict(),
            "endpoint": self.endpoint,
            "actions": [a.to_dict() for a in self.actions],
            "cooldown_s": int(self.cooldown.total_seconds()),
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any]) -> AlertRule:
        return cls(
            name,
            condition=Condition.from_dict(spec["condition"]),
            endpoint=spec.get("endpoint"),
            actions=[Action.parse(a) for a in spec.get("actions") or []],
            cooldown=spec.get("cooldown_s", 3600),
            description=spec.get("description", ""),
        )


# -- gyre.toml -------------------------------------------------------------------------------

RULE_KEYS = ("name", "condition", "endpoint", "actions", "cooldown", "description")


def rules_from_toml(tables: Sequence[Mapping[str, Any]], source: str) -> list[AlertRule]:
    """The alert rules of ``gyre.toml``'s ``[[alerts]]`` tables (see the module docstring).

    Args:
        tables: the tables, as :attr:`gyre.config.Settings.alerts` holds them.
        source: the file they came from, named in every error.

    Raises:
        ConfigError: a rule is malformed; the message names the file, the rule and the key.
    """
    rules: list[AlertRule] = []
    for i, table in enumerate(tables, start=1):
        name = table.get("name")
        if name is None:
            raise ConfigError(
                f'{source}: [[alerts]] table {i} has no name; give it one: name = "fraud_drift".'
            )
        try:
            check_name("Alert rule", name)
        except InvalidArgument as exc:
            raise ConfigError(f"{source}: [[alerts]] table {i}: name: {exc.message}") from None
        rule = f"{source}: alert rule '{name}'"
        if any(r.name == name for r in rules):
            raise ConfigError(f"{rule} is declared twice under [[alerts]]; rename or remove one.")
        for key in table:
            if key not in RULE_KEYS:
                raise ConfigError(
                    f"{rule}: unknown key '{key}'; valid keys: {', '.join(RULE_KEYS)}."
                    + did_you_mean(key, RULE_KEYS)
                )
        if "condition" not in table:
            raise ConfigError(
                f'{rule}: no condition; write e.g. condition = {{ drifted_features = 3, window = "1h" }}.'
            )
        condition = _toml_call(Condition.registry, table["condition"], f"{rule}: condition")
        actions = table.get("actions", ["log"])
        if isinstance(actions, str):
            actions = [actions]
        if not isinstance(actions, list):
            raise ConfigError(f'{rule}: actions must be a list, e.g. ["log", {{ run_pipeline = "train" }}].')
        parsed = [_toml_action(a, f"{rule}: actions[{j}]") for j, a in enumerate(actions)]
        kwargs = {k: table[k] for k in ("endpoint", "cooldown", "description") if k in table}
        for key, value in kwargs.items():
            _toml_check(rule, key, value)
        rules.append(AlertRule(name, condition=condition, actions=parsed, **kwargs))
    return rules


def _toml_action(value: Any, where: str) -> Action:
    if isinstance(value, Mapping):
        action: Action = _toml_call(Action.registry, value, where)
        return action
    try:
        return Action.parse(value)
    except InvalidArgument as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _toml_check(rule: str, key: str, value: Any) -> None:
    """Check one plain key of a rule, so its error names the key."""
    try:
        if key == "endpoint":
            check_name("Endpoint", value)
        elif key == "cooldown":
            parse_duration(value, "cooldown")
        elif not isinstance(value, str):
            raise InvalidArgument(f"{key} must be a string, got {value!r}.")
    except InvalidArgument as exc:
        raise ConfigError(f"{rule}: {key}: {exc.message}") from None


def _toml_call(registry: Mapping[str, type], value: Any, where: str) -> Any:
    """Build a condition or an action from its table: the one kind key holds the first
    argument (``true`` for none), the other keys are keyword arguments."""
    kinds = sorted(registry)
    example = f"{{ {kinds[0]} = ... }}"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table naming its kind, e.g. {example}; got {value!r}.")
    named = [k for k in value if k in registry]
    if len(named) != 1:
        unknown = [k for k in value if k not in registry]
        hint = did_you_mean(unknown[0], kinds) if unknown and not named else ""
        raise ConfigError(
            f"{where} must name exactly one kind ({', '.join(kinds)}) as a key holding its first "
            f"argument; got {', '.join(value) or 'no key'}.{hint}"
        )
    kind = named[0]
    cls = registry[kind]
    params = list(inspect.signature(cls).parameters.values())
    first = params[0].name if params and params[0].kind is params[0].POSITIONAL_OR_KEYWORD else None
    args = [] if value[kind] is True else [value[kind]]
    if args and first is None:
        raise ConfigError(f"{where}: {kind} takes no argument; write {kind} = true.")
    allowed = [p.name for p in params if p.name != first or not args]
    kwargs = {k: v for k, v in value.items() if k != kind}
    for key in kwargs:
        if key not in allowed:
            valid = ", ".join(allowed) or "none"
            raise ConfigError(
                f"{where}: unknown key '{key}' for {kind}; valid keys: {valid}." + did_you_mean(key, allowed)
            )
    try:
        return cls(*args, **kwargs)
    except (GyreError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {kind}: {_text(exc)}") from None


def _text(exc: BaseException) -> str:
    return exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"

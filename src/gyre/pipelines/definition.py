"""``@gyre.pipeline``: a function wiring steps together, registered by ``gyre apply``.

The function is traced when it is decorated — with its parameters' defaults, or
placeholders for parameters without one — so a step called with inputs it cannot take, or
an output from elsewhere, is an error at definition time that names the steps. Each run
traces it again with the run's parameter values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from gyre.definitions import Definition, check_name
from gyre.errors import InvalidArgument
from gyre.pipelines.graph import Graph, ParamPlaceholder, Ref, iter_refs, trace
from gyre.pipelines.params import ParamSpec, bind_params, param_specs
from gyre.pipelines.triggers import Schedule, Trigger, check_concurrency

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.pipelines.executors import Executor
    from gyre.pipelines.gates import Gate
    from gyre.pipelines.runner import PipelineRun, StepEvent


class Pipeline(Definition):
    """A pipeline: its function, parameters, triggers, gates and concurrency policy.

    Attributes:
        graph: the graph traced at definition time (defaults or placeholders).
        params: the parameters, from the function's signature.
        register_as: the model name a ``"model"`` result is registered under.
    """

    kind: ClassVar[str] = "pipeline"

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        schedule: str | None = None,
        triggers: Iterable[Trigger] = (),
        gates: Iterable[Gate] = (),
        concurrency: str = "skip",
        register_as: str | None = None,
        review: bool = False,
        label: str | None = None,
        experiment: str | None = None,
        description: str | None = None,
    ) -> None:
        from gyre.pipelines.gates import Gate

        if not callable(fn):
            raise InvalidArgument(f"@gyre.pipeline decorates a function, got {type(fn).__name__}.")
        self.fn = fn
        self.name = check_name("Pipeline", name or fn.__name__)
        self.triggers: list[Trigger] = ([Schedule(schedule)] if schedule else []) + list(triggers)
        for t in self.triggers:
            if not isinstance(t, Trigger):
                raise InvalidArgument(
                    f"Pipeline '{self.name}': {t!r} is not a trigger; use Schedule, NewData or AlertFired "
                    "from gyre.pipelines."
                )
        self.gates: list[Gate] = list(gates)
        for g in self.gates:
            if not isinstance(g, Gate):
                raise InvalidArgument(
                    f"Pipeline '{self.name}': {g!r} is not a gate; use gyre.gates.MetricThreshold, "
                    "BeatsChampion, DataCheck, DemographicParity or EqualOpportunity."
                )
        self.concurrency = check_concurrency(concurrency)
        self.register_as = register_as
        self.review = bool(review)
        self.label = label
        self.experiment = experiment or self.name
        self.description = description if description is not None else (fn.__doc__ or "").strip()
        self.params: dict[str, ParamSpec] = param_specs(self.name, fn)
        self.graph: Graph = trace(
            self.name,
            fn,
            {n: (ParamPlaceholder(n) if p.required else p.default) for n, p in self.params.items()},
        )
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.graph.order)})"

    @property
    def model_name(self) -> str:
        return self.register_as or self.name

    def bind(self, params: Mapping[str, Any] | None = None, *, from_text: bool = False) -> dict[str, Any]:
        """Every parameter's value for a run (see :func:`gyre.pipelines.params.bind_params`)."""
        return bind_params(self.name, self.params, params or {}, from_text=from_text)

    def trace(self, values: Mapping[str, Any]) -> Graph:
        """The graph of a run with these (bound) parameter values."""
        return trace(self.name, self.fn, values)

    def run(
        self,
        client: Client,
        /,
        *,
        compute: str | None = None,
        executor: Executor | None = None,
        on_event: Callable[[StepEvent], None] | None = None,
        **params: Any,
    ) -> PipelineRun:
        """Run now and wait (see :func:`gyre.pipelines.run_pipeline`): ``flow.run(gyre.connect(), n=3)``."""
        from gyre.pipelines.runner import run_pipeline

        return run_pipeline(client, self, params, compute=compute, executor=executor, on_event=on_event)

    def spec(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "function": _qualified(self.fn),
            "params": {n: p.spec() for n, p in self.params.items()},
            "steps": [step_spec(node) for node in self.graph],
            "triggers": [t.spec() for t in self.triggers],
            "gates": [g.spec() for g in self.gates],
            "concurrency": self.concurrency,
            "register_as": self.model_name,
            "review": self.review,
            "label": self.label,
            "experiment": self.experiment,
        }

    def references(self) -> list[tuple[str, str]]:
        return [ref for t in self.triggers for ref in t.references()]


def pipeline(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    schedule: str | None = None,
    triggers: Iterable[Trigger] = (),
    gates: Iterable[Gate] = (),
    concurrency: str = "skip",
    register_as: str | None = None,
    review: bool = False,
    label: str | None = None,
    experiment: str | None = None,
) -> Any:
    """Declare a pipeline: ``@gyre.pipeline`` or ``@gyre.pipeline(name=..., gates=[...])``.

    The function calls steps; what it returns is the run's result. A dict result names
    outputs that gates and registration use: ``"model"`` (registered if the gates pass),
    ``"metrics"`` (a dict of numbers, logged on the pipeline run), ``"input_example"`` (a few
    rows of model input: the model's signature, which serving needs), and any data a gate
    names (``"train"``, ``"holdout"`` by default). A registered model's drift reference is
    the ``"reference"`` data (the traffic it should expect; default ``"train"``), its model
    input columns.

    Args:
        name: the pipeline's name (default: the function's).
        schedule: a cron expression (UTC), shorthand for ``triggers=[Schedule(...)]``.
        triggers: :class:`Schedule`, :class:`NewData`, :class:`AlertFired`.
        gates: checks a produced model must pass (``gyre.gates.*``).
        concurrency: when triggered while running: ``skip``, ``queue`` or ``cancel-previous``.
        register_as: model name (default: the pipeline's name).
        review: hold a model that passed its gates for ``gyre models approve`` / ``reject``.
        label: the label column gates read in data outputs (default for every gate).
        experiment: the experiment runs are recorded in (default: the pipeline's name).
    """

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(
            f,
            name=name,
            schedule=schedule,
            triggers=triggers,
            gates=gates,
            concurrency=concurrency,
            register_as=register_as,
            review=review,
            label=label,
            experiment=experiment,
        )

    return wrap(fn) if fn is not None else wrap


def step_spec(node: Any) -> dict[str, Any]:
    """A node as JSON: name, function, code hash, options, what it reads."""
    return {
        "name": node.name,
        "function": _qualified(node.step.fn),
        "code_hash": node.step.code_hash,
        "after": list(node.inputs),
        "inputs": {k: _arg_spec(v) for k, v in node.arguments.items()},
        **node.step.options.spec(),
    }


def _qualified(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"


def _arg_spec(value: Any) -> Any:
    if isinstance(value, Ref):
        return {"step": value.label()}
    refs = list(iter_refs(value))
    if refs:
        return {"steps": [r.label() for r in refs]}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ParamPlaceholder):
        return {"param": value.name}
    from gyre.pipelines.graph import ParamRef

    if isinstance(value, ParamRef):
        return {"param": value.name}
    text = repr(value)
    return text if len(text) <= 200 else text[:199] + "…"

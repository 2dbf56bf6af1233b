"""The step graph: traced from a pipeline function, checked, and put in topological order.

Tracing calls the pipeline function with a :class:`Tracer` active: each step call becomes a
:class:`Node` and returns an :class:`Output` placeholder, and passing a placeholder to another
step is an edge. The data flow is the graph; there is nothing else to declare.

A graph built by tracing cannot have a cycle (an output exists only after its step was
called), but :class:`Graph` checks any set of nodes — built by hand, or read back — for
cycles and for inputs that no step produces, and names the steps involved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gyre.errors import InvalidArgument

if TYPE_CHECKING:
    from gyre.pipelines.steps import Step

_TRACER: ContextVar[Tracer | None] = ContextVar("gyre_pipeline_tracer", default=None)


@dataclass(frozen=True)
class Ref:
    """In a node's arguments: the output of step ``node``, indexed by ``path`` (tuple items, keys)."""

    node: str
    path: tuple[Any, ...] = ()

    def label(self) -> str:
        return self.node + "".join(f"[{p!r}]" for p in self.path)


@dataclass(frozen=True)
class ParamRef:
    """In a node's arguments: a pipeline parameter that has no value yet (definition time)."""

    name: str


@dataclass
class Node:
    """One step call: its unique name in the graph, the step, and its arguments.

    ``args``/``kwargs`` hold the call's values with every placeholder replaced by a
    :class:`Ref` (another step's output) or a :class:`ParamRef`; ``arguments`` maps the
    function's parameter names to the same values, for display and logging.
    """

    name: str
    step: Step
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    arguments: dict[str, Any]
    inputs: tuple[str, ...] = ()

    def refs(self) -> list[Ref]:
        return list(iter_refs((self.args, self.kwargs)))


@dataclass
class Graph:
    """Nodes in topological order, and the pipeline function's return value (encoded)."""

    pipeline: str
    nodes: dict[str, Node]
    result: Any = None
    order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.order = _check(self.pipeline, self.nodes, self.result)

    def __iter__(self) -> Iterator[Node]:
        return (self.nodes[n] for n in self.order)

    def __len__(self) -> int:
        return len(self.nodes)

    def dependents(self, name: str) -> list[str]:
        return [n for n in self.order if name in self.nodes[n].inputs]


class Output:
    """The future result of a step, inside a pipeline function. Pass it to other steps.

    Indexing (``out[0]``, ``out["auc"]``) selects part of the result; unpacking works for
    steps that declare ``outputs=N`` or a ``-> tuple[...]`` annotation. Anything else (``if``,
    attributes, arithmetic) needs the value and belongs inside a step.
    """

    __slots__ = ("_arity", "_path", "_ref_node", "_tracer")

    def __init__(self, tracer: Tracer, node: str, path: tuple[Any, ...] = (), arity: int | None = None):
        self._tracer = tracer
        self._ref_node = node
        self._path = path
        self._arity = arity

    def __repr__(self) -> str:
        return f"<output of step {Ref(self._ref_node, self._path).label()!r}>"

    def __getitem__(self, key: Any) -> Output:
        return Output(self._tracer, self._ref_node, (*self._path, key))

    def __iter__(self) -> Iterator[Output]:
        if self._arity is None or self._path:
            raise InvalidArgument(
                f"Cannot unpack {self!r}: its step does not say how many values it returns. Declare "
                "@gyre.step(outputs=2) or annotate it '-> tuple[A, B]', or index it: out[0], out[1]."
            )
        return (Output(self._tracer, self._ref_node, (i,)) for i in range(self._arity))

    def __bool__(self) -> bool:
        raise _needs_value(repr(self))

    def __len__(self) -> int:
        raise _needs_value(repr(self))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _needs_value(f"{self!r} (attribute {name!r})")


class ParamPlaceholder:
    """A pipeline parameter without a default, while the pipeline is traced at definition time."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<parameter {self.name!r}>"

    def __bool__(self) -> bool:
        raise _needs_value(repr(self), default_hint=True)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _needs_value(repr(self), default_hint=True)


class Tracer:
    """Collects the nodes of one pipeline function call."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.nodes: dict[str, Node] = {}

    def add(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Output:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(
                f"Pipeline '{self.pipeline}': step '{step.name}' is called with inputs it cannot take: "
                f"{exc}. Pass every input of {step.name}{step.signature}."
            ) from None
        name = step.name
        n = 2
        while name in self.nodes:
            name, n = f"{step.name}_{n}", n + 1
        enc_args = tuple(self._encode(a, name) for a in bound.args)
        enc_kwargs = {k: self._encode(v, name) for k, v in bound.kwargs.items()}
        arguments = {k: self._encode(v, name) for k, v in bound.arguments.items()}
        inputs = tuple(sorted({r.node for r in iter_refs((enc_args, enc_kwargs))}))
        self.nodes[name] = Node(name, step, enc_args, enc_kwargs, arguments, inputs)
        return Output(self, name, arity=step.options.outputs)

    def encode_result(self, value: Any) -> Any:
        return self._encode(value, None)

    def _encode(self, value: Any, reader: str | None) -> Any:
        if isinstance(value, Output):
            if value._tracer is not self:
                where = f"step '{reader}'" if reader else "the pipeline's result"
                raise InvalidArgument(
                    f"Pipeline '{self.pipeline}': {where} reads {value!r}, which is not a step of this "
                    "pipeline (a placeholder kept from another pipeline or an earlier trace); call the "
                    "step inside this pipeline function."
                )
            return Ref(value._ref_node, value._path)
        if isinstance(value, ParamPlaceholder):
            return ParamRef(value.name)
        if isinstance(value, list | tuple):
            items = [self._encode(v, reader) for v in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, dict):
            return {k: self._encode(v, reader) for k, v in value.items()}
        return value


def _refuse(kind: str) -> Any:
    def method(self: Any, *args: Any) -> Any:
        raise _needs_value(repr(self), default_hint=isinstance(self, ParamPlaceholder))

    method.__name__ = kind
    return method


# Comparisons and arithmetic need a value: say so instead of a bare TypeError.
for _name in [
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__floordiv__",
    "__mod__",
    "__pow__",
    "__neg__",
    "__int__",
    "__float__",
    "__index__",
]:
    setattr(Output, _name, _refuse(_name))
    setattr(ParamPlaceholder, _name, _refuse(_name))


def current_tracer() -> Tracer | None:
    return _TRACER.get()


def trace(pipeline: str, fn: Any, params: Mapping[str, Any]) -> Graph:
    """Call ``fn(**params)`` with a tracer active; return the checked graph."""
    tracer = Tracer(pipeline)
    token = _TRACER.set(tracer)
    try:
        result = fn(**params)
    finally:
        _TRACER.reset(token)
    if not tracer.nodes:
        raise InvalidArgument(
            f"Pipeline '{pipeline}' calls no steps; call functions decorated with @gyre.step inside it."
        )
    return Graph(pipeline, tracer.nodes, tracer.encode_result(result))


def iter_refs(value: Any) -> Iterator[Ref]:
    """Every :class:`Ref` inside nested lists, tuples and dicts."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from iter_refs(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_refs(v)


def resolve(value: Any, lookup: Mapping[str, Any]) -> Any:
    """Replace every :class:`Ref` by ``lookup[node]`` indexed by its path."""
    if isinstance(value, Ref):
        out = lookup[value.node]
        for p in value.path:
            out = out[p]
        return out
    if isinstance(value, list):
        return [resolve(v, lookup) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(v, lookup) for v in value)
    if isinstance(value, dict):
        return {k: resolve(v, lookup) for k, v in value.items()}
    return value


def _check(pipeline: str, nodes: dict[str, Node], result: Any) -> list[str]:
    """Topological order (Kahn's algorithm, ties by insertion order), or an error naming the steps."""
    missing = []
    for node in nodes.values():
        for dep in node.inputs:
            if dep not in nodes:
                missing.append(f"step '{node.name}' reads the output of '{dep}', which no step produces")
    for ref in iter_refs(result):
        if ref.node not in nodes:
            missing.append(f"the result reads the output of '{ref.node}', which no step produces")
    if missing:
        raise InvalidArgument(f"Pipeline '{pipeline}' has missing inputs: " + "; ".join(missing) + ".")
    waiting = {name: set(node.inputs) for name, node in nodes.items()}
    order: list[str] = []
    ready = [n for n, deps in waiting.items() if not deps]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other, deps in waiting.items():
            if name in deps:
                deps.discard(name)
                if not deps and other not in order and other not in ready:
                    ready.append(other)
    if len(order) < len(nodes):
        cycle = _find_cycle({n: set(nodes[n].inputs) for n in nodes if n not in order})
        raise InvalidArgument(
            f"Pipeline '{pipeline}' has a cycle: " + " -> ".join(f"'{n}'" for n in cycle) + "; a step "
            "cannot depend, directly or through others, on its own output."
        )
    return order


def _find_cycle(deps: dict[str, set[str]]) -> list[str]:
    """One cycle among nodes that all wait on something, as ``a -> b -> ... -> a``."""
    start = sorted(deps)[0]
    path, seen = [start], {start}
    node = start
    while True:
        node = sorted(d for d in deps[node] if d in deps)[0]
        if node in seen:
            cycle = path[path.index(node) :]
            return [*cycle, node]
        path.append(node)
        seen.add(node)


def _needs_value(what: str, default_hint: bool = False) -> InvalidArgument:
    hint = (
        " Give the parameter a default, so the pipeline can be traced when it is defined."
        if default_hint
        else " Pass it to a step and do the work there; the pipeline function only wires steps together."
    )
    return InvalidArgument(f"{what} has no value while the pipeline's graph is built.{hint}")

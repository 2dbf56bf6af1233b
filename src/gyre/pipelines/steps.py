"""``@gyre.step``: a plain function plus how to run it (retries, timeout, resources, caching).

Called inside a pipeline function, a step does not run: it adds a node to the graph being
traced and returns an :class:`~gyre.pipelines.graph.Output` placeholder for its result.
Called anywhere else it is the plain function, so steps stay easy to unit-test.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, overload

import cloudpickle

from gyre.definitions import check_name
from gyre.errors import InvalidArgument


@dataclass(frozen=True)
class StepOptions:
    """How a step runs. ``memory`` is in bytes (Ray's unit); ``cpus`` may be fractional."""

    retries: int = 0
    backoff_s: float = 1.0
    timeout_s: float | None = None
    cpus: float | None = None
    memory: int | None = None
    cache: bool = True
    outputs: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise InvalidArgument(f"Step retries must be an integer >= 0, got {self.retries!r}.")
        if not _number(self.backoff_s) or self.backoff_s < 0:
            raise InvalidArgument(f"Step backoff_s must be a number of seconds >= 0, got {self.backoff_s!r}.")
        if self.timeout_s is not None and (not _number(self.timeout_s) or self.timeout_s <= 0):
            raise InvalidArgument(
                f"Step timeout_s must be a positive number of seconds, got {self.timeout_s!r}."
            )
        if self.cpus is not None and (not _number(self.cpus) or self.cpus <= 0):
            raise InvalidArgument(f"Step cpus must be a positive number, got {self.cpus!r}.")
        if self.memory is not None and (not isinstance(self.memory, int) or self.memory <= 0):
            raise InvalidArgument(f"Step memory must be a positive number of bytes, got {self.memory!r}.")
        if self.outputs is not None and (not isinstance(self.outputs, int) or self.outputs < 1):
            raise InvalidArgument(f"Step outputs must be an integer >= 1, got {self.outputs!r}.")

    def spec(self) -> dict[str, Any]:
        return {
            "retries": self.retries,
            "backoff_s": self.backoff_s,
            "timeout_s": self.timeout_s,
            "cpus": self.cpus,
            "memory": self.memory,
            "cache": self.cache,
        }


class Step:
    """A function declared with ``@gyre.step``.

    Attributes:
        fn: the plain function.
        name: the step's name (the function's, unless given).
        options: retries, backoff, timeout, resources, caching.
        code_hash: sha256 of the function's source (its body, without the decorators), part
            of every cache key: editing the function invalidates its cached outputs.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None, options: StepOptions | None = None):
        if not callable(fn):
            raise InvalidArgument(f"@gyre.step decorates a function, got {type(fn).__name__}.")
        self.fn = fn
        self.name = check_name("Step", name or fn.__name__)
        self.options = options or StepOptions()
        self.signature = inspect.signature(fn)
        self.code_hash = code_hash(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"Step({self.name!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from gyre.pipelines.graph import current_tracer

        tracer = current_tracer()
        if tracer is None:
            return self.fn(*args, **kwargs)
        return tracer.add(self, args, kwargs)

    def __reduce__(self) -> Any:
        # Workers receive the plain function; a Step pickles as its parts.
        return (Step, (self.fn, self.name, self.options))


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(
    *,
    name: str | None = None,
    retries: int = 0,
    backoff_s: float = 1.0,
    timeout_s: float | None = None,
    cpus: float | None = None,
    memory: int | None = None,
    cache: bool = True,
    outputs: int | None = None,
) -> Callable[[Callable[..., Any]], Step]: ...


def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    backoff_s: float = 1.0,
    timeout_s: float | None = None,
    cpus: float | None = None,
    memory: int | None = None,
    cache: bool = True,
    outputs: int | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Declare a pipeline step: ``@gyre.step`` or ``@gyre.step(retries=2, timeout_s=600)``.

    Args:
        name: the step's name in the pipeline (default: the function's name).
        retries: how many times a failed attempt is tried again (0: never).
        backoff_s: wait before the first retry; doubles after each further failure.
        timeout_s: an attempt running longer is stopped (its worker process killed) and
            counts as a failure.
        cpus: CPUs one attempt needs (passed to Ray; the local executor runs one step per process).
        memory: bytes of memory one attempt needs (passed to Ray).
        cache: reuse the stored output of an earlier run with the same code, inputs and params.
        outputs: how many values the step returns as a tuple, so that
            ``a, b = split(data)`` can unpack the placeholder (also read from a
            ``-> tuple[X, Y]`` annotation).
    """
    options = StepOptions(retries, backoff_s, timeout_s, cpus, memory, cache, outputs)

    def wrap(f: Callable[..., Any]) -> Step:
        opts = options
        if opts.outputs is None:
            opts = StepOptions(**{**opts.__dict__, "outputs": _tuple_arity(f)})
        return Step(f, name, opts)

    return wrap(fn) if fn is not None else wrap


def code_hash(fn: Callable[..., Any]) -> str:
    """sha256 of a function's source from its ``def`` line on (decorators do not count).

    Functions without retrievable source (built in a REPL or by ``exec``) hash their
    compiled code instead, which is stable within one Python version.
    """
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        lines = source.splitlines()
        start = next(
            (i for i, line in enumerate(lines) if line.lstrip().startswith(("def ", "async def "))), 0
        )
        data = "\n".join(lines[start:]).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        data = cloudpickle.dumps(code if code is not None else fn)
    return hashlib.sha256(data).hexdigest()


def _tuple_arity(fn: Callable[..., Any]) -> int | None:
    """N for a ``-> tuple[A, B, ...]`` return annotation with N fixed items, else None."""
    import typing

    try:
        hint = typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations only lose the convenience of unpacking
        return None
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if args and Ellipsis not in args:
            return len(args)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

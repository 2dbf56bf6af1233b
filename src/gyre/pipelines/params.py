"""Pipeline parameters: declared by the pipeline function's signature, checked before a run.

A parameter's type is its annotation, else its default's type. Values from the command line
(``--param n_estimators=200``) are parsed to that type; values from Python are checked
against it. Either way a wrong value is an error that names the parameter, before anything runs.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gyre.errors import InvalidArgument, did_you_mean

_SIMPLE = (bool, int, float, str)
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name, type (``None`` when any value goes) and default."""

    name: str
    type: type | None
    default: Any = inspect.Parameter.empty
    optional: bool = False  # annotated ``X | None``

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.__name__ if self.type else "any"}
        if not self.required:
            out["default"] = self.default if _json_simple(self.default) else repr(self.default)
        return out


def param_specs(pipeline: str, fn: Callable[..., Any]) -> dict[str, ParamSpec]:
    """The parameters of a pipeline function; ``*args`` and ``**kwargs`` are refused."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations that do not resolve: fall back to the defaults' types
        hints = {}
    specs = {}
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InvalidArgument(
                f"Pipeline '{pipeline}' takes *{p.name}; declare each parameter by name so runs can "
                "be started with --param NAME=VALUE."
            )
        typ, optional = _param_type(hints.get(p.name), p.default)
        specs[p.name] = ParamSpec(p.name, typ, p.default, optional)
    return specs


def bind_params(
    pipeline: str, specs: Mapping[str, ParamSpec], given: Mapping[str, Any], *, from_text: bool = False
) -> dict[str, Any]:
    """Every parameter's value: ``given`` (parsed from text if ``from_text``) over the defaults.

    Raises:
        InvalidArgument: an unknown name, a missing required parameter, or a value of the
            wrong type; every problem is listed.
    """
    problems = []
    values: dict[str, Any] = {}
    for name in given:
        if name not in specs:
            known = ", ".join(specs) or "none"
            problems.append(
                f"'{name}' is not a parameter of pipeline '{pipeline}' (its parameters: {known})."
                + did_you_mean(name, specs)
            )
    for name, spec in specs.items():
        if name in given:
            try:
                values[name] = _coerce(spec, given[name], from_text)
            except ValueError as exc:
                problems.append(str(exc))
        elif spec.required:
            problems.append(f"parameter '{name}' of pipeline '{pipeline}' is required: pass {name}=VALUE.")
        else:
            values[name] = spec.default
    if problems:
        raise InvalidArgument("Bad parameters, nothing was run: " + " ".join(problems))
    return values


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["k=v", "n=3"]`` -> ``{"k": "v", "n": "3"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"--param {item!r} is not NAME=VALUE, e.g. --param n_estimators=200.")
        out[key.strip()] = value
    return out


def _coerce(spec: ParamSpec, value: Any, from_text: bool) -> Any:
    typ = spec.type
    if from_text and isinstance(value, str):
        if spec.optional and value.lower() in {"none", "null", ""}:
            return None
        if typ is None or typ is str:
            return value
        if typ is bool:
            low = value.strip().lower()
            if low in _TRUE | _FALSE:
                return low in _TRUE
            raise ValueError(f"parameter '{spec.name}' is a boolean: write true or false, not {value!r}.")
        try:
            return typ(value.strip())
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(typ, typ.__name__)
            raise ValueError(f"parameter '{spec.name}' expects {kind}, got {value!r}.") from None
    if value is None and spec.optional:
        return None
    if typ is None or (isinstance(value, typ) and not (typ is int and isinstance(value, bool))):
        return value
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"parameter '{spec.name}' expects {typ.__name__}, got {type(value).__name__} {value!r}.")


def _param_type(hint: Any, default: Any) -> tuple[type | None, bool]:
    optional = False
    if hint is not None:
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
            optional = True
            rest = [a for a in args if a is not type(None)]
            hint = rest[0] if len(rest) == 1 else None
        if hint in _SIMPLE:
            return hint, optional
        return None, optional
    if default is not inspect.Parameter.empty and type(default) in _SIMPLE:
        return type(default), optional
    return None, optional


def _json_simple(value: Any) -> bool:
    return value is None or type(value) in _SIMPLE

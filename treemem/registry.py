"""Named strategy sets: the decorator, Python entry points, and `--set key=value` overrides.

A strategy set is registered as a frozen dataclass of its hyperparameters with a class-level
`name` and a `build()` returning a `StrategySet`. Built-in sets and entry points (group
`treemem.strategies`) load on first lookup, so importing treemem stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, TypeVar

from treemem.strategy import StrategySet
from treemem.types import ConfigError

ENTRY_POINT_GROUP = "treemem.strategies"
BUILTIN_MODULES = ("treemem.strategies.sets",)


class StrategyParams(Protocol):
    """A strategy set's hyperparameters; `build()` composes the strategies."""

    name: ClassVar[str]

    def build(self) -> StrategySet: ...


ParamsT = TypeVar("ParamsT", bound=type[Any])


@dataclass(frozen=True)
class Parameter:
    """One hyperparameter as `treemem strategies` lists it."""

    name: str
    kind: type
    default: object


ALIASES = {"P": "pathways"}


class StrategyRegistry:
    """Maps set names to parameter classes; loads built-ins and entry points lazily."""

    def __init__(self) -> None:
        self._sets: dict[str, type[Any]] = {}
        self._loaded = False

    def register(self, params_class: ParamsT) -> ParamsT:
        name = getattr(params_class, "name", None)
        if not isinstance(name, str) or not dataclasses.is_dataclass(params_class):
            raise ConfigError(
                f"{params_class!r} must be a dataclass with a class-level `name` string to register"
            )
        self._sets[name] = params_class
        return params_class

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = point.load()
            if loaded.__dict__.get("name") is None and not hasattr(loaded, "name"):
                raise ConfigError(f"entry point {point.name!r} does not name a strategy set")
            self.register(loaded)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._sets)

    def params_class(self, name: str) -> type[Any]:
        self._load()
        if name not in self._sets:
            hint = difflib.get_close_matches(name, self._sets, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
            raise ConfigError(
                f"unknown strategy {name!r}{suggestion} (known: {', '.join(sorted(self._sets))})"
            )
        return self._sets[name]

    def parameters(self, name: str) -> list[Parameter]:
        params_class = self.params_class(name)
        hints = typing.get_type_hints(params_class)
        return [
            Parameter(field.name, hints[field.name], field.default)
            for field in dataclasses.fields(params_class)
        ]

    def create(self, name: str, overrides: Mapping[str, object] | None = None) -> StrategyParams:
        """The named set's parameters with `overrides` applied (strings are parsed)."""
        params_class = self.params_class(name)
        known = {p.name: p for p in self.parameters(name)}
        values: dict[str, object] = {}
        for key, raw in (overrides or {}).items():
            field_name = ALIASES.get(key, key)
            if field_name not in known:
                hint = difflib.get_close_matches(field_name, known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                raise ConfigError(
                    f"strategy {name!r} has no parameter {key!r}{suggestion} "
                    f"(parameters: {', '.join(known)})"
                )
            values[field_name] = _coerce(known[field_name], raw)
        params: StrategyParams = params_class(**values)
        return params


def _coerce(parameter: Parameter, raw: object) -> object:
    if not isinstance(raw, str):
        return raw
    kind = parameter.kind
    try:
        if kind is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if kind in (int, float, str):
            return kind(raw)
    except ValueError:
        raise ConfigError(
            f"parameter {parameter.name!r} needs a {kind.__name__}, got {raw!r}"
        ) from None
    raise ConfigError(f"parameter {parameter.name!r} of type {kind!r} cannot be set from text")


def parse_overrides(pairs: Iterable[str]) -> dict[str, str]:
    """`["delta_iou=0.5", "P=2"]` -> `{"delta_iou": "0.5", "P": "2"}`."""
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs KEY=VALUE, got {pair!r}")
        result[key.strip()] = value.strip()
    return result


REGISTRY = StrategyRegistry()
register_strategy = REGISTRY.register


def load_strategy(name: str, overrides: Mapping[str, object] | None = None) -> StrategySet:
    """Build a registered strategy set by name, with optional parameter overrides."""
    return REGISTRY.create(name, overrides).build()

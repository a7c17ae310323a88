"""What a config accepts, for people: the type, default, range and help text of every field of a pydantic model,
read from its annotations and `Field` constraints (`harness ls methods -v`)."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


@dataclass(frozen=True)
class FieldHelp:
    name: str
    type: str
    default: str
    range: str
    help: str
    operational: bool


def describe(model: type[BaseModel]) -> list[FieldHelp]:
    """One entry per field of `model`, in declaration order."""
    return [
        FieldHelp(
            name=name,
            type=type_name(field.annotation),
            default=default(field),
            range=value_range(field),
            help=field.description or "",
            operational=isinstance(field.json_schema_extra, dict) and bool(field.json_schema_extra.get("operational")),
        )
        for name, field in model.model_fields.items()
    ]


def show(value: Any) -> str:
    """A value as `-p KEY=VALUE` takes it: true/false, null, plain strings and numbers, [a, b] lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " | ".join(dict.fromkeys(type(v).__name__ for v in get_args(annotation)))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(annotation))
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(type_name(a) for a in get_args(annotation))}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def default(field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    return "required" if value is PydanticUndefined else show(value)


def choices(annotation: Any) -> list[Any]:
    """The values a Literal annotation allows (also inside `Literal[...] | None`), else []."""
    origin = get_origin(annotation)
    if origin is Literal:
        return list(get_args(annotation))
    if origin in (Union, types.UnionType):
        return [v for a in get_args(annotation) for v in choices(a)]
    return []


def value_range(field: FieldInfo) -> str:
    """'a, b, c' for a Literal; '[1, 4096]', '(0, 1]', '>= 1', '> 0' from ge/gt/le/lt; '-' without either."""
    allowed = choices(field.annotation)
    if allowed:
        return ", ".join(show(v) for v in allowed)
    low: tuple[Any, bool] | None = None  # (bound, inclusive)
    high: tuple[Any, bool] | None = None
    for m in field.metadata:
        if isinstance(m, at.Ge):
            low = (m.ge, True)
        elif isinstance(m, at.Gt):
            low = (m.gt, False)
        elif isinstance(m, at.Le):
            high = (m.le, True)
        elif isinstance(m, at.Lt):
            high = (m.lt, False)
    if low and high:
        return f"{'[' if low[1] else '('}{show(low[0])}, {show(high[0])}{']' if high[1] else ')'}"
    if low:
        return f"{'>=' if low[1] else '>'} {show(low[0])}"
    if high:
        return f"{'<=' if high[1] else '<'} {show(high[0])}"
    return "-"

"""Dataclasses to JSON and back, checked against their type hints, and the JSON Schema they imply.

The configuration and every document edl writes are dataclasses; this module is the one place
that knows how such a dataclass looks as JSON. Reading is strict (an unknown key, a wrong type or
a missing required field is a ``TypedJsonError`` naming the path), so a hand-edited or foreign
file is refused with a reason instead of surfacing later as a ``KeyError``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from evaluator.errors import EdlError

JsonValue = Union[None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]]  # noqa: UP007
JsonObject = dict[str, JsonValue]
T = TypeVar("T")

DOC = "doc"  # field metadata key: the field's description in the JSON Schema


class TypedJsonError(EdlError):
    """A JSON document does not match the dataclass it should describe."""


def doc(text: str, **metadata: object) -> dict[str, object]:
    """Field metadata carrying the field's description (``field(metadata=doc("..."))``)."""
    return {DOC: text, **metadata}


def to_json(value: object) -> JsonValue:
    """A dataclass (or container of them) as plain JSON values: Paths become strings, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity; a value that could not be computed is null
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def from_json(cls: type[T], data: object, where: str = "$") -> T:
    """Build ``cls`` from JSON ``data``, checking every field against its type hint."""
    return typing.cast(T, _decode(cls, data, where))


def _is_union(hint: object) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _type_name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _decode(hint: Any, data: object, where: str) -> object:
    if hint is Any or hint is object:
        return data
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(hint, data, where)
    origin = get_origin(hint)
    if _is_union(hint):
        return _decode_union(hint, data, where)
    if origin is typing.Literal:
        if data not in get_args(hint):
            raise TypedJsonError(f"{where}: {data!r} is not one of {list(get_args(hint))}")
        return data
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise TypedJsonError(f"{where}: expected a list, found {type(data).__name__}")
        args = get_args(hint)
        item = args[0] if args else Any
        items = [_decode(item, value, f"{where}[{index}]") for index, value in enumerate(data)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(data, dict):
            raise TypedJsonError(f"{where}: expected an object, found {type(data).__name__}")
        value_hint = get_args(hint)[1] if get_args(hint) else Any
        return {str(key): _decode(value_hint, value, f"{where}.{key}") for key, value in data.items()}
    return _decode_scalar(hint, data, where)


def _decode_union(hint: Any, data: object, where: str) -> object:
    options = get_args(hint)
    if data is None and type(None) in options:
        return None
    problems = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _decode(option, data, where)
        except TypedJsonError as exc:
            problems.append(str(exc))
    raise TypedJsonError(problems[0] if len(problems) == 1 else f"{where}: {data!r} matches none of "
                         f"{[_type_name(o) for o in options]}")


def _decode_scalar(hint: Any, data: object, where: str) -> object:
    if hint is type(None):
        if data is not None:
            raise TypedJsonError(f"{where}: expected null, found {data!r}")
        return None
    if hint is bool:
        if not isinstance(data, bool):
            raise TypedJsonError(f"{where}: expected true or false, found {data!r}")
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypedJsonError(f"{where}: expected an integer, found {data!r}")
        return data
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypedJsonError(f"{where}: expected a number, found {data!r}")
        return data  # an int stays an int: re-serialised, the document is byte-for-byte what was read
    if hint is str:
        if not isinstance(data, str):
            raise TypedJsonError(f"{where}: expected a string, found {data!r}")
        return data
    if hint is Path:
        if not isinstance(data, str):
            raise TypedJsonError(f"{where}: expected a path string, found {data!r}")
        return Path(data)
    raise TypeError(f"{where}: typedjson cannot decode {hint!r}")


def _decode_dataclass(cls: Any, data: object, where: str) -> object:
    if not isinstance(data, dict):
        raise TypedJsonError(f"{where}: expected an object, found {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise TypedJsonError(f"{where}: unknown field(s) {unknown}")
    values = {}
    for name, spec in fields.items():
        if name in data:
            values[name] = _decode(hints[name], data[name], f"{where}.{name}")
        elif spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            raise TypedJsonError(f"{where}: missing field {name!r}")
    return cls(**values)


# --- JSON Schema ----------------------------------------------------------------------------------------


def json_schema(cls: type, title: str, schema_id: str = "") -> JsonObject:
    """The JSON Schema (draft 2020-12) of dataclass ``cls``, nested dataclasses under ``$defs``."""
    definitions: dict[str, JsonValue] = {}
    root = _schema(cls, definitions)
    schema: JsonObject = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if schema_id:
        schema["$id"] = schema_id
    schema["title"] = title
    schema.update(typing.cast(JsonObject, root))
    schema["$defs"] = dict(sorted(definitions.items()))
    return schema


def _schema(hint: Any, definitions: dict[str, JsonValue]) -> JsonValue:
    if hint is Any or hint is object:
        return {}
    if dataclasses.is_dataclass(hint):
        name = typing.cast(type, hint).__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder: a dataclass that refers to itself terminates
            definitions[name] = _dataclass_schema(hint, definitions)
        return {"$ref": f"#/$defs/{name}"}
    origin = get_origin(hint)
    if _is_union(hint):
        return {"anyOf": [_schema(option, definitions) for option in get_args(hint)]}
    if origin is typing.Literal:
        return {"enum": list(get_args(hint))}
    if origin in (list, tuple):
        args = get_args(hint)
        return {"type": "array", "items": _schema(args[0] if args else Any, definitions)}
    if origin is dict:
        args = get_args(hint)
        return {"type": "object", "additionalProperties": _schema(args[1] if args else Any, definitions)}
    simple = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string", Path: "string"}
    if hint in simple:
        return {"type": simple[hint]}
    raise TypeError(f"no JSON Schema for {hint!r}")


def _dataclass_schema(cls: Any, definitions: dict[str, JsonValue]) -> JsonValue:
    hints = get_type_hints(cls)
    properties: dict[str, JsonValue] = {}
    required = []
    for spec in dataclasses.fields(cls):
        prop = typing.cast(JsonObject, _schema(hints[spec.name], definitions))
        if description := spec.metadata.get(DOC):
            prop = {"description": str(description), **prop}
        properties[spec.name] = prop
        if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
            required.append(spec.name)
    out: JsonObject = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
        out["description"] = " ".join(cls.__doc__.split())
    out["properties"] = properties
    out["required"] = typing.cast(JsonValue, required)
    out["additionalProperties"] = False
    return out

"""Dataclasses to JSON and back, checked against their hints, and the schema they imply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from evaluator.typedjson import TypedJsonError, doc, from_json, json_schema, to_json


@dataclass
class Inner:
    value: float
    tags: list[str] = field(default_factory=list)


@dataclass
class Outer:
    name: str = field(metadata=doc("what it is called"))
    kind: Literal["a", "b"]
    count: int
    inner: Inner | None
    where: Path
    table: dict[str, int | None] = field(default_factory=dict)
    pair: tuple[float, ...] = ()


def test_round_trip():
    value = Outer("x", "a", 3, Inner(1.5, ["t"]), Path("/tmp/p"), {"k": None, "j": 2}, (0.9, 0.95))
    document = to_json(value)
    assert document == {"name": "x", "kind": "a", "count": 3, "inner": {"value": 1.5, "tags": ["t"]},
                        "where": "/tmp/p", "table": {"k": None, "j": 2}, "pair": [0.9, 0.95]}
    assert from_json(Outer, document) == value


@pytest.mark.parametrize(("change", "message"), [
    ({"count": "3"}, r"\$.count: expected an integer"),
    ({"count": True}, r"\$.count: expected an integer"),
    ({"kind": "c"}, r"\$.kind: 'c' is not one of \['a', 'b'\]"),
    ({"inner": {"value": 1.0}}, None),
    ({"inner": {"value": "x"}}, r"\$.inner.value: expected a number"),
    ({"extra": 1}, r"unknown field\(s\) \['extra'\]"),
    ({"table": {"k": 1.5}}, r"\$.table.k"),
])
def test_reading_is_strict(change, message):
    document = {"name": "x", "kind": "a", "count": 3, "inner": None, "where": "/p"} | change
    if message is None:
        assert from_json(Outer, document).inner == Inner(1.0)
        return
    with pytest.raises(TypedJsonError, match=message):
        from_json(Outer, document)


def test_missing_required_field_is_named():
    with pytest.raises(TypedJsonError, match="missing field 'count'"):
        from_json(Outer, {"name": "x", "kind": "a", "inner": None, "where": "/p"})


def test_reading_then_writing_gives_back_the_same_document():
    """An integer in a number field stays an integer: a seal over the document must still hold after a read."""
    document = {"name": "x", "kind": "b", "count": 1, "inner": {"value": 40, "tags": []}, "where": "/p",
                "table": {}, "pair": [1, 0.5]}
    assert to_json(from_json(Outer, document)) == document
    assert repr(to_json(from_json(Outer, document))["inner"]) == "{'value': 40, 'tags': []}"


def test_non_finite_numbers_become_null():
    assert to_json(Inner(float("nan"))) == {"value": None, "tags": []}


def test_schema_describes_fields_and_requirements():
    schema = json_schema(Outer, "outer")
    outer = schema["$defs"]["Outer"]
    assert schema["$ref"] == "#/$defs/Outer" and outer["additionalProperties"] is False
    assert outer["properties"]["name"]["description"] == "what it is called"
    assert outer["required"] == ["name", "kind", "count", "inner", "where"]
    assert outer["properties"]["kind"] == {"enum": ["a", "b"]}
    assert {"$ref": "#/$defs/Inner"} in outer["properties"]["inner"]["anyOf"]

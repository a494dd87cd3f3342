"""files/jsontext.py writes the very text `json.dumps(indent=2, ensure_ascii=False,
allow_nan=False)` writes, and raises what it raises (sidecars stay byte for byte)."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wansync.files.jsontext import indented


def stdlib(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


class Level(enum.IntEnum):
    LOW = 1


class Tag(str):
    pass


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities too: both must refuse them
    | st.text()
    | st.sampled_from([Level.LOW, Tag("x"), 10**30, -0.0, 1e-320, "\u2028", "é\x00\x1f"])
)
keys = st.text() | st.sampled_from([1, 2.5, True, None, Level.LOW])
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
    ),
    max_leaves=30,
)


def outcome(write: Any, value: Any) -> tuple[str, str]:
    try:
        return "text", write(value)
    except (ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_text_and_the_errors_are_the_stdlibs(value: Any) -> None:
    assert outcome(indented, value) == outcome(stdlib, value)


def test_a_sidecar_shaped_record_is_written_as_json_dumps_writes_it() -> None:
    record = {
        "schema": 1,
        "name": "clip",
        "meta": {},
        "polls": 4,
        "error": {"code": "X", "message": 'ünïcode "quoted"\n', "transient": False},
        "output": {"results": [{"url": "https://h/p?sig=1", "n": 1.5}], "empty": []},
        "usage": None,
    }
    assert indented(record) == stdlib(record)
    assert indented(record).startswith('{\n  "schema": 1,\n  "name": "clip",\n  "meta": {},')


cycle: list[Any] = []
cycle.append({"me": cycle})


@pytest.mark.parametrize(
    "value",
    [float("nan"), {"a": [float("inf")]}, {"k": object()}, cycle],
    ids=["nan", "infinity", "object", "cycle"],
)
def test_what_json_refuses_is_refused_alike(value: Any) -> None:
    kind, _ = outcome(stdlib, value)
    assert kind != "text"
    assert outcome(indented, value) == outcome(stdlib, value)

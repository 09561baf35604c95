"""fastjson reads and writes exactly what the json package does."""

from __future__ import annotations

import json

import pytest

from matou.client import fastjson

VALUES = [{"a": [1, 2.5, None, True, False, "é\u2028\"x\\"], "b": {}}, [], "s", 10**30,
          1e300, -0.0, {"k": {"n": [{"x": 1}]}}, "\U0001f600"]


@pytest.mark.parametrize("value", VALUES)
def test_same_text_as_json(value: object) -> None:
    assert fastjson.dumps(value) == json.dumps(value)
    assert fastjson.dumps(value, ensure_ascii=False) == json.dumps(value, ensure_ascii=False)
    assert fastjson.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))
    assert fastjson.loads(json.dumps(value)) == value
    assert fastjson.loads(f" \n{json.dumps(value)}\r\n".encode()) == value


@pytest.mark.parametrize("text", ["", " ", "{", "[1,", "1 2", '{"a":}', "nul", "[1]x"])
def test_malformed_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        fastjson.loads(text)


def test_unserialisable_is_a_type_error_and_leaves_no_trace() -> None:
    shared = {"k": 1}
    with pytest.raises(TypeError):
        fastjson.dumps([shared, object()])
    assert fastjson.dumps([shared, shared]) == '[{"k": 1}, {"k": 1}]'

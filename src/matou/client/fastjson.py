"""`loads` and compact `dumps` on CPython's JSON accelerator (`_json`) alone.

The json package compiles regular expressions when imported, and re imports enum,
functools and collections: 6 ms of a 9 ms interpreter start, which every `matou` command
would pay. `_json` is the C code json itself runs on; this module drives it the way
json.decoder and json.encoder do, and falls back to the json package where the
accelerator is missing (other interpreters) or for anything it does not cover (indent).

May import: nothing of matou (stdlib only).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: the CLI starts faster
if TYPE_CHECKING:
    from typing import Any

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """What json's C scanner reads off a JSONDecoder: the default decoder's settings."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def _no_default(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


_json: Any
try:
    import _json as _accelerator

    _json = _accelerator
    _scan = _json.make_scanner(_Context())
    # no circular-reference markers: a failed call would leave its marks behind
    _encoders = {(ascii_, compact): _json.make_encoder(
        None, _no_default,
        _json.encode_basestring_ascii if ascii_ else _json.encode_basestring,
        None, ":" if compact else ": ", "," if compact else ", ", False, False, True)
        for ascii_ in (True, False) for compact in (True, False)}
except (ImportError, AttributeError, TypeError):  # pragma: no cover (not CPython)
    _json = None


def loads(data: bytes | str) -> Any:
    """json.loads for UTF-8 bytes or text; ValueError when it is not one JSON value."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if _json is None:  # pragma: no cover
        import json
        return json.loads(text)
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as e:
        raise ValueError(f"Expecting value: char {e.value}") from None
    if text[end:].strip(_WS):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(obj: Any, ensure_ascii: bool = True, compact: bool = False) -> str:
    """json.dumps(obj), with json's default separators (", " and ": ") or, ``compact``,
    Go's (no spaces)."""
    if _json is None:  # pragma: no cover
        import json
        return json.dumps(obj, ensure_ascii=ensure_ascii,
                          separators=(",", ":") if compact else None)
    return "".join(_encoders[ensure_ascii, compact](obj, 0))

"""Indented JSON text, exactly as `json.dumps(indent=2, ensure_ascii=False,
allow_nan=False)` writes it, in about two thirds of the time.

The stdlib leaves its C encoder once `indent` is given, and every poll of a task writes
its sidecar (docs/performance.md). Plain JSON values with string keys are written here;
anything else (another key type, an int or str subclass, NaN, a cycle) is handed to
`json.dumps` itself, so the text, and every error, is always the stdlib's.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring  # the C function where there is one
from typing import Any


class _NotPlain(Exception):
    """A value this module leaves to `json.dumps`."""


def indented(value: Any) -> str:
    """`value` as `json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)`."""
    try:
        return _text(value, "\n")
    except (_NotPlain, RecursionError):  # a cycle: the stdlib says so (ValueError)
        return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)


def _text(value: Any, newline: str) -> str:
    """`value` at the depth `newline` (a line break and that depth's indent) says."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        items = [_key(k) + ": " + _text(v, inner) for k, v in value.items()]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = newline + "  "
        return "[" + inner + ("," + inner).join([_text(v, inner) for v in value]) + newline + "]"
    raise _NotPlain


def _key(key: Any) -> str:
    if type(key) is not str:
        raise _NotPlain
    return encode_basestring(key)

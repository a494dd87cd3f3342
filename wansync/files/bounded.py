"""Untrusted JSON and YAML, parsed with bounds: nesting depth, nodes after alias expansion.

Python's `json` and PyYAML recurse: 3,000 `[` raise RecursionError, a meta 980 levels deep
parses but cannot be written again (`json.dumps(indent=2)` recurses in Python), and 560
bytes of YAML aliases expand to billions of nodes once anything walks them. So depth and
node count are counted without recursion (YAML: on the parser's event stream, before any
node is built; JSON: right after the C parser, which stops itself at its own limit), and
every value must be plain JSON: finite numbers, text that is valid UTF-8. A key given twice
in one mapping of a user's file is refused (silently keeping the last would hide a typo).
Every failure is one `Unparsable` whose message says what was wrong; the caller names the file.
Sizes are the caller's to cap before calling (each file type has its own limit).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
)
from yaml.nodes import MappingNode

from wansync.core.times import wall_time as wall_time  # where it was; pure, in core

MAX_DEPTH = 64
MAX_NODES = 10_000
_KEY_TYPES = (str, int, float, bool, type(None))  # what json.dumps turns into a key


class Unparsable(ValueError):
    """Not a bounded, plain JSON/YAML document; the message says why, in plain words."""


# -- JSON ---------------------------------------------------------------------------------
def _no_constant(name: str) -> Any:
    raise Unparsable(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unparsable(f"{text[:40]} is out of range for a JSON number")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise Unparsable(f"key {key[:80]!r} is given twice")
        obj[key] = value
    return obj


def json_loads(data: str | bytes, max_depth: int = MAX_DEPTH, unique_keys: bool = False) -> Any:
    """`json.loads`, refusing NaN/Infinity, deep nesting and text that is not UTF-8;
    with `unique_keys` (a user's file), a key given twice in one object too."""
    hook = _unique_pairs if unique_keys else None
    try:
        obj = json.loads(
            data, parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=hook
        )
    except Unparsable:
        raise
    except RecursionError:
        raise Unparsable(f"JSON is nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise Unparsable(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except (ValueError, TypeError) as exc:  # an int over 4300 digits, bytes not UTF-8/16/32
        why = " (a number too long)" if "digits" in str(exc) else ""
        raise Unparsable(f"not valid JSON{why}") from None
    check_tree(obj, max_depth)
    return obj


def check_tree(obj: Any, max_depth: int = MAX_DEPTH, where: str = "") -> None:
    """Raise `Unparsable` unless `obj` is plain JSON data at most `max_depth` deep.

    Iterative (an explicit stack), so a deep value is refused, never a RecursionError.
    Mapping keys may be any scalar `json.dumps` accepts; values must be JSON values.
    """
    stack: list[tuple[Any, int, str]] = [(obj, 0, where)]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict | list):
            if depth + 1 > max_depth:
                raise Unparsable(f"{_short(path)}: nested deeper than {max_depth} levels")
            if isinstance(node, list):
                stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(node))
                continue
            for key, value in node.items():
                if not isinstance(key, _KEY_TYPES):
                    raise Unparsable(f"{_short(path)}: a {type(key).__name__} key")
                _check_scalar(key, path)
                stack.append((value, depth + 1, f"{path}.{key}" if path else str(key)))
        else:
            _check_scalar(node, path)


def _short(path: str) -> str:
    """A value's place for a message, kept short (a deep place is mostly `[0][0]…`)."""
    if not path:
        return "value"
    return path if len(path) <= 60 else f"{path[:40]}…{path[-16:]}"


def _check_scalar(value: Any, path: str) -> None:
    where = _short(path)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise Unparsable(f"{where}: text holds a lone surrogate (not UTF-8)") from None
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Unparsable(f"{where}: {value} is not a number JSON allows")
    elif not isinstance(value, bool | int | type(None)):
        raise Unparsable(f"{where}: a {type(value).__name__} is not a JSON value (quote it)")


# -- YAML ---------------------------------------------------------------------------------
@dataclass
class _Open:
    """A collection being parsed: where it started, for its anchor's expanded size."""

    nodes_before: int
    depth: int
    deepest: int
    anchor: str | None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts every event the composer takes, with aliases expanded.

    An alias counts as many nodes, and reaches as deep, as the anchored node it repeats,
    so a billion-laughs document is stopped on its first few hundred bytes: before the
    composer or the constructor builds anything, and before any walk could expand it.
    """

    def __init__(self, stream: str, max_depth: int, max_nodes: int) -> None:
        super().__init__(stream)  # (the loader's own attributes are many: ours say _bound_)
        self._bound_depth = max_depth
        self._bound_nodes = max_nodes
        self._bound_count = 0
        self._bound_anchors: dict[str, tuple[int, int]] = {}  # anchor -> (expanded nodes, height)
        self._bound_open: list[_Open] = []

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose own keys are all different (`<<` merges may still be overridden)."""
        seen: set[Any] = set()
        for key_node, _ in node.value if isinstance(node, MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                twice = key in seen
                seen.add(key)
            except TypeError:
                continue  # unhashable: the constructor refuses it in its own words
            if twice:
                line = key_node.start_mark.line + 1
                raise Unparsable(f"key {str(key)[:80]!r} is given twice (line {line})")
        return super().construct_mapping(node, deep)

    def get_event(self) -> Event:
        event: Event = super().get_event()  # type: ignore[no-untyped-call]
        if isinstance(event, NodeEvent):
            self._node(event)
        elif isinstance(event, CollectionEndEvent) and self._bound_open:
            done = self._bound_open.pop()
            if done.anchor is not None:
                size = self._bound_count - done.nodes_before
                self._bound_anchors[done.anchor] = (size, done.deepest - done.depth + 1)
            self._reach(done.deepest)
        return event

    def _node(self, event: NodeEvent) -> None:
        depth = len(self._bound_open)  # collections around this node
        if isinstance(event, CollectionStartEvent):
            self._bound_open.append(_Open(self._bound_count, depth + 1, depth + 1, event.anchor))
            self._add(1, depth + 1)
            return
        size, height = (1, 0)
        if isinstance(event, AliasEvent) and event.anchor is not None:
            size, height = self._bound_anchors.get(event.anchor, (1, 0))
        elif event.anchor is not None:
            self._bound_anchors[event.anchor] = (1, 0)
        self._add(size, depth + height)

    def _add(self, size: int, reached: int) -> None:
        self._bound_count += size
        if self._bound_count > self._bound_nodes:
            raise Unparsable(f"more than {self._bound_nodes} values (aliases expanded)")
        self._reach(reached)

    def _reach(self, reached: int) -> None:
        if reached > self._bound_depth:
            raise Unparsable(f"nested deeper than {self._bound_depth} levels")
        if self._bound_open and reached > self._bound_open[-1].deepest:
            self._bound_open[-1].deepest = reached


def yaml_loads(text: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """One YAML document (JSON is YAML), safely constructed, within the bounds."""
    loader = None
    try:
        loader = _BoundedLoader(text, max_depth, max_nodes)  # reads (and checks) the text
        return loader.get_single_data()
    except Unparsable:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise Unparsable(f"not valid YAML or JSON{where}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # a constructor's own error: an int of 5,000 digits, a date like 2020-99-99
        raise Unparsable(f"not valid YAML: {type(exc).__name__}") from None
    finally:
        if loader is not None:
            loader.dispose()

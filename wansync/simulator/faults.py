"""Fault injection: answers that go wrong in the ways the real service and network do."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from .model import Fault
from .reply import Reply
from .video import VideoStore

STATUS_CODES = {429: "Throttling.RateQuota", 401: "InvalidApiKey", 400: "InvalidParameter"}
TARGETS = ("task", "video", "picture", "submit", "list", "cancel")
KINDS = (
    "status",
    "reset",
    "slow",
    "malformed",
    "truncate",
    "html",
    "expired",
    "redirect",
    "endless",
)
MAX_DELAY = 600.0  # seconds a `slow` fault may hold a request
MAX_BODY = 1 << 20  # bytes of a scripted answer body


class BadFault(ValueError):
    """A fault `POST /_sim/faults` cannot take: the server answers 400 with this text."""


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise BadFault(f"{key}: must be text, not {type(value).__name__}")
    return value


def _count(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadFault(f"{key}: must be a whole number from {low} to {high}, not {value!r}")
    return value


def _seconds(key: str, value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 <= value <= MAX_DELAY:
        raise BadFault(f"{key}: must be seconds from 0 to {MAX_DELAY:g}, not {value!r}")
    return float(value)


def _body(key: str, value: Any) -> bytes:
    """The answer's body, given as text (JSON has no bytes): sent as its UTF-8 bytes."""
    data = _text(key, value).encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY:
        raise BadFault(f"{key}: over {MAX_BODY} bytes")
    return data


def _flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadFault(f"{key}: must be true or false, not {value!r}")
    return value


_FIELDS: dict[str, Any] = {  # the optional fields of a Fault, each with its check
    "task_id": _text,
    "count": lambda k, v: _count(k, v, 1, 10**6),
    "status": lambda k, v: _count(k, v, 100, 599),
    "retry_after": lambda k, v: _text(k, v) if not isinstance(v, int | float) else str(v),
    "delay": _seconds,
    "at": lambda k, v: _count(k, v, 0, 1 << 40),
    "code": _text,
    "body": _body,
    "created": _flag,
}


def from_json(raw: bytes) -> Fault:
    """The fault a `POST /_sim/faults` body asks for, checked whole: `BadFault` names what
    is wrong (the field, what it must be), so a mistyped fault is a 400, never a fault that
    breaks the request it meets later. `body` is text: a redirect's `Location`, or the
    answer a `malformed` fault sends."""
    try:
        spec = json.loads(raw or b"{}")
    except ValueError as exc:
        raise BadFault(f"the body is not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise BadFault("the body must be a JSON object {target, kind, …}")
    target, kind = spec.pop("target", None), spec.pop("kind", None)
    if target not in TARGETS:
        raise BadFault(f"target: {target!r} is not one of {', '.join(TARGETS)}")
    if kind not in KINDS:
        raise BadFault(f"kind: {kind!r} is not one of {', '.join(KINDS)}")
    checked = {}
    for key, value in spec.items():
        check = _FIELDS.get(key)
        if check is None:
            raise BadFault(f"{key}: not a field of a fault (its fields: {', '.join(_FIELDS)})")
        if value is not None:
            checked[key] = check(key, value)
    return Fault(target, kind, **checked)


def apply(reply: Reply, fault: Fault, store: VideoStore) -> bool:
    """Apply a fault that replaces the answer; False for `slow` (then answer normally).
    The request's log entry shows the fault's kind as its status."""
    if fault.delay:
        time.sleep(fault.delay)
    if fault.kind == "slow":
        return False
    reply.note(status=fault.kind)
    if fault.kind == "reset":
        reply.reset()
    elif fault.kind == "malformed":
        if fault.body is None:
            reply.reply(200, b"<html>not json</html>", "text/html")
        else:
            reply.reply(200, fault.body, "application/json")
    elif fault.kind == "redirect":
        reply.reply(302, b"", headers={"Location": (fault.body or b"/").decode()})
    elif fault.kind == "endless":
        store.endless(reply)
    elif fault.kind == "html":
        reply.reply(200, b"<html><body>Access page</body></html>", "text/html")
    elif fault.kind == "expired":
        reply.expired()
    else:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
        code = fault.code or STATUS_CODES.get(fault.status, "InternalError")
        reply.reply_error(fault.status, code, f"simulated {fault.status}", headers)
    return True


def random_fault(rng: random.Random, target: str) -> Fault:
    """One fault of the kinds a flaky network and service produce (chaos for load tests)."""
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("status", {"status": 429, "retry_after": "0.2"}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
        ("reset", {}),
        ("slow", {"delay": 0.3}),
    ]
    if target in ("video", "picture"):  # storage: a body cut short, never an error page
        kinds += [("truncate", {"at": 4096}), ("truncate", {"at": 100})]
    else:
        kinds += [("malformed", {})]
    kind, spec = rng.choice(kinds)
    return Fault(target, kind, **spec)

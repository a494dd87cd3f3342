"""Fault injection: answers that go wrong in the ways the real service and network do."""

from __future__ import annotations

import random
import time
from typing import Any

from .model import Fault
from .reply import Reply
from .video import VideoStore

STATUS_CODES = {429: "Throttling.RateQuota", 401: "InvalidApiKey", 400: "InvalidParameter"}


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

"""Times as the records keep them: ISO 8601 UTC text, and the bounds of what a time read
back (from a sidecar, a signed URL) may be. Pure: `now` is always passed in.

A time comes from outside more often than not (a hand-edited sidecar, the remote's
`Expires=1e20`, `nan`): nothing here raises on one, and a value that cannot be true
reads as absent or is clamped, so no single value can stop the loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

LATEST_TIME = 253_402_214_399  # 9999-12-30T23:59:59Z: still a date after adding 8 h (API time)
LATEST_EXPIRES = 2.0**33  # Unix seconds, year 2242: later is not a real deadline
TIME_AHEAD = 300.0  # seconds a time read back may lie in the future (clock skew)
TIME_PAST = 30 * 86400.0  # seconds a time read back may lie in the past


def wall_time(ts: float) -> float:
    """`ts` as a Unix time a `datetime` can show: NaN is 0, anything out of range the
    nearest end. A remote or hand-edited number (`inf`, `1e20`, year 9999 + 8 h) must never
    make a formatter raise in the main loop."""
    if ts != ts:  # NaN
        return 0.0
    return float(min(LATEST_TIME, max(0, ts)))


def utc_iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and a `Z`: `2026-11-28T18:00:00.000Z`.

    Never raises: `ts` is clamped to what a date can show (`wall_time`).
    """
    moment = datetime.fromtimestamp(wall_time(ts), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: object) -> float | None:
    """The inverse of `utc_iso`, tolerant of anything unreadable (returns None)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def read_time(text: str | None, now: float) -> float | None:
    """A time read back from a record, within what it could truly be, else None.

    Anyone in the group may edit a sidecar: a `submit_started` in year 9999 must not make
    every later step raise (or wait for ever). Later than `now` by more than a clock's
    skew is absent; earlier than `TIME_PAST` ago is clamped to that (a task lives 24 h).
    """
    ts = parse_iso(text)
    if ts is None or ts > now + TIME_AHEAD:
        return None
    return max(ts, now - TIME_PAST)


def url_expires(url: str) -> float | None:
    """The signed URL's deadline from its `Expires=<unix seconds>` parameter, if any.

    The remote writes it: only a plain ASCII number that is a plausible Unix time
    (after 1970, before 2242) counts; `nan`, `inf`, `1e20`, 400 digits are None.
    """
    try:
        values = parse_qs(urlsplit(url).query).get("Expires")
    except ValueError:
        return None
    text = values[0].strip() if values else ""
    if not text or len(text) > 20 or not text.isascii():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value < LATEST_EXPIRES else None

"""Numbers and delays in HTTP headers a remote sends: read strictly, capped, never raising.

Shared by the task API client and the downloader (`Content-Length`, `Content-Range`,
`Retry-After`): one reading of each, so the two can never disagree about a header.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 600.0  # seconds: a remote-supplied delay has a cap (docs/what-happens.md)


def header_int(value: str | None) -> int | None:
    """A whole number in an HTTP header (`Content-Length`, a `Content-Range` part), else None.

    ASCII digits only: `str.isdigit` accepts `²` and `int` reads `١٢`, neither of which
    is HTTP; at most 19 digits, so the number always fits what it is compared with.
    """
    value = (value or "").strip()
    if not value or len(value) > 19 or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date), at most 10 min.

    The remote chooses this number: `1e20`, `inf`, a date in 2100 must not stop polling
    for ever (or raise), so it is capped at `MAX_RETRY_AFTER`; what cannot be read
    (`nan`, junk) is None, as if there were no header.
    """
    if not value or not value.isascii():  # float() would read `١٢` as 12
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError, OverflowError, IndexError):
            return None
        seconds = when - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))

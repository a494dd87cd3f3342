"""The API server's clock as seen from here, and the task-list window a lost create needs.

A create whose answer was lost is looked for in the task list by its creation time,
which the API keeps in its own clock. Ours may be minutes off (a VM without time sync):
a window taken from our clock alone would miss the task, and the job would be sent
again, a second paid task. So every API answer's `Date` header tells us how far the
server's clock is from ours (docs/what-happens.md: clock skew), and the window
is placed on the server's clock, wider when that is not known.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from wansync.core.times import TIME_PAST, parse_iso, utc_iso

BASE_MARGIN = 120.0  # seconds either side: the server's own delay in stamping a task
UNSURE_MARGIN = 900.0  # seconds either side when the server's clock is not known yet
MAX_OFFSET = 366 * 86400.0  # a `Date` further off than a year is no clock: ignored
DATE_RESOLUTION = 1.0  # a `Date` header has whole seconds
MAX_SPAN = 4 * 3600.0  # the widest window a sidecar may record (hand edits)

Window = tuple[float, float]  # [from, to], Unix seconds on the server's clock


@dataclass(frozen=True, slots=True)
class Offset:
    """The server's clock minus ours, in seconds, to within `± error`."""

    seconds: float
    error: float


def offset_from(date: str | None, sent: float, received: float) -> Offset | None:
    """The offset one answer shows: its `Date` against our wall clock at `sent` (the
    request left) and `received` (its headers came), or None if it says nothing usable.

    The server stamped the answer somewhere between the two, within a second of `Date`.
    """
    if not date or len(date) > 64:
        return None
    try:
        stamped = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None
    if stamped != stamped or received < sent:  # NaN; a clock step during the request
        return None
    middle = (sent + received) / 2
    seconds = stamped + DATE_RESOLUTION / 2 - middle
    if abs(seconds) > MAX_OFFSET:
        return None
    return Offset(seconds, (received - sent) / 2 + DATE_RESOLUTION / 2)


class ServerClock:
    """The latest offset seen in any API answer (worker threads write, anyone reads)."""

    def __init__(self) -> None:
        self._offset: Offset | None = None
        self._date: str | None = None  # the last header read: polls repeat it within a second
        self._lock = threading.Lock()

    def observe(self, date: str | None, sent: float, received: float) -> None:
        """One answer's `Date` header; kept if it is readable (the latest wins: our own
        clock may have been stepped since the last one)."""
        if date is None or date == self._date:
            return
        found = offset_from(date, sent, received)
        if found is not None:
            with self._lock:
                self._offset, self._date = found, date

    def offset(self) -> Offset | None:
        with self._lock:
            return self._offset


def search_window(started: float, offset: Offset | None, request_time: float) -> Window:
    """Where, on the server's clock, a task made by a create sent at `started` (our clock)
    has its creation time: the create took at most `request_time` seconds. Unknown skew
    widens the window to `UNSURE_MARGIN` either side."""
    if offset is None:
        shift, margin = 0.0, UNSURE_MARGIN
    else:
        shift, margin = offset.seconds, BASE_MARGIN + offset.error
    return started + shift - margin, started + shift + request_time + margin


def window_record(window: Window) -> tuple[str, str]:
    """The window as a sidecar keeps it: two ISO 8601 UTC times on the server's clock."""
    return utc_iso(window[0]), utc_iso(window[1])


def window_from_record(value: object, now: float) -> Window | None:
    """A window read back from a sidecar (anyone in the group may edit it), or None.

    Two readable times, in order, no more than `MAX_SPAN` apart, within a day of `now`
    (the server's clock may be ahead of ours) and not older than a task lives.
    """
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    start, end = parse_iso(value[0]), parse_iso(value[1])
    if start is None or end is None or not 0 <= end - start <= MAX_SPAN:
        return None
    if end > now + 86400 or start < now - TIME_PAST:
        return None
    return start, end

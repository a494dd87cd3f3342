"""The one retry policy: how long to wait after a transient error, and when the whole
account must wait (a 429, a rejected key). Polls, downloads, submits and task-list
searches all ask here.

Pure: no clock; callers add the delays to their own `now`.
"""

from __future__ import annotations

from dataclasses import dataclass

from wansync.core.errors import AuthRejected, RateLimited, TransientError, WansyncError

MAX_BACKOFF = 300.0
AUTH_PAUSE_MIN = 60.0  # a rejected key: nothing is asked again for at least this long


MAX_DOUBLINGS = 64  # 2**64 outgrows any cap; 2.0 ** 1100 would raise OverflowError


def backoff(
    interval: float, n: int, retry_after: float | None = None, cap: float = MAX_BACKOFF
) -> float:
    """Delay before the next try after the n-th transient error in a row: `interval`,
    doubled each time, at most `cap` (docs/what-happens.md; hooks pass their own cap:
    1 s, 2 s, 4 s … 60 s, docs/hooks.md)."""
    doublings = min(max(0, n - 1), MAX_DOUBLINGS)
    return max(retry_after or 0.0, min(interval * 2.0**doublings, cap))


def as_transient(error: WansyncError) -> TransientError:
    """`error` as a transient one (its code and text kept) when it is of a kind the
    caller did not expect there: retried after the back-off, never a failure."""
    if isinstance(error, TransientError):
        return error
    return TransientError(error.message or type(error).__name__, error.code)


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """`delay`: before this item is tried again. `pause`: every request of the account
    waits this long (None: only this item waits). `auth`: the key was rejected; the
    first request after the pause is a probe."""

    delay: float
    pause: float | None = None
    auth: bool = False


def plan(error: TransientError, errors_in_row: int, interval: float) -> RetryPlan:
    """What to do after `error`, the `errors_in_row`-th transient error of one item."""
    if isinstance(error, AuthRejected):
        pause = max(AUTH_PAUSE_MIN, interval)
        return RetryPlan(pause, pause, auth=True)
    delay = backoff(interval, errors_in_row, error.retry_after)
    if isinstance(error, RateLimited):  # the quota is the account's: everyone waits
        return RetryPlan(delay, error.retry_after or 1.0)
    return RetryPlan(delay)

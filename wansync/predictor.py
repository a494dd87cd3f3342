"""When is a task likely done? Learned from the API's own timestamps, to spend polls well.

With more tasks than the rate can poll every `interval`, round-robin spends the quota on
tasks that cannot be finished yet. The API tells us when each task was submitted and
scheduled and, for finished ones, when they ended: the account's queue and generation
times. A poll that says RUNNING (or PENDING) can then schedule the next one near the
likely end instead of right away, and the polls go where a video is most likely.

The API's times carry no time zone; rather than guess it, we learn the offset between
its clock and ours: every timestamp in an answer is at most "now" on its clock, so the
largest (timestamp - our time) seen recently is a tight lower bound of the offset.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import Any

MIN_SAMPLES = 5
QUANTILE = 0.5  # the median finish: measured best against round-robin (README)
TIME_KEYS = ("submit_time", "scheduled_time", "end_time")


def api_time(value: Any) -> float | None:
    """`2025-09-25 11:07:28.590` as seconds, on the API's own (zone-less) clock."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None).timestamp()
    except ValueError:
        return None


class CompletionModel:
    """Queue and run durations of this account's recent tasks, and the API clock's offset."""

    def __init__(self, window: int = 200) -> None:
        self.queue: deque[float] = deque(maxlen=window)
        self.run: deque[float] = deque(maxlen=window)
        self._offsets: deque[float] = deque(maxlen=window)
        self._offset: float | None = None

    def observe(self, output: dict[str, Any], now_wall: float, finished: bool) -> None:
        """Learn from one answer: the clock offset always, the durations when it finished."""
        times = {k: api_time(output.get(k)) for k in TIME_KEYS}
        latest = max((t for t in times.values() if t is not None), default=None)
        if latest is not None:
            self._offsets.append(latest - now_wall)
            self._offset = max(self._offsets)
        submit, scheduled, end = (times[k] for k in TIME_KEYS)
        if finished and submit is not None and scheduled is not None and end is not None:
            self.queue.append(max(0.0, scheduled - submit))
            self.run.append(max(0.0, end - scheduled))

    @staticmethod
    def _quantile(values: deque[float]) -> float:
        ordered = sorted(values)
        return ordered[int(QUANTILE * (len(ordered) - 1))]

    @property
    def ready(self) -> bool:
        return len(self.run) >= MIN_SAMPLES and self._offset is not None

    def likely_done_at(self, output: dict[str, Any]) -> float | None:
        """Our wall-clock time by which this unfinished task is likely done, if we can tell."""
        if not self.ready:
            return None
        assert self._offset is not None
        scheduled = api_time(output.get("scheduled_time"))
        if scheduled is None:
            submit = api_time(output.get("submit_time"))
            if submit is None:
                return None
            scheduled = submit + self._quantile(self.queue)
        return scheduled + self._quantile(self.run) - self._offset

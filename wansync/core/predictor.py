"""When is a task likely done? Learned from the API's own timestamps, to spend polls well.

With more tasks than the rate can poll every `interval`, round-robin spends the quota on
tasks that cannot be finished yet. The API tells us when each task was submitted and
scheduled and, for finished ones, when they ended: the account's queue and generation
times. A poll that says RUNNING (or PENDING) can then schedule the next one near the
likely end instead of right away, and the polls go where a video is most likely.

Under saturation each poll gets two times (`next_poll`): when it is worth polling again —
the moment the task is done with probability `THETA` given that it was not done at this
poll, i.e. its hazard since the last poll — and when it must be polled at the latest
(`FORCE_AFTER` cycles), which keeps every task polled at least every two cycles.

The API's times carry no time zone; rather than guess it, we learn the offset between
its clock and ours: every timestamp in an answer is at most "now" on its clock, so the
largest (timestamp - our time) seen recently is a tight lower bound of the offset.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from datetime import datetime
from typing import Any

MIN_SAMPLES = 5
QUANTILE = 0.5  # the median finish: measured best against round-robin (docs/performance.md)
TIME_KEYS = ("submit_time", "scheduled_time", "end_time")
THETA = 0.05  # poll again once P(done since this poll) reaches this (docs/performance.md)
FORCE_AFTER = 1.8  # cycles: a forced poll waits at most a slot, so every gap is < 2 cycles
SUMMARY = 21  # order statistics kept per distribution for the queue + run sum


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
        self._sorted: tuple[list[float], list[float]] | None = None  # (queue, run), lazily

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
            self._sorted = None

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

    # -- hazard-ordered polling ------------------------------------------------------
    def _samples(self) -> tuple[list[float], list[float]]:
        if self._sorted is None:
            self._sorted = (sorted(self.queue), sorted(self.run))
        return self._sorted

    def finish_quantile(
        self, output: dict[str, Any], now_wall: float, theta: float
    ) -> float | None:
        """Our wall time by which this task, not done at `now_wall`, is done with probability
        `theta`: the quantile of its finish time conditioned on having run this long."""
        if not self.ready or not self.queue:
            return None
        assert self._offset is not None
        queue, run = self._samples()
        now_api = now_wall + self._offset
        scheduled = api_time(output.get("scheduled_time"))
        if scheduled is not None:
            rest = run[bisect_right(run, now_api - scheduled) :]
            if not rest:
                return now_wall  # longer than any run seen: as likely done as can be
            return scheduled + rest[int(theta * (len(rest) - 1))] - self._offset
        submit = api_time(output.get("submit_time"))
        if submit is None:
            return None
        waited = now_api - submit
        longer = [q for q in _summary(queue) if q > waited] or [waited]
        ends = sorted(q + r for q in longer for r in _summary(run))
        return submit + ends[int(theta * (len(ends) - 1))] - self._offset

    def next_poll(
        self,
        output: dict[str, Any],
        now_wall: float,
        cycle: float,
        interval: float,
        slot: float = 0.0,
    ) -> tuple[float, float | None]:
        """Seconds from now until this unfinished task is worth polling again, and until it
        must be polled (None: the rate covers everyone every `interval`, nothing to ration).

        `slot` (1 / rate) is how late a forced poll can be: the deadline leaves room for it,
        so the gap stays within two cycles even with only a few tasks.
        """
        if cycle <= interval:
            return interval, None
        must = max(interval, min(FORCE_AFTER * cycle, 2 * cycle - slot))
        done = self.finish_quantile(output, now_wall, THETA)
        if done is None:
            return interval, must
        return min(must, max(interval, done - now_wall)), must


def _summary(ordered: list[float]) -> list[float]:
    """At most SUMMARY evenly spaced order statistics: the sum's quantile stays cheap."""
    if len(ordered) <= SUMMARY:
        return ordered
    step = (len(ordered) - 1) / (SUMMARY - 1)
    return [ordered[round(i * step)] for i in range(SUMMARY)]

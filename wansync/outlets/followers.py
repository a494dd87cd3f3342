"""What the world outside the folders is told: the user's hooks and the metrics endpoint.

Both are consumers of the event bus (events.py); this module only builds the metrics
server from the config and gives the daemon a few small calls: `consumers`, `start`,
`started`, `tick`, `finish`; and `api_observer`, which the API client is built with.
Health and task counts are read on the metrics server's thread, so they are plain reads
of a few fields (the loop's last tick, the watch) and a copy of the live tasks: no
lock, no call into the loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wansync.config import Live
from wansync.core import events as ev
from wansync.core.messages import Mailbox
from wansync.core.tracker import Tracker
from wansync.outlets.hooks import Hooks

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on (memory)
    from wansync.outlets.metrics import Metrics


def api_observer(mailbox: Mailbox, enabled: bool) -> Callable[[str, int | None, float], None]:
    """What the API client calls after every request, from whichever thread made it: an
    event for the numbers (emitted at the loop's next tick), when metrics are on."""

    def answered(endpoint: str, status: int | None, seconds: float) -> None:
        if enabled:
            mailbox.note(
                ev.ApiAnswered(at=time.time(), endpoint=endpoint, status=status, seconds=seconds)
            )

    return answered


class Outlets:
    """Hooks always (a reload may set one); metrics when `metrics.listen` is set."""

    def __init__(
        self,
        live: Live,
        hooks: Hooks,
        tracker: Tracker,
        jobs_waiting: Callable[[], int],
        watch_alive: Callable[[], bool],
    ) -> None:
        self.tracker = tracker
        self.jobs_waiting = jobs_waiting
        self.watch_alive = watch_alive
        self.last_tick = time.monotonic()
        self.hooks = hooks  # built first: the pipeline puts its `pending_record` in sidecars
        self.metrics: Metrics | None = None
        if live.cfg.metrics.listen is not None:
            from wansync.outlets.metrics import Metrics

            self.metrics = Metrics(live.cfg.metrics, self._health, self._task_counts)

    def consumers(self) -> list[ev.Consumer]:
        """The bus consumers, after the daemon's own (files, log, job slots)."""
        found: list[ev.Consumer] = [self.hooks.consume]
        if self.metrics is not None:
            found.append(self.metrics.consume)
        return found

    def start(self) -> None:
        """Bind the metrics port (a ConfigError naming `metrics.listen` if it cannot)."""
        if self.metrics is not None:
            self.metrics.start()

    def started(self) -> None:
        """The start-up scan is done: run the hooks final sidecars say are still pending."""
        self.hooks.resume_pending()

    def tick(self, mono: float) -> None:
        self.last_tick = mono

    def finish(
        self,
        wait_for_hooks: bool,
        deadline: float | None,
        stopping: Callable[[], bool],
        deliver: Callable[[], None],
    ) -> None:
        """After the loop. `once` waits for its hooks (docs/hooks.md) unless told to stop
        or out of time, and `deliver` (the loop's followers take what threads reported)
        runs as their results come, so `hook.ran` is logged and counted. Then running
        hooks are killed (they stay `pending`), what was reported until then is
        delivered too, and the metrics server stops."""
        while wait_for_hooks and not self.hooks.wait(0.2):
            deliver()
            if stopping() or (deadline is not None and time.monotonic() >= deadline):
                break
        self.hooks.stop(kill=True)
        deliver()
        if self.metrics is not None:
            self.metrics.stop()

    def _health(self) -> tuple[bool, str]:
        from wansync.outlets.metrics import health_of  # loaded already: only a metrics server asks

        return health_of(self.last_tick, self.watch_alive(), time.monotonic())

    def _task_counts(self) -> dict[str, int]:
        states = [task.state for task in list(self.tracker.tasks.values())]
        return {
            "queued": self.jobs_waiting(),
            "polling": states.count("polling"),
            "downloading": states.count("downloading"),
        }

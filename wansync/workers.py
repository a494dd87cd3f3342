"""A few daemon threads reading work from a queue: the daemon's only concurrency."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Workers:
    """A few daemon threads reading jobs from a queue; they never block the exit."""

    name: str
    count: int
    job: Callable[[Any], None]
    jobs: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self) -> None:
        while True:
            item = self.jobs.get()
            if item is None:
                return
            self.job(item)

    def submit(self, item: Any) -> None:
        self.jobs.put(item)

    def stop(self, grace: float) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + grace
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

"""The loop's self-pipe: `set` always wakes; `nudge` only when the sleep would be too long."""

from __future__ import annotations

import threading
import time

from tests.helpers import wait_until
from wansync.run.waker import AWAKE, Waker


def sleep_in_thread(waker: Waker, timeout: float) -> tuple[threading.Thread, list[bool]]:
    """A sleeper like the main loop: returns once it is inside `wait`."""
    woken: list[bool] = []
    thread = threading.Thread(target=lambda: woken.append(waker.wait(timeout)))
    thread.start()
    wait_until(lambda: waker._asleep_until != AWAKE, 5, "the sleeper to be inside wait")
    return thread, woken


def test_a_nudge_while_the_loop_is_awake_is_never_lost() -> None:
    """Awake (it may have read its queue already): a nudge must make the next wait return."""
    waker = Waker()
    waker.nudge(within=60.0)
    t0 = time.monotonic()
    assert waker.wait(5.0) is True
    assert time.monotonic() - t0 < 1.0


def test_a_nudge_does_not_wake_a_sleeper_that_wakes_soon_anyway() -> None:
    """A sleep shorter than `within` is left alone: the planned wake-up reads the result."""
    waker = Waker()
    thread, woken = sleep_in_thread(waker, 0.5)
    waker.nudge(within=5.0)
    thread.join(5)
    assert woken == [False]
    assert waker._asleep_until == AWAKE


def test_a_nudge_wakes_a_long_sleep_at_once() -> None:
    """A sleep longer than `within` is cut short."""
    waker = Waker()
    thread, woken = sleep_in_thread(waker, 30.0)
    t0 = time.monotonic()
    waker.nudge(within=0.05)
    thread.join(5)
    assert woken == [True]
    assert time.monotonic() - t0 < 2.0


def test_set_always_wakes() -> None:
    """`set` (threads, signal handlers) wakes whatever the sleep."""
    waker = Waker()
    thread, woken = sleep_in_thread(waker, 0.5)
    waker.set()
    thread.join(5)
    assert woken == [True]

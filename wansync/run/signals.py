"""Signals first: a SIGTERM that arrives while the daemon starts is a stop, not a kill.

The daemon commands install these handlers before anything else is imported (see
`__main__.py`); they only record the signal. When the daemon is ready to act on them it
`attach`es its own handlers, and a stop or reload that came in the meantime is replayed
at once. So a storm of SIGTERMs from the moment wansync's first line runs still ends
with the documented exit code (docs/what-happens.md).

Before that line there is only the interpreter's own start-up (tens of milliseconds),
where no Python code can catch anything. A launcher that must see an exit code even then
starts wansync with SIGTERM and SIGINT *blocked* (a blocked signal stays pending across
`exec`); `install_early` unblocks them once its handlers are in place, so a stop sent at
any moment acts then. Without that unblocking, a daemon started with them blocked would
never see a stop at all.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

Handler = Callable[[int, FrameType | None], None]
STOP = (signal.SIGTERM, signal.SIGINT)
CAUGHT = (*STOP, signal.SIGHUP)
_early: set[int] = set()


def _record(signum: int, frame: FrameType | None) -> None:
    _early.add(signum)


def install_early() -> None:
    """Record SIGTERM, SIGINT and SIGHUP until the daemon attaches its own handlers; then
    let them in, if whoever started us blocked them (one that came meanwhile is pending
    and is recorded now)."""
    for signum in CAUGHT:
        signal.signal(signum, _record)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)


def attach(on_stop: Handler, on_reload: Handler) -> None:
    """The daemon's handlers from now on; what arrived before them is handled now."""
    for signum in STOP:
        signal.signal(signum, on_stop)
    signal.signal(signal.SIGHUP, on_reload)
    early = set(_early)
    _early.clear()
    if early & set(STOP):
        on_stop(min(early & set(STOP)), None)
    if signal.SIGHUP in early:
        on_reload(signal.SIGHUP, None)


def ignore_stops() -> None:
    """The daemon has stopped: further SIGTERM/SIGINT are moot. Python's finalization puts
    back the default (fatal) action for every handler it installed, but leaves SIG_IGN: so a
    storm during exit cannot turn exit 0 into death by signal."""
    for signum in STOP:
        signal.signal(signum, signal.SIG_IGN)

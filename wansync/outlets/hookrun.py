"""One try of a hook command: start it alone, stream its output to the log, end it on time.

What is guaranteed about the command's processes: it runs in a session, so a process
group, of its own. At its timeout, or when the daemon stops, the whole group is sent
SIGTERM and, `KILL_AFTER` s later, SIGKILL. However the try ends — the command exited
too — whatever is still in the group is then sent SIGTERM, and SIGKILL `STRAY_GRACE` s
later: `sleep 300 &` in a hook ends with the hook, under `run` and under `once`.
Not guaranteed: a child that leaves the group (`setsid`, `setpgid`, a daemon that
detaches itself) escapes it. Under systemd the service's cgroup ends such a child when
the service stops (the default `KillMode=control-group`), not when the hook ends.

Output (stdout and stderr, merged) is read as it comes, never held whole: each line is
handed to `on_line` until `MAX_LOGGED_BYTES` have been, then only drained; the last
`TAIL_LINES` lines are kept for the error line of a hook that is given up.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL to the group
TAIL_LINES = 20
MAX_LINE = 1000  # characters of one line kept; a longer line is cut
MAX_LOGGED_BYTES = 64 * 1024  # per try; the rest of the output is drained unlogged
EXIT_GRACE = 0.5  # after the command exits, how long its children may hold the pipe open
STRAY_GRACE = 1.0  # between SIGTERM and SIGKILL to what is left in the group at the end
_CHUNK = 65536


@dataclass
class TryResult:
    """How one try ended: `ok` only on exit code 0; `stopped` when the daemon is stopping."""

    exit_code: int | None = None  # None: timed out, could not start, or stopped
    reason: str = ""  # why it is not ok, for the log: "exit code 3", "timed out after 60 s"
    tail: list[str] = field(default_factory=list)
    stopped: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.stopped


class _Lines:
    """Splits a byte stream into lines with bounded memory and a bounded amount logged."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.partial = b""
        self.logged = 0
        self.truncated = False
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    def feed(self, data: bytes) -> None:
        *lines, self.partial = (self.partial + data).split(b"\n")
        for raw in lines:
            self._line(raw)
        while len(self.partial) > MAX_LINE * 4:  # no end in sight: take it as one line
            self._line(self.partial[: MAX_LINE * 4])
            self.partial = self.partial[MAX_LINE * 4 :]

    def close(self) -> None:
        if self.partial:
            self._line(self.partial)
            self.partial = b""

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if len(text) > MAX_LINE:
            text = text[:MAX_LINE] + "…"
        self.tail.append(text)
        if self.logged < MAX_LOGGED_BYTES:
            self.logged += len(raw) + 1
            self.on_line(text)
        elif not self.truncated:
            self.truncated = True
            self.on_line(f"[wansync: output beyond {MAX_LOGGED_BYTES} bytes is not logged]")


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def end_group(pgid: int, grace: float = STRAY_GRACE) -> None:
    """SIGTERM whatever is left in the group, and SIGKILL it if it is there `grace` s on."""
    if not _group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)


def run_try(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    on_line: Callable[[str], None],
    stop: threading.Event,
) -> TryResult:
    """Run `argv` once to its end, its timeout, or `stop`; never raises for the command's sake."""
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        reason = f"cannot start {argv[0]!r}: {exc.strerror or exc}"
        return TryResult(reason=reason, tail=[reason])
    lines = _Lines(on_line)
    try:
        ended = _Supervisor(proc, timeout, lines, stop).run()
    finally:
        lines.close()
        if proc.stdout is not None:
            proc.stdout.close()
        end_group(proc.pid)  # `cmd &` in a hook ends with the try
        proc.wait()
    tail = list(lines.tail)
    if ended == "stopped":
        return TryResult(reason="stopped with the daemon", tail=tail, stopped=True)
    if ended == "timeout":
        return TryResult(reason=f"timed out after {timeout:g} s", tail=tail)
    code = proc.returncode
    return TryResult(exit_code=code, reason="" if code == 0 else f"exit code {code}", tail=tail)


class _Supervisor:
    """Reads a running command's output until it is done; `run()` says how it ended:
    "exited", "timeout" or "stopped".

    Done means: it exited and its output ended (or its children still hold the pipe
    `EXIT_GRACE` later); or, once we are ending it, its whole group is gone (or SIGKILL
    was sent a second ago: a zombie nobody reaps must not hold us forever).
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], timeout: float, lines: _Lines, stop: threading.Event
    ) -> None:
        self.proc, self.lines, self.stop = proc, lines, stop
        self.deadline = time.monotonic() + timeout
        self.ended = "exited"
        self.term_at = self.kill_at = self.exited_at = 0.0
        self.eof = False

    def run(self) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while not self._done(time.monotonic()):
                if self.eof:
                    time.sleep(0.05)  # output ended before the command: wait for its exit
                elif sel.select(timeout=0.05) and not _read(fd, self.lines):
                    self.eof = True
                    sel.unregister(fd)
        return self.ended

    def _escalate(self, now: float) -> None:
        """At the deadline or a stop, SIGTERM the group; `KILL_AFTER` s later, SIGKILL."""
        if not self.term_at and (now >= self.deadline or self.stop.is_set()):
            self.ended = "stopped" if self.stop.is_set() else "timeout"
            _signal_group(self.proc.pid, signal.SIGTERM)
            self.term_at = now
        if self.term_at and not self.kill_at and now >= self.term_at + KILL_AFTER:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.kill_at = now

    def _done(self, now: float) -> bool:
        self._escalate(now)
        if self.proc.poll() is not None:
            self.exited_at = self.exited_at or now
            if not self.term_at and (self.eof or now - self.exited_at > EXIT_GRACE):
                return True
        if not self.term_at:
            return False
        return not _group_alive(self.proc.pid) or bool(self.kill_at and now > self.kill_at + 1)


def _read(fd: int, lines: _Lines) -> bool:
    """Read what is there; False at end of output."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return True
    if not data:
        return False
    lines.feed(data)
    return True

"""A real pseudo-terminal for a `wansync` subprocess, and a terminal emulator to replay it.

What a user sees is what a terminal makes of the bytes, not the bytes: so the tests feed
everything the command wrote into `pyte` and look at the resulting screen.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading
from typing import Any

import pyte

from tests.helpers import sigint_default

COLUMNS, LINES = 120, 50


class PtyRun:
    """`python -m wansync ARGS` with stdout and stderr on a pty of COLUMNS x LINES."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        clean = {k: v for k, v in (env or os.environ).items() if k not in ("COLUMNS", "LINES")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wansync", *args],
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env={**clean, "TERM": "xterm"},
            start_new_session=True,
            preexec_fn=sigint_default,  # Ctrl-C must work even under `pytest &`
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every writer has closed the pty
                return
            if not chunk:
                return
            self.output.extend(chunk)

    def text(self) -> str:
        return bytes(self.output).decode("utf-8", "replace")

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        os.close(self.master)
        return code


def screen(*chunks: str) -> list[str]:
    """The lines a COLUMNS x LINES terminal shows after receiving `chunks` in order."""
    scr: Any = pyte.Screen(COLUMNS, LINES)
    stream = pyte.Stream(scr)
    for chunk in chunks:
        stream.feed(chunk)
    return [line.rstrip() for line in scr.display]


def cells(*chunks: str, columns: int = COLUMNS) -> list[list[str]]:
    """What each cell of each row of the terminal holds after `chunks`: one entry per
    column, so a wide character is followed by an empty cell (where text really sits)."""
    scr: Any = pyte.Screen(columns, LINES)
    stream = pyte.Stream(scr)
    for chunk in chunks:
        stream.feed(chunk)
    return [[scr.buffer[y][x].data for x in range(columns)] for y in range(LINES)]

"""What a command prints for a person: each line with its outside strings made visible.

A file name, a sidecar's error message or an API answer may hold ESC, other control
characters or bidi overrides. Every line a command prints goes through `say` (stderr)
or `out` (stdout), which write it `log.visible`: an ESC shows as `\\x1b` and a newline
as `\\n`, so nothing a producer or the remote chose can move the cursor, clear the
screen, forge a second line or reorder what a person reads.
"""

from __future__ import annotations

import sys

from wansync import log


def say(text: object) -> None:
    """One line on stderr: a message, a warning, an error."""
    print(log.visible(str(text)), file=sys.stderr)


def out(text: object) -> None:
    """One line on stdout: a result (a path, a status line)."""
    print(log.visible(str(text)))


def out_lines(text: str) -> None:
    """A block of lines on stdout (a table, a report), each line made visible."""
    for line in text.splitlines():
        out(line)

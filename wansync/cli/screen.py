"""A block of text redrawn in place on a terminal, without touching the lines above it.

`demo` and `status --watch` both show a live table. Redrawing means moving the cursor
back up over exactly the lines the previous frame took, so every frame is cut to the
terminal's width (a wrapped line would take two rows and the count would be wrong) and
height (rows scrolled off the top cannot be reached again).

Widths are what a terminal shows, not `len()`: a Chinese or Japanese character takes
two columns, a combining accent none (`width`, `cut`, `pad`; the standard library's
`unicodedata` tables, no dependency).
"""

from __future__ import annotations

import shutil
import unicodedata
from typing import TextIO

CLEAR_BELOW = "\x1b[J"
ELLIPSIS = "…"


def char_width(char: str) -> int:
    """Columns one character takes on a terminal: 2 for wide (East Asian), 0 for marks."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def width(text: str) -> int:
    """Columns `text` takes on a terminal."""
    return sum(char_width(c) for c in text)


def cut(text: str, columns: int) -> str:
    """`text` in at most `columns` terminal columns, ending in `…` when cut."""
    if width(text) <= columns:
        return text
    room, kept = max(columns - 1, 0), []
    for char in text:
        room -= char_width(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS if columns > 0 else ""


def pad(text: str, columns: int) -> str:
    """`text` padded with spaces to `columns` terminal columns (`str.ljust` counts chars)."""
    return text + " " * max(columns - width(text), 0)


def _up(rows: int) -> str:
    """To the start of the line `rows` lines up (`ESC[0A` would move one line on most)."""
    return f"\r\x1b[{rows}A" if rows > 0 else "\r"


def fit(text: str, columns: int, rows: int) -> list[str]:
    """The lines of `text`, each cut to `columns - 1`, at most `rows` of them."""
    room = max(columns - 1, 10)
    lines = [cut(line, room) for line in text.splitlines()]
    if len(lines) > rows:
        hidden = len(lines) - rows + 1
        lines = [*lines[: rows - 1], f"... {hidden} more lines (make the terminal taller)"[:room]]
    return lines


class LiveBlock:
    """Draw a frame; the next `draw` replaces it. `out` must be a terminal for in-place."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._drawn = 0  # rows the last frame took; the cursor is on the row below them

    def columns(self) -> int | None:
        """The terminal's width, or None off a terminal (lines are then never cut)."""
        return shutil.get_terminal_size().columns if self.tty else None

    def draw(self, text: str) -> None:
        """On a terminal, replace the previous frame; otherwise print the frame and a blank line."""
        if not self.tty:
            self.out.write(text + "\n\n")
            self.out.flush()
            return
        size = shutil.get_terminal_size()
        lines = fit(text, size.columns, max(size.lines - 1, 3))
        self.out.write(_up(self._drawn) + CLEAR_BELOW + "".join(line + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)

"""`wansync demo` as a user sees it: its real output replayed through a terminal emulator."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers import wait_until
from tests.tty import PtyRun, screen

BEFORE = "a line printed before the demo started"


def _demo_folder(text: str) -> Path:
    match = re.search(r"wansync demo in (\S+)", text)
    assert match, text
    return Path(match.group(1))


def test_demo_on_a_terminal_keeps_the_lines_above_its_table() -> None:
    """The live table is redrawn in place: nothing above it is lost, one table remains."""
    run = PtyRun("demo")
    code = run.wait(120)
    text = run.text()
    folder = _demo_folder(text)
    try:
        assert code == 0, text[-2000:]
        shown = screen(BEFORE + "\r\n", text)
        assert shown[0] == BEFORE
        assert shown[1].startswith("wansync demo in ")
        assert shown[2].strip().startswith("simulator at http://127.0.0.1:")
        assert sum(line.startswith("WHERE") for line in shown) == 1, "\n".join(shown)
        assert not any(re.search(r"\s-\d+(\.\d+)?s\b", line) for line in shown)
        last = [line for line in shown if line][-1]
        assert last.startswith(f"demo finished; everything is in {folder} "), "\n".join(shown)
        assert len(list((folder / "outbox").glob("*.mp4"))) == 5  # kept, as it says
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_demo_off_a_terminal_keeps_its_columns() -> None:
    """Piped, one line per change, the state column aligned even for long names."""
    result = subprocess.run(
        [sys.executable, "-m", "wansync", "demo"], capture_output=True, text=True, timeout=120
    )
    folder = _demo_folder(result.stdout)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "\x1b[" not in result.stdout
        live = result.stdout.split("\nVideos", 1)[0].splitlines()[3:]  # after the header
        changes = [line for line in live if line.strip()]
        assert any("portrait-from-picture" in line for line in changes)
        columns = {len(re.sub(r"^(  \S+ +).*", r"\1", line)) for line in changes}
        assert len(columns) == 1, changes
        last = result.stdout.strip().splitlines()[-1]
        assert last.startswith(f"demo finished; everything is in {folder} ") and folder.is_dir()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_ctrl_c_ends_the_demo_with_one_line_saying_where_its_files_are() -> None:
    """Interrupted: no traceback, exit 130, and the folder it leaves named."""
    run = PtyRun("demo")
    wait_until(lambda: "WHERE" in run.text(), 60, "the first frame")
    os.killpg(run.proc.pid, signal.SIGINT)
    code = run.wait(60)
    text = run.text()
    folder = _demo_folder(text)
    try:
        assert code == 130, text[-2000:]
        assert "Traceback" not in text
        assert f"demo interrupted; what it made so far is in {folder}" in text
    finally:
        shutil.rmtree(folder, ignore_errors=True)

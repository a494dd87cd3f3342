"""A wall-clock step for a process under test: `clockstep.c`, built here, loaded by LD_PRELOAD.

The shim shifts CLOCK_REALTIME (and its coarse twin, `gettimeofday`, `time`) by the
seconds in a file and leaves the monotonic clock real, which libfaketime cannot do for
Python 3.11 (its `time.sleep` failed with EINVAL). A test builds it into its own temp
folder with the system's `cc` (skipped when there is none), starts processes with
`ClockStep.env()`, and steps their clock with `set()` while they run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SOURCE = Path(__file__).with_name("clockstep.c")
READ_EVERY = 0.1  # seconds: the shim reads the offset file again at most this often
NO_COMPILER = "no C compiler (cc) to build the clock-step shim (tests/clockstep/clockstep.c)"


def compiler() -> str | None:
    """The system's C compiler, if there is one."""
    return shutil.which("cc")


class ClockStep:
    """The built shim and the offset file every process started with `env()` reads."""

    def __init__(self, library: Path, offset_file: Path) -> None:
        self.library = library
        self.offset_file = offset_file
        self.offset = 0.0

    @classmethod
    def build(cls, folder: Path) -> ClockStep:
        """Compile the shim into `folder` (skip the test when there is no C compiler)."""
        cc = compiler()
        if cc is None:
            pytest.skip(NO_COMPILER)
        folder.mkdir(parents=True, exist_ok=True)
        library = folder / "clockstep.so"
        built = subprocess.run(
            [cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(library), str(SOURCE), "-ldl"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert built.returncode == 0, f"cc failed to build the clock-step shim: {built.stderr}"
        step = cls(library, folder / "clock-offset")
        step.set(0.0)
        return step

    def env(self) -> dict[str, str]:
        """The variables that put a process on this clock."""
        return {"LD_PRELOAD": str(self.library), "CLOCKSTEP_FILE": str(self.offset_file)}

    def set(self, seconds: float) -> None:
        """Put the wall clock `seconds` off the real one (written whole: temp, then rename);
        each process sees it within `READ_EVERY` of its next look at the clock."""
        tmp = self.offset_file.with_name(f".{self.offset_file.name}.tmp")
        tmp.write_text(f"{seconds!r}\n")
        os.replace(tmp, self.offset_file)
        self.offset = seconds

    def step(self, seconds: float) -> None:
        """Move the wall clock by `seconds` from where it is now."""
        self.set(self.offset + seconds)

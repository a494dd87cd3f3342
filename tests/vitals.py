"""What the poison and soak tests watch from outside the daemon: memory, and the world
beyond its three folders. Linux /proc only; nothing here touches the daemon's code.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import signal
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

MB = 1024 * 1024


def vm_bytes(pid: int, field: str) -> int | None:
    """`VmRSS`, `VmHWM`, … of a live process in bytes; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class MemoryGuard:
    """Samples a process's RSS; SIGKILLs it past `kill_above` bytes.

    A safety belt for a shared machine: a daemon that follows an alias bomb grows by
    ~100 MB/s and ignores SIGTERM. The test still fails on the 100 MB bound; this only
    stops it from taking the machine down with it.
    """

    def __init__(self, pid: int, kill_above: int, every: float = 0.1) -> None:
        self.pid = pid
        self.kill_above = kill_above
        self.every = every
        self.peak = 0
        self.killed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            rss = vm_bytes(self.pid, "VmRSS")
            if rss is None:
                return
            self.peak = max(self.peak, rss)
            if rss > self.kill_above:
                self.killed = True
                os.kill(self.pid, signal.SIGKILL)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def tree_state(
    root: Path, skip: Iterable[Path], skip_names: str = "daemon-*.log"
) -> dict[str, tuple[str, str]]:
    """Every entry under `root` but those under `skip` (and files named like `skip_names`,
    the daemons' logs): kind and content hash or link target.

    Taken before and after a run, two equal states prove nothing was written, created,
    replaced or removed there (links are read, never followed).
    """
    skipped = {p.resolve() for p in skip}
    state: dict[str, tuple[str, str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        dirs[:] = [d for d in dirs if (here / d).resolve() not in skipped]
        for entry in [*dirs, *files]:
            path = here / entry
            if fnmatch.fnmatch(entry, skip_names) or (
                path.resolve() in skipped and not path.is_symlink()
            ):
                continue
            st = path.lstat()
            key = os.fsdecode(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                state[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                state[key] = ("file", _sha256(path))
            elif stat.S_ISDIR(st.st_mode):
                state[key] = ("dir", "")
            else:
                state[key] = ("other", oct(st.st_mode))
    return state


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

"""sd_notify: one datagram to `$NOTIFY_SOCKET` per message; a no-op outside systemd."""

from __future__ import annotations

import os
import socket


def status_line(counts: dict[str, int]) -> str:
    """systemd's STATUS= line: `3 jobs waiting, 12 polling, 2 downloading, 40 done, 1 failed`."""
    jobs = f"{counts['jobs']} jobs waiting, " if counts["jobs"] else ""
    return (
        f"{jobs}{counts['polling']} polling, {counts['downloading']} downloading, "
        f"{counts['done']} done, {counts['failed']} failed"
    )


class Notifier:
    """Tells systemd READY/STATUS/WATCHDOG/STOPPING/RELOADING; silent when not under systemd."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and ours else None
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; False if it could not be delivered."""
        if not self.address:
            return False
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def reloading(self, monotonic_usec: int) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

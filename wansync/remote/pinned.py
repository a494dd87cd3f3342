"""Connections to exactly the addresses the URL check approved (no second DNS lookup).

urllib3 looks a host name up again when it connects, so a name that resolved to a public
address when `urlcheck` checked it could answer 127.0.0.1 a moment later (DNS rebinding)
and the download would read an internal service. Here a pool keeps the host *name* —
the Host header, TLS SNI and the certificate check all use it — but every new
connection goes to the checked addresses, in the order the resolver gave them, and to
nothing else: the address is taken as a number (`AI_NUMERICHOST`), never looked up.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3._collections import RecentlyUsedContainer
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

POOLS = 8  # (scheme, host, port, addresses) kept open at once; the oldest is closed


def _connect(conn: HTTPConnection, addresses: tuple[str, ...]) -> socket.socket:
    """A socket to the first of `addresses` that answers, with urllib3's options and
    errors (`ConnectTimeoutError`, `NewConnectionError`: its retry knows them)."""
    last: OSError | None = None
    for address in addresses:
        try:
            family, kind, proto, _, sockaddr = socket.getaddrinfo(
                address, conn.port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            last = exc
            continue
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    if isinstance(last, TimeoutError):
        raise ConnectTimeoutError(conn, f"connection to {conn.host} timed out")
    raise NewConnectionError(conn, f"cannot connect to {conn.host}: {last}")


class PinnedHTTPConnection(HTTPConnection):
    """Plain HTTP to `addresses` only; `host` stays the name (the Host header)."""

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        return _connect(self, self.addresses)


class PinnedHTTPSConnection(HTTPSConnection):
    """HTTPS to `addresses` only; SNI and the certificate are checked against `host`."""

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        return _connect(self, self.addresses)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = PinnedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = PinnedHTTPSConnection


class PinnedPools:
    """Connection pools keyed by (scheme, host, port, checked addresses): a keep-alive
    connection is only ever reused for the addresses it was opened to. Thread-safe."""

    def __init__(self, ca_certs: str, **pool_kw: Any) -> None:
        self._ca_certs = ca_certs  # HTTPS pools only: a plain connection takes no TLS options
        self._pool_kw = pool_kw
        self._pools: RecentlyUsedContainer[tuple[Any, ...], ConnectionPool] = RecentlyUsedContainer(
            POOLS, dispose_func=lambda pool: pool.close()
        )
        self._lock = threading.Lock()

    def get(
        self, scheme: str, host: str, port: int | None, addresses: tuple[str, ...]
    ) -> HTTPConnectionPool:
        """The pool for `host` whose connections go to `addresses` (made on first use)."""
        key = (scheme, host, port, addresses)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                if scheme == "https":
                    pool = _HTTPSPool(
                        host, port, ca_certs=self._ca_certs, addresses=addresses, **self._pool_kw
                    )
                else:
                    pool = _HTTPPool(host, port, addresses=addresses, **self._pool_kw)
                self._pools[key] = pool
        assert isinstance(pool, HTTPConnectionPool)
        return pool

    def clear(self) -> None:
        self._pools.clear()

"""`wansync simulate`: its argument types and a start that fails in one line.

Everything a user can get wrong here (a port out of range or taken, a certificate that is
missing or not PEM) ends as one line naming the option, the file or the address.
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
from pathlib import Path

from wansync.core.errors import UsageError

MAX_PEM = 1024 * 1024


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free one) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: 0, 1, 2 …"""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def _pem(option: str, name: str, markers: tuple[str, ...], what: str) -> None:
    """Refuse a missing, unreadable or non-PEM file before OpenSSL's terse errors can."""
    path = Path(name)
    try:
        with path.open("rb") as f:
            head = f.read(MAX_PEM)
    except OSError as exc:
        raise UsageError(f"{option}: {name}: {(exc.strerror or str(exc)).lower()}") from None
    if not any(m.encode() in head for m in markers):
        raise UsageError(f"{option}: {name}: not a PEM {what} (no '-----BEGIN {markers[0]}')")


def tls_files(cert: str | None, key: str | None) -> tuple[str, str | None] | None:
    """The checked (certificate, key) pair, or None for plain HTTP."""
    if cert is None:
        if key is not None:
            raise UsageError("--tls-key: needs --tls-cert (the certificate it belongs to)")
        return None
    _pem("--tls-cert", cert, ("CERTIFICATE-----",), "certificate")
    _pem(
        "--tls-key" if key else "--tls-cert",
        key or cert,
        ("PRIVATE KEY-----",),
        "private key" if key else "private key (give it with --tls-key, or append it)",
    )
    return cert, key


def run(args: argparse.Namespace) -> int:
    """Start the simulator in the foreground until Ctrl-C; exit 2 with one line if it cannot."""
    from wansync.simulator import Simulator

    tls = tls_files(args.tls_cert, args.tls_key)
    try:
        sim = Simulator(
            tls=tls,
            host=args.host,
            port=args.port,
            key=args.key,
            running_polls=args.polls,
            seconds=args.seconds,
        )
    except ssl.SSLError as exc:
        files = " and ".join(f for f in (args.tls_cert, args.tls_key) if f)
        if exc.reason == "KEY_VALUES_MISMATCH":
            why = "the private key does not belong to the certificate"
        else:  # OpenSSL says `[SSL] PEM lib`: the markers are there, the content is not
            why = f"not a valid PEM certificate and private key ({exc.reason or exc})"
        raise UsageError(f"--tls-cert: {files}: {why}") from None
    except OSError as exc:
        raise UsageError(f"simulate: {exc.strerror or exc}") from None
    print(f"DashScope simulator on {sim.url}  (key: {args.key})", flush=True)  # line 1: URL
    print("ids containing 'fail', 'cancel' or 'unknown' end that way; others succeed", flush=True)
    print("stop it with Ctrl-C (or `kill %1` if started with &)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sim.serve_forever()
    return 0

"""coturn's command line for the tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

LAB_FLAGS = ("--fingerprint", "--no-software-attribute")
"""Flags of the lab's own coturn (``images/bin/turn-entrypoint``) that the tests' coturns may add."""


def turnserver_command(
    turnserver: str,
    workdir: Path,
    *,
    listening_ips: Sequence[str],
    port: int,
    relay_ports: range,
    secret: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """coturn listening on ``port`` (and, by default, ``port + 1``: the alternate port) of ``listening_ips``
    (the first is the primary address and the relay address), relaying from ``relay_ports``; UDP without TLS or
    DTLS, long-term credentials for user natlab, logging to stdout; then the ``extra`` flags.

    ``-n``: no config file (Debian's /etc/turnserver.conf disables RFC 5780 and logs to syslog). The pid file
    and the SQLite user database are kept in ``workdir``: the defaults, under /var, need root and are shared.
    """
    return [
        turnserver, "-n",
        *(arg for ip in listening_ips for arg in ("--listening-ip", ip)),
        "--relay-ip", listening_ips[0], "--listening-port", str(port),
        "--min-port", str(relay_ports.start), "--max-port", str(relay_ports.stop - 1),
        "--lt-cred-mech", "--realm", "natlab", "--user", f"natlab:{secret}",
        "--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout",
        "--pidfile", str(workdir / "turnserver.pid"), "--userdb", str(workdir / "turndb"),
        *extra,
    ]  # fmt: skip

"""The ``nft`` command, run as a subprocess: apply a script, list natlab's table."""

from __future__ import annotations

import ipaddress

from nat.render import BLOCK_SET, TABLE
from nat.tools import run_tool

TIMEOUT = 10.0
"""Seconds any one ``nft`` call may take; it normally takes milliseconds."""


class NftError(RuntimeError):
    """``nft`` refused a command or could not be run; the message carries its stderr."""


def run_nft(*args: str, script: str | None = None, timeout: float = TIMEOUT) -> str:
    """Run ``nft ARGS`` (feeding ``script`` on stdin); its stdout, or ``NftError`` with its stderr."""
    return run_tool(["nft", *args], NftError, "nftables", timeout, stdin=script)


def apply(script: str) -> None:
    """Apply ``script`` as one transaction (``nft -f -``): all of it or, on error, none of it."""
    run_nft("-f", "-", script=script)


def list_table(timeout: float = TIMEOUT) -> str:
    """natlab's table as the kernel holds it now."""
    return run_nft("list", "table", *TABLE.split(), timeout=timeout)


def block(addresses: list[ipaddress.IPv4Address]) -> None:
    """Drop inbound UDP from these WAN addresses from now on (even on flows already open)."""
    run_nft("add", "element", *TABLE.split(), BLOCK_SET, "{ " + ", ".join(map(str, addresses)) + " }")


def unblock(addresses: list[ipaddress.IPv4Address]) -> None:
    """Let these addresses in again; with none given, empty the whole block list."""
    if addresses:
        run_nft("delete", "element", *TABLE.split(), BLOCK_SET, "{ " + ", ".join(map(str, addresses)) + " }")
    else:
        run_nft("flush", "set", *TABLE.split(), BLOCK_SET)


def list_ruleset() -> str:
    """Every table in this netns, Docker's included."""
    return run_nft("list", "ruleset")

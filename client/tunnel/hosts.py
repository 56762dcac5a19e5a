"""``<id>.natlab`` names in /etc/hosts: a block of lines the agent writes when the tunnel comes up and removes
when it goes down (pure text functions, and the in-place write Docker's bind-mounted /etc/hosts needs)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path

HOSTS_FILE = Path("/etc/hosts")
DOMAIN = "natlab"
BEGIN = "# natlab tunnel: begin (written by the agent, removed at `client tunnel down`)"
END = "# natlab tunnel: end"


def name(peer_id: str) -> str:
    """The overlay name of a host: ``bob.natlab``."""
    return f"{peer_id}.{DOMAIN}"


def without_block(text: str) -> str:
    """``text`` with our block (if any) removed, everything else as it was."""
    lines = text.splitlines(keepends=True)
    kept, inside = [], False
    for line in lines:
        stripped = line.rstrip("\n")
        if stripped == BEGIN:
            inside = True
        elif stripped == END and inside:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def with_block(text: str, addresses: Mapping[str, ipaddress.IPv4Address]) -> str:
    """``text`` with our block replaced by one line per id: ``<overlay address>\\t<id>.natlab``."""
    body = without_block(text)
    if body and not body.endswith("\n"):
        body += "\n"
    lines = [f"{address}\t{name(peer_id)}\n" for peer_id, address in sorted(addresses.items())]
    return body + BEGIN + "\n" + "".join(lines) + END + "\n"


def write_in_place(path: Path, text: str) -> None:
    """Rewrite ``path`` in place: Docker bind-mounts /etc/hosts, so it cannot be replaced by a rename."""
    if path.read_text(encoding="utf-8") != text:
        with path.open("w", encoding="utf-8") as file:
            file.write(text)

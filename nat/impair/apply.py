"""Apply a router's impairments to the kernel: nft (loss, duplication), tc (rate), iptables (the delay line's
feed). Each tool's error reaches the caller with its stderr verbatim, as :class:`ApplyError`.

The three are applied one after the other, each in one step of its own (an nft transaction, one tc
command per interface, one ``iptables-restore``), so a failure part-way leaves the earlier ones in force;
the caller reports it and does not record the new settings.
"""

from __future__ import annotations

from nat.impair.model import Impairments
from nat.impair.render import directions, render_nft, render_queue, render_rate, root_qdisc_kind
from nat.tools import run_tool

TIMEOUT = 10.0
"""Seconds any one tool may take; each normally takes milliseconds."""


class ApplyError(RuntimeError):
    """A tool refused the impairments or could not be run; the message carries its stderr."""


def _run(command: list[str], package: str, stdin: str | None = None) -> str:
    return run_tool(command, ApplyError, package, TIMEOUT, stdin=stdin)


def apply_impairments(impairments: Impairments, wan_ifname: str, lan_ifname: str) -> None:
    """Make the kernel do ``impairments`` (replacing whatever natlab applied before) on a router whose WAN
    and LAN interfaces are these. Clear impairments remove natlab's tables, chains and qdiscs."""
    restore = render_queue(impairments, wan_ifname, lan_ifname, _run(["iptables", "-t", "raw", "-S"], "iptables"))
    if restore is not None:
        _run(["iptables-restore", "--noflush"], "iptables", stdin=restore)
    _run(["nft", "-f", "-"], "nftables", stdin=render_nft(impairments, wan_ifname, lan_ifname))
    for way in directions(impairments, wan_ifname, lan_ifname):
        shaper = render_rate(way.link, way.egress)
        if shaper is not None:
            _run(shaper, "iproute2")
        elif root_qdisc_kind(_run(["tc", "qdisc", "show", "dev", way.egress, "root"], "iproute2")) == "tbf":
            _run(["tc", "qdisc", "del", "dev", way.egress, "root"], "iproute2")

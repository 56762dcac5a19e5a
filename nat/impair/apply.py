"""Placeholder for slice A's kernel side: only the delay line's feed (the iptables raw NFQUEUE chain).

(Branch impair-b: slice A's ``nat/impair/apply.py`` replaces this file at merge; ``apply_impairments`` keeps its
name and meaning, and adds nft loss and duplication and tc rate.)
"""

from __future__ import annotations

from nat.impair.model import Impairments
from nat.impair.render import QUEUE_DOWN, QUEUE_UP
from nat.tools import run_tool

CHAIN = "NATLAB_IMPAIR"
TIMEOUT = 10.0


class ApplyError(RuntimeError):
    """A tool refused the impairments; the message carries its stderr."""


def _iptables(*args: str) -> str:
    return run_tool(["iptables", "-t", "raw", *args], ApplyError, "iptables", TIMEOUT)


def apply_impairments(impairments: Impairments, wan_ifname: str, lan_ifname: str) -> None:
    """Point the directions that need the delay line at its queues: raw PREROUTING, before conntrack."""
    chains = _iptables("-S")
    if f"-N {CHAIN}" not in chains.splitlines():
        _iptables("-N", CHAIN)
    _iptables("-F", CHAIN)
    if f"-A PREROUTING -j {CHAIN}" not in chains.splitlines():
        _iptables("-I", "PREROUTING", "1", "-j", CHAIN)
    for link, ifname, queue in ((impairments.up, lan_ifname, QUEUE_UP), (impairments.down, wan_ifname, QUEUE_DOWN)):
        if link.needs_delay_line:
            _iptables("-A", CHAIN, "-i", ifname, "-j", "NFQUEUE", "--queue-num", str(queue), "--queue-bypass")

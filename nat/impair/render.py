"""Render a router's impairments into what the kernel does: pure text and argument lists, no I/O.

This kernel has no netem (nor any other qdisc that delays), so each impairment goes to the tool that can do
it here, at the point where its direction enters or leaves the router (``up`` enters on the LAN and leaves
on the WAN, ``down`` the other way round):

- random loss: an nft ``netdev`` table, a chain on the ingress hook of the interface the direction enters
  (before conntrack and routing, as a lossy access link would), ``numgen random mod 1000000 < N drop``;
- duplication: a chain on the egress hook of the interface the direction leaves, ``numgen ... dup to`` that
  interface. The copy goes out through the same egress hook: a mark bit set before the ``dup`` rides on the
  copy and keeps it from being copied again (measured: 50% duplication gives 50% copies, not 100%);
- rate: a ``tbf`` root qdisc on the interface the direction leaves (a token bucket; shaping on the way out
  drops what exceeds it, where ifb ingress shaping would push back on same-host senders instead);
- delay, jitter, reordering and bursty loss: the delay line, a userspace queue (``nat.impair.delayline``)
  fed by ``iptables -j NFQUEUE`` from the raw table's PREROUTING (before conntrack: in mangle FORWARD the
  first packets of new flows died in conntrack insert failures). nft's own ``queue`` statement fails on this
  kernel; ``--queue-bypass`` lets packets through when no delay line is bound, so a dead daemon fails open.

Loss and duplication act on IPv4 packets only (``meta protocol ip``): ARP keeps working, so a lossy link
loses packets rather than stalling on neighbour resolution. natlab's NAT table (``inet natlab``) is never
touched: impairments live in their own table and chain and are replaced whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nat.impair.model import Impairments, LinkImpairment
from nat.impair.spec import PPM
from nat.render import quoted_ifname

TABLE = "netdev natlab_impair"
"""The nft table of loss and duplication (family + name, as ``nft`` spells it)."""
QUEUE_UP = 1
"""nfqueue of the up direction (LAN -> WAN): fed from the LAN interface's raw PREROUTING."""
QUEUE_DOWN = 2
"""nfqueue of the down direction (WAN -> LAN): fed from the WAN interface's raw PREROUTING."""
CHAIN = "NATLAB_IMPAIR"
"""The iptables raw-table chain that feeds the delay line, jumped to from PREROUTING."""
DUPLICATE_MARK = 0x40000000
"""The packet mark bit that says "already duplicated" (set before ``dup``, so the copy carries it too)."""

FRAME_BYTES = 1514
"""A full-size Ethernet frame (1500-byte MTU + 14-byte header): what tbf counts per packet at most."""
BURST_SECONDS = 0.010
"""tbf's bucket holds at least 10 ms of the rate (less throttles below the rate: measured)."""
MIN_BURST_BYTES = 2 * FRAME_BYTES
"""...and at least two full frames, so a full-size frame always fits the bucket whatever the rounding."""
QUEUE_SECONDS = 0.050
"""tbf's default queue: 50 ms of the rate (at least two frames), dropped beyond; ``limit`` packets overrides."""


@dataclass(frozen=True)
class Direction:
    """Where one direction's impairments go: the interface it enters by and the one it leaves by."""

    name: str
    link: LinkImpairment
    ingress: str
    egress: str
    queue: int


def directions(impairments: Impairments, wan_ifname: str, lan_ifname: str) -> tuple[Direction, Direction]:
    """``up`` enters on the LAN and leaves on the WAN; ``down`` the other way round."""
    return (
        Direction("up", impairments.up, lan_ifname, wan_ifname, QUEUE_UP),
        Direction("down", impairments.down, wan_ifname, lan_ifname, QUEUE_DOWN),
    )


def random_loss(link: LinkImpairment) -> bool:
    """Whether the kernel drops this direction's lost packets (independent losses); bursty loss is the delay
    line's."""
    return link.loss > 0 and link.loss_burst <= 1


def render_nft(impairments: Impairments, wan_ifname: str, lan_ifname: str) -> str:
    """The nft script that replaces the impairment table in one transaction, or deletes it when nothing
    needs it (``table X {}`` / ``delete table X`` works whether or not it existed)."""
    chains: list[str] = []
    for way in directions(impairments, wan_ifname, lan_ifname):
        if random_loss(way.link):
            chains += _chain(
                f"{way.name}_loss",
                "ingress",
                way.ingress,
                f"meta protocol ip {_share(way.link.loss)}drop",
            )
        if way.link.duplicate:
            mark = f"0x{DUPLICATE_MARK:08x}"
            chains += _chain(
                f"{way.name}_duplicate",
                "egress",
                way.egress,
                f"meta protocol ip meta mark & {mark} == 0 {_share(way.link.duplicate)}"
                f"meta mark set meta mark | {mark} dup to {quoted_ifname(way.egress)}",
            )
    lines = [
        "# natlab impairments (loss, duplication), rendered by nat.impair.render; replaces only this table.",
        f"table {TABLE} {{}}",
        f"delete table {TABLE}",
    ]
    if chains:
        lines += [f"table {TABLE} {{", *chains[:-1], "}"]  # chains[-1]: the blank line after the last chain
    return "\n".join(lines) + "\n"


def _chain(name: str, hook: str, ifname: str, rule: str) -> list[str]:
    return [
        f"\tchain {name} {{",
        f"\t\ttype filter hook {hook} device {quoted_ifname(ifname)} priority filter; policy accept;",
        f"\t\t{rule}",
        "\t}",
        "",
    ]


def _ppm(share: float) -> int:
    return round(share * PPM)


def _share(share: float) -> str:
    """The match that picks ``share`` of the packets (with a trailing space), or nothing for all of them: nft
    refuses ``numgen random mod 1000000 < 1000000``, the value being outside the generator's range."""
    ppm = _ppm(share)
    return "" if ppm >= PPM else f"numgen random mod {PPM} < {ppm} "


def render_rate(link: LinkImpairment, ifname: str) -> list[str] | None:
    """The ``tc`` arguments that shape ``ifname``'s egress to ``link``'s rate, or ``None``: no shaper."""
    if not link.rate_bps:
        return None
    quoted_ifname(ifname)  # refuses a name tc would misread
    bytes_per_second = link.rate_bps / 8
    burst = max(math.ceil(bytes_per_second * BURST_SECONDS), MIN_BURST_BYTES)
    limit = link.limit * FRAME_BYTES or max(math.ceil(bytes_per_second * QUEUE_SECONDS), MIN_BURST_BYTES)
    tbf = ["tbf", "rate", f"{link.rate_bps}bit", "burst", str(burst), "limit", str(limit)]
    return ["tc", "qdisc", "replace", "dev", ifname, "root", *tbf]


def root_qdisc_kind(listing: str) -> str | None:
    """The kind of the root qdisc in ``tc qdisc show dev X root`` output (``noqueue``, ``tbf``...)."""
    for line in listing.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "qdisc":
            return words[1]
    return None


def render_queue(impairments: Impairments, wan_ifname: str, lan_ifname: str, raw_rules: str) -> str | None:
    """The ``iptables-restore --noflush`` input that points the directions needing the delay line at its
    queues, or ``None`` when the kernel already has nothing to change.

    ``raw_rules`` is ``iptables -t raw -S`` now. Declaring the chain flushes it, so the rules are rebuilt on
    every apply in one transaction; the jump from PREROUTING is added once. When no direction needs the
    delay line the chain and its jump are removed, and a router that never had them is not touched (no
    iptables table is created for nothing).
    """
    lines = set(raw_rules.splitlines())
    has_chain, has_jump = f"-N {CHAIN}" in lines, f"-A PREROUTING -j {CHAIN}" in lines
    feeds = [way for way in directions(impairments, wan_ifname, lan_ifname) if way.link.needs_delay_line]
    if feeds:
        body = [f":{CHAIN} - [0:0]"]
        body += [f"-I PREROUTING 1 -j {CHAIN}"] * (not has_jump)
        for way in feeds:
            quoted_ifname(way.ingress)
            body.append(f"-A {CHAIN} -i {way.ingress} -j NFQUEUE --queue-num {way.queue} --queue-bypass")
    elif has_chain or has_jump:
        body = [f"-D PREROUTING -j {CHAIN}"] * has_jump + [f"-F {CHAIN}", f"-X {CHAIN}"] * has_chain
    else:
        return None
    return "\n".join(["*raw", *body, "COMMIT"]) + "\n"

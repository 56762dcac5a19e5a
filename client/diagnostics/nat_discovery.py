"""``client nat-type``: RFC 5780 NAT behaviour discovery against one STUN server (the lab's coturn).

Every socket is bound to the address we reach the server from (so "no NAT" is visible as mapped == local)
and has one job:

* ``main``: the mapping test (RFC 5780 section 4.3): a Binding to the server's primary address (test I,
  which also tells us OTHER-ADDRESS), then to the alternate IP with the primary port (test II) and to the
  alternate IP and port (test III). Its mapped address is also the hairpinning target.
* ``both``, ``port``: the filtering test (section 4.4), one fresh socket per CHANGE-REQUEST: a Binding to
  the primary address, then "answer from your other IP and port" (``both``) or "from your other port"
  (``port``). Fresh, because ``main`` has sent to the alternate address and so opened the NAT's filter
  for it; and separate, so one test's traffic never opens the filter for the other's answer.
* ``hairpin``: sends a Binding request to ``main``'s mapped address (section 4.5): does it arrive?
* binding lifetime (section 4.6, only when ``lifetime_max`` > 0): pairs of sockets; one learns its mapping,
  stays idle, then the other asks the server (RESPONSE-PORT) to answer to the first one's mapped port.

Two rounds: test I from ``main``, ``both`` and ``port`` together, then everything else at once, so the
whole run takes about one retransmission timeout (1.1 s) plus the lifetime bound. OTHER-ADDRESS is taken
from ``main``'s answer from the primary address only: coturn's alternate listeners report a wrong one.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable

from client.diagnostics.nat_type import (
    DiscoveryError,
    Lifetime,
    NatReport,
    Observations,
    binding_lifetime,
    classify,
    other_address,
)
from client.diagnostics.stun_probe import (
    CHANGE_IP,
    CHANGE_PORT,
    LAB_TIMING,
    Answer,
    Probe,
    local_ip_towards,
    run_probes,
    udp_socket,
)
from client.turn.outputs import Retransmit
from protocol import Endpoint

LIFETIME_PROBES = 16
"""At most this many idle times are probed, evenly spaced up to the bound, all at once."""


def lifetime_schedule(max_s: float, probes: int = LIFETIME_PROBES) -> tuple[float, ...]:
    """The idle times to probe: ``max_s`` split into at most ``probes`` steps (whole seconds when it fits)."""
    if max_s <= 0:
        return ()
    count = max(1, min(probes, math.ceil(max_s)))
    return tuple(round(max_s * step / count, 3) for step in range(1, count + 1))


def discover(server: Endpoint, lifetime_max: float = 0.0, timing: Retransmit = LAB_TIMING) -> NatReport:
    """Run the RFC 5780 tests against ``server`` and judge them; :class:`DiscoveryError` if no verdict."""
    local_ip = local_ip_towards(server)
    with contextlib.ExitStack() as stack:

        def fresh() -> socket.socket:
            return stack.enter_context(udp_socket(local_ip))

        main, both, port, hairpin = fresh(), fresh(), fresh(), fresh()
        first = run_probes([Probe(main, server), Probe(both, server), Probe(port, server)], timing)
        mapped = [_mapped(answer, server, timing) for answer in first]
        other = other_address(server, first[0].other if first[0] is not None else None)
        alternate_ip = Endpoint(other.host, server.port)
        second = run_probes(
            [
                Probe(main, alternate_ip),
                Probe(main, other),
                Probe(both, server, change=CHANGE_IP | CHANGE_PORT),
                Probe(port, server, change=CHANGE_PORT),
                Probe(hairpin, mapped[0], listen=main),
            ],
            timing,
        )
        lifetime = _lifetime(server, fresh, lifetime_max, timing) if lifetime_max > 0 else None
        seen = Observations(
            server=server,
            other=other,
            local=Endpoint.of(main.getsockname()),
            mapped=mapped[0],
            mapped_alternate_ip=_mapped(second[0], alternate_ip, timing, other),
            mapped_alternate_both=_mapped(second[1], other, timing, other),
            changed_both_from=_changed_from(second[2], server, "change IP and port"),
            changed_port_from=_changed_from(second[3], server, "change port"),
            hairpinning=second[4] is not None,
            lifetime=lifetime,
        )
    return classify(seen)


def _mapped(answer: Answer | None, to: Endpoint, timing: Retransmit, other: Endpoint | None = None) -> Endpoint:
    if answer is None:
        where = f"{to}" if other is None else f"the server's other address {to} (from OTHER-ADDRESS {other})"
        raise DiscoveryError(f"no answer to a STUN Binding request to {where} within {timing.give_up:g} s")
    if answer.error is not None:
        raise DiscoveryError(f"{to} answered a Binding request with {answer.error}")
    if answer.mapped is None:
        raise DiscoveryError(f"{to} answered a Binding request without XOR-MAPPED-ADDRESS")
    return answer.mapped


def _changed_from(answer: Answer | None, server: Endpoint, what: str) -> Endpoint | None:
    if answer is None:
        return None
    if answer.error is not None:
        raise DiscoveryError(f"{server} refused CHANGE-REQUEST ({what}): {answer.error}")
    return answer.source


def _lifetime(server: Endpoint, fresh: Callable[[], socket.socket], max_s: float, timing: Retransmit) -> Lifetime:
    """RFC 5780 section 4.6 for every idle time of :func:`lifetime_schedule` at once, each on its own pair
    of sockets (an answer let in refreshes the mapping, so one socket measures one idle time). The first
    pair, at idle 0, checks that the server honours RESPONSE-PORT at all."""
    idles = (0.0, *lifetime_schedule(max_s))
    holders = [fresh() for _ in idles]
    ports = [_mapped(answer, server, timing).port for answer in run_probes([Probe(h, server) for h in holders], timing)]
    probes = [
        Probe(fresh(), server, response_port=port, listen=holder, delay=idle)
        for holder, port, idle in zip(holders, ports, idles, strict=True)
    ]
    answers = run_probes(probes, timing)
    if answers[0] is None:
        raise DiscoveryError(
            f"{server} does not honour RESPONSE-PORT (RFC 5780 section 7.5): the binding lifetime cannot be measured"
        )
    return binding_lifetime(
        max_s, [(idle, answer is not None) for idle, answer in zip(idles[1:], answers[1:], strict=True)]
    )

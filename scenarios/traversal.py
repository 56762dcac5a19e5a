"""Traversal under impairment, the steps the headline scenario and the sweep share: impair both routers,
start a connect from clean NATs, and measure what the connecting agent reports.

A *cold* attempt is one neither side's NAT remembers: both agents forget each other, and both routers drop
their conntrack entries for the pair (the flows towards the other router's WAN address; those to the signal
and TURN servers stay, so neither agent has to register again). The cone routers keep the source port, so the
next connect maps to the same public endpoints, but the filters are shut again: the punch has to open them.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from client.engine.routes import USABLE, Route
from scenarios.grid_report import Attempt
from scenarios.harness import Lab, LabError
from scenarios.steps import PEER_OF

ROUTERS = ("router-a", "router-b")
OTHER_ROUTER = {"router-a": "router-b", "router-b": "router-a"}
FORGET_TIMEOUT_S = 60


@dataclass(frozen=True)
class Link:
    """One point of the RTT x loss plane, applied alike to both routers, both directions."""

    rtt_ms: float
    """The pair's round trip: each router delays each direction by a quarter of it."""
    loss: float
    """Share (0..1) each router drops in each direction."""

    @property
    def spec(self) -> str:
        """The ``nat impair`` settings for each router, both directions (``off`` when perfect)."""
        parts = []
        if self.rtt_ms:
            parts.append(f"delay={self.rtt_ms / 4:g}ms")
        if self.loss:
            parts.append(f"loss={self.loss * 100:g}%")
        return " ".join(parts) or "off"


def impair(lab: Lab, spec: str, routers: tuple[str, ...] = ROUTERS) -> None:
    """``nat impair both SPEC`` in each router (``off`` clears); a refusal raises with the router's words."""
    for router in routers:
        lab.exec_ok(router, "nat", "impair", "both", *spec.split())


def forget_pair(lab: Lab) -> None:
    """Both agents forget each other and both routers the pair's flows, until neither remembers anything.

    A probe of one side still in flight (the routers hold packets for their delay) may bring a forgotten peer
    back, so the condition is checked after the forgetting and the whole step repeats until it holds.
    """
    wan = {router: lab.address(router, "wan") for router in ROUTERS}

    def forgotten() -> bool | None:
        disconnect_both(lab)
        for router in ROUTERS:
            # Exit status 1 when nothing matched (conntrack's own convention): not an error here.
            code, out = lab.exec(router, "conntrack", "-D", "-p", "udp", "--orig-dst", wan[OTHER_ROUTER[router]])
            if code not in (0, 1):
                raise LabError(f"{router}: conntrack -D failed ({code}): {out}")
        return None if any(_has_path(lab, host, peer) for host, peer in PEER_OF.items()) else True

    lab.wait_for(forgotten, FORGET_TIMEOUT_S, "alice and bob to forget each other and their routers the pair")


def disconnect_both(lab: Lab) -> None:
    """alice and bob forget each other at the same moment: one after the other, the side still remembering
    would find the other silent after three keepalive periods and connect again by itself, which a loaded
    machine's slow ``docker exec`` can make happen in between. bob's runs on a Docker client of its own."""
    with ThreadPoolExecutor(1) as pool, closing(Lab(lab.files, project=lab.project, env=lab.env)) as twin:
        bob = pool.submit(twin.exec_ok, "bob", "client", "disconnect", "alice")
        lab.exec_ok("alice", "client", "disconnect", "bob")
        bob.result()


def _has_path(lab: Lab, host: str, peer: str) -> bool:
    """Whether ``host`` has any path to ``peer`` (a forgotten peer stays in its table with path none)."""
    status = lab.json(host, "client", "status", "--json")
    return any(p["id"] == peer and p["path"] != Route.NONE for p in status["peers"])


def cold_attempt(lab: Lab, timeout_s: float, probe: str | None = None) -> Attempt:
    """alice connects to bob from clean NATs and waits until the path settles (at most ``timeout_s``).

    ``probe``: a message sent once a path is up (its delivery is then part of the attempt).
    """
    forget_pair(lab)
    return settled_attempt(lab, "alice", "bob", timeout_s, probe)


def settled_attempt(lab: Lab, host: str, peer: str, timeout_s: float, probe: str | None = None) -> Attempt:
    """``client connect PEER --settle`` in ``host``: connect, send ``probe`` once a path is up (if given) and
    wait for its ack, then wait until the path settles; the attempt as the connecting agent reports it."""
    settle = ["--settle", "--timeout", f"{timeout_s:g}", "--json"]
    if probe is not None:
        settle += ["--probe", probe]
    try:
        _, out, err = lab.exec_split(host, "client", "connect", peer, *settle)
    except LabError as exc:
        out, err = "", str(exc)
    try:
        result: dict[str, Any] = json.loads(out)
    except json.JSONDecodeError:
        return Attempt(Route.NONE, False, None, None, f"attempt failed: {err.strip() or out.strip()}"[:500])
    status = result.get("peer") or {}
    path = status.get("path", Route.NONE)
    return Attempt(
        path=path if path in USABLE else Route.NONE,
        delivered=bool(result.get("delivered")),
        time_to_first_message_ms=status.get("time_to_first_message_ms"),
        time_to_direct_ms=result.get("time_to_direct_ms"),
        reason=result.get("error") or status.get("reason"),
    )

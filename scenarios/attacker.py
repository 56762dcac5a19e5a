"""The attacker's side of a lab, for the attack scenarios: run ``python3 -m attacks`` in mallory (or in any
container, e.g. a router that captures), read the victim's byte counter, the server's memory and table.

A lab with the attacker is compose.yaml with the compose profile ``attack`` (:data:`ATTACK_ENV`): mallory
and victim on the WAN beside the server and the routers.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from scenarios.harness import Lab
from scenarios.steps import events, received_since, server_peers

ATTACKER = "mallory"
VICTIM = "victim"
ATTACK_ENV = {"COMPOSE_PROFILES": "attack"}
"""Compose variables that add mallory and victim to a lab of compose.yaml."""
ALLOWED_RATIO = 3.0
"""Issue 10's rule (QUIC's): to an address that has not proved it is there, at most 3x what came from it."""
QUIET_S = 1.5
"""Seconds without a datagram after which a reflection counts as over (agents probe every 20 ms)."""

T = TypeVar("T")


def attack(lab: Lab, *args: str, service: str = ATTACKER) -> dict[str, Any]:
    """``python3 -m attacks ARGS`` in ``service`` (mallory by default): its JSON result."""
    result: dict[str, Any] = lab.json(service, "python3", "-m", "attacks", *args)
    return result


@contextmanager
def in_background(lab: Lab, *args: str, service: str = ATTACKER, timeout: float = 20) -> Iterator[Future[Any]]:
    """Start an attack that listens (``--ready`` is added) and wait until it has sent and listens; the block
    acts meanwhile, and the future holds the attack's JSON result (waited for when the block ends)."""
    ready = f"/tmp/natlab-ready-{secrets.token_hex(4)}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(attack, lab, *args, "--ready", ready, service=service)

        def is_ready() -> bool | None:
            return True if future.done() or lab.exec(service, "test", "-e", ready)[0] == 0 else None

        lab.wait_for(is_ready, timeout, f"{args[0]} in {service} to be under way")
        yield future


def server_endpoint(lab: Lab) -> str:
    """The signal server's ``ip:port``, as the hosts are configured with it."""
    return lab.service("alice").environment["NATLAB_SERVER"]


def registered_from_router(lab: Lab, host: str) -> str | None:
    """Where the server sees ``host`` if that is at its router's WAN address, else None (now, no waiting)."""
    wan = lab.address(lab.topology.router_of(host), "wan")
    addr = server_peers(lab).get(host, {}).get("addr")
    return addr if isinstance(addr, str) and addr.rpartition(":")[0] == wan else None


def public_address(lab: Lab, host: str) -> str:
    """Where the server sees ``host`` (its router's mapping), waiting until it is at its router's address."""
    router = lab.topology.router_of(host)
    return lab.wait_for(lambda: registered_from_router(lab, host), 30, f"{host} registered from {router}'s address")


def settled(lab: Lab, read: Callable[[], T], hold: float, timeout: float, what: str) -> T:
    """``read()`` once it has returned the same value for ``hold`` seconds."""
    last: list[Any] = [object(), time.monotonic()]

    def steady() -> T | None:
        value, now = read(), time.monotonic()
        if value != last[0]:
            last[:] = [value, now]
            return None
        return value if now - last[1] >= hold else None

    return lab.wait_for(steady, timeout, what)


def sink(lab: Lab) -> dict[str, Any]:
    """The victim's counter: totals, by source, and ``idle_s`` since the last datagram."""
    return attack(lab, "sink", "show", service=VICTIM)


def quiet_sink(lab: Lab, since: float, timeout: float = 60) -> dict[str, Any]:
    """The victim's totals once nothing has reached it for QUIET_S seconds, counted from ``since`` (host
    wall clock, which the containers share) at the earliest: a reflection still on its way is waited for."""

    def quiet() -> dict[str, Any] | None:
        totals = sink(lab)
        idle = totals["idle_s"]
        calm = idle is None or idle >= QUIET_S
        return totals if calm and time.time() - since >= QUIET_S else None

    return lab.wait_for(quiet, timeout, "the victim to hear nothing for a while")


@dataclass(frozen=True)
class Reflection:
    """Bytes the attacker sent against bytes that reached the victim, UDP payloads and IP packets."""

    sent_payload: int
    sent_ip: int
    received_payload: int
    received_ip: int

    @property
    def ratio(self) -> float:
        return self.received_payload / self.sent_payload

    @property
    def wire_ratio(self) -> float:
        return self.received_ip / self.sent_ip

    def __str__(self) -> str:
        return (
            f"attacker sent {self.sent_payload} B ({self.sent_ip} B on the wire), victim received "
            f"{self.received_payload} B ({self.received_ip} B): {self.ratio:.2f}x ({self.wire_ratio:.2f}x on the wire)"
        )


def reflection(lab: Lab, run: Callable[[], list[dict[str, Any]]]) -> Reflection:
    """Measure ``run`` (the attack commands it ran, each result with ``payload_bytes`` and ``ip_bytes``) at
    the victim: what arrived there from the moment it started until all was quiet again."""
    before = quiet_sink(lab, since=0)["total"]
    results = run()
    after = quiet_sink(lab, since=time.time())["total"]
    return Reflection(
        sum(r["payload_bytes"] for r in results),
        sum(r["ip_bytes"] for r in results),
        after["payload_bytes"] - before["payload_bytes"],
        after["ip_bytes"] - before["ip_bytes"],
    )


def off_link(lab: Lab) -> ipaddress.IPv4Network:
    """Forged sources for a flood: the /24 after the lab's LANs (a two-site slot's spare, see Subnets), off
    the WAN's link. Like most of the internet to a real server, the server reaches it only through a
    gateway, and the lab's server has none: its answers fail at once. (Forged sources *on* the link that
    nobody owns would make the server's kernel hold each answer for ARP, charged to the server's socket,
    and stall all its answers for tens of seconds: a property of a flat lab link, not of natlab.)"""
    wan = lab.topology.networks["wan"]
    return ipaddress.IPv4Network(f"{wan.network_address + 3 * 256}/24")


def server_memory(lab: Lab) -> dict[str, Any]:
    """The signal server process's RSS and peak RSS (kB), read from /proc inside its container."""
    (process,) = attack(lab, "memory", "python3 -m server", service="server")["processes"]
    return dict(process)


def received_texts(lab: Lab, host: str) -> list[str]:
    return received_since(lab, host, 0)


def send_detached(lab: Lab, sender: str, peer: str, text: str) -> None:
    """``client send`` in the background: it waits for the ack (up to the delivery deadline, 30 s), and a
    scenario would rather wait for the outcome it expects, with its own deadline."""
    lab.container(sender).exec_run(["client", "send", peer, text], detach=True)


def delivered(lab: Lab, sender: str, receiver: str, text: str, timeout: float = 15) -> None:
    """Send ``text`` and wait until the receiver shows it and the sender has its acknowledgement."""
    send_detached(lab, sender, receiver, text)

    def arrived() -> bool | None:
        shown = text in received_texts(lab, receiver)
        acked = any(e["text"] == text for e in events(lab, sender, "message_delivered"))
        return True if shown and acked else None

    lab.wait_for(arrived, timeout, f"{receiver} to show {text!r} and {sender} to have its ack")

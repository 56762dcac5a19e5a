"""Datagrams from the attacker's own socket, and what comes back to it while it listens.

``exchange`` sends, then listens for ``listen`` seconds; an ``answer`` function may reply to what it hears
(an impersonator answering probes, say). Every address must be in the lab (``check_lab``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from attacks.packets import check_lab
from attacks.raw import Sent
from protocol import Endpoint

Outgoing = tuple[bytes, Endpoint]
Answer = Callable[[bytes, Endpoint], list[Outgoing]]
RECEIVE_BUFFER = 65535
MAX_HEARD = 1000
"""Datagrams an exchange keeps (and counts beyond): a listener must not grow without bound either."""


def shown(payload: bytes) -> dict[str, Any]:
    """A payload for JSON: its text when it is UTF-8, else its hex, and its size."""
    try:
        return {"text": payload.decode("utf-8"), "bytes": len(payload)}
    except UnicodeDecodeError:
        return {"hex": payload.hex(), "bytes": len(payload)}


@dataclass
class Exchange:
    """What an exchange did: our socket's address, what we sent, what we heard (and from whom)."""

    local: Endpoint
    sent: Sent = field(default_factory=Sent)
    heard: list[tuple[Endpoint, bytes]] = field(default_factory=list)
    heard_total: int = 0

    def to_json(self) -> dict[str, Any]:
        heard = [{"from": str(source), **shown(payload)} for source, payload in self.heard]
        return {"local": str(self.local), **self.sent.to_json(), "heard_total": self.heard_total, "heard": heard}


def no_answer(payload: bytes, source: Endpoint) -> list[Outgoing]:
    return []


def exchange(
    sends: Sequence[Outgoing],
    listen: float = 0.0,
    *,
    port: int = 0,
    answer: Answer = no_answer,
    on_ready: Callable[[], None] = lambda: None,
) -> Exchange:
    """Send ``sends`` from one UDP socket (bound to ``port``, 0: any), then listen ``listen`` s, answering."""
    for _, to in sends:
        check_lab(to)
    with closing(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)) as sock:
        sock.bind(("0.0.0.0", port))
        result = Exchange(Endpoint.of(sock.getsockname()))
        _send(sock, result, sends)
        on_ready()
        deadline = time.monotonic() + listen
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                payload, addr = sock.recvfrom(RECEIVE_BUFFER)
            except TimeoutError:
                break
            source = Endpoint.of(addr)
            result.heard_total += 1
            if len(result.heard) < MAX_HEARD:
                result.heard.append((source, payload))
            _send(sock, result, [(data, to) for data, to in answer(payload, source) if _in_lab(to)])
    return result


def _send(sock: socket.socket, result: Exchange, sends: Sequence[Outgoing]) -> None:
    for payload, to in sends:
        sock.sendto(payload, to.sockaddr())
        result.sent = result.sent.add(payload)


def _in_lab(endpoint: Endpoint) -> bool:
    try:
        check_lab(endpoint)
    except ValueError:
        return False
    return True
